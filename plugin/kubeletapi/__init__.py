"""Wire formats of the kubelet device-plugin API, shared by the plugin and the node agent.

The device plugin serves ``DevicePlugin`` and calls ``Registration``; the node
agent, standing in for the kubelet, serves ``Registration`` and calls
``DevicePlugin``. Both import the generated code from here and nothing else of
each other.
"""

from kubeletapi.v1beta1.constants import (
    API_VERSION,
    HEALTHY,
    KUBELET_SOCKET_NAME,
    UNHEALTHY,
)

__all__ = ["API_VERSION", "HEALTHY", "KUBELET_SOCKET_NAME", "UNHEALTHY"]
