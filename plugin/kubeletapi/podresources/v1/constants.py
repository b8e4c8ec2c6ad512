"""Constants of the kubelet's PodResources API v1, with the kubelet's values."""

POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
"""Where the kubelet serves ``PodResourcesLister`` (its ``--pod-resources`` directory)."""
