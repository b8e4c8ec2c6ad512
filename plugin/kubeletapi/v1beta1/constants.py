"""Constants of the kubelet device-plugin API v1beta1, with the kubelet's values."""

API_VERSION = "v1beta1"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
DEVICE_PLUGIN_PATH = "/var/lib/kubelet/device-plugins/"
KUBELET_SOCKET_NAME = "kubelet.sock"
PRE_START_CONTAINER_TIMEOUT_S = 30
