"""Wire formats of the kubelet's gRPC APIs, shared by the plugin and the node agent.

The device-plugin API (``v1beta1``): the device plugin serves ``DevicePlugin``
and calls ``Registration``; the node agent, standing in for the kubelet,
serves ``Registration`` and calls ``DevicePlugin``. The PodResources API
(``podresources.v1``): the kubelet serves ``PodResourcesLister``, which says
which devices it assigned to which pod. Both sides import the generated code
from here and nothing else of each other.
"""

from kubeletapi.podresources.v1.constants import POD_RESOURCES_SOCKET
from kubeletapi.v1beta1.constants import (
    API_VERSION,
    HEALTHY,
    KUBELET_SOCKET_NAME,
    UNHEALTHY,
)

__all__ = ["API_VERSION", "HEALTHY", "KUBELET_SOCKET_NAME", "POD_RESOURCES_SOCKET", "UNHEALTHY"]
