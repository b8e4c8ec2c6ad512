"""The kubelet's PodResources API, read as NVIDIA's dcgm-exporter reads it.

A real kubelet decides which of the plugin's devices each container gets and
says so through ``PodResourcesLister.List`` on its pod-resources socket
(``/var/lib/kubelet/pod-resources/kubelet.sock``). :class:`PodResourcesClient`
calls ``List`` and keeps the ``nvidia.com/gpu`` and ``nvidia.com/mig-*``
devices: their IDs are the UUIDs this plugin advertised, so they name the
node's devices directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc

from deviceplugin.errors import DevicePluginError
from gpumodel.vocabulary import is_gpu_resource
from kubeletapi.podresources.v1 import api_pb2, api_pb2_grpc

LIST_TIMEOUT_S = 5.0


class PodResourcesError(DevicePluginError, ConnectionError):
    """The kubelet's PodResources API cannot be asked (no socket, or no answer)."""


def gpu_assignments(response: api_pb2.ListPodResourcesResponse) -> dict[str, str]:
    """Device ID -> ``namespace/pod/container`` for every GPU and MIG device in ``List``'s
    answer; other resources (CPUs, memory, other vendors' devices) are left out."""
    assigned: dict[str, str] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            owner = f"{pod.namespace}/{pod.name}/{container.name}"
            for devices in container.devices:
                if is_gpu_resource(devices.resource_name):
                    for device_id in devices.device_ids:
                        assigned.setdefault(device_id, owner)
    return assigned


@dataclass(frozen=True)
class PodResourcesClient:
    """Asks one kubelet which GPU devices it assigned to which container."""

    socket: Path

    @property
    def where(self) -> str:
        return str(self.socket)

    async def assigned(self) -> dict[str, str]:
        """``List``'s GPU devices (see :func:`gpu_assignments`); raises
        :class:`PodResourcesError` when the kubelet cannot be asked."""
        if not self.socket.exists():
            raise PodResourcesError(f"no kubelet pod-resources socket at {self.socket}")
        try:
            async with grpc.aio.insecure_channel(f"unix://{self.socket}") as channel:
                stub = cast("api_pb2_grpc.PodResourcesListerAsyncStub",
                            api_pb2_grpc.PodResourcesListerStub(channel))
                response = await stub.List(api_pb2.ListPodResourcesRequest(),
                                           timeout=LIST_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            raise PodResourcesError(f"List at {self.socket}: {err.code().name}: "
                                    f"{err.details()}") from err
        return gpu_assignments(response)
