"""The thin gRPC adapter: kubelet requests in, allocator and device state out.

One :class:`DevicePluginServicer` serves one resource. It holds no allocation
logic of its own (that is :mod:`deviceplugin.allocator`) and no device
discovery (that is the feed that calls :meth:`ResourceState.publish`).
``ListAndWatch`` sends the full device list at once and again after every
change, health included, in either direction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc

from deviceplugin.allocator import preferred
from deviceplugin.errors import DeviceRequestError
from gpumodel.inventory import InventoryDevice
from gpumodel.vocabulary import GPU_RESOURCE, MIG_RESOURCE_PREFIX
from kubeletapi.v1beta1 import api_pb2, api_pb2_grpc
from kubeletapi.v1beta1.constants import HEALTHY, UNHEALTHY

CONTAINER_NVIDIA_SMI = "/usr/bin/nvidia-smi"


@dataclass(frozen=True)
class AllocateContext:
    """What Allocate tells a container beyond its devices: how to reach its node."""

    node: str
    node_endpoint: str
    nvidia_smi_host_path: str | None = None
    cdi_enabled: bool = True
    extra_mounts: tuple[tuple[str, str, bool], ...] = ()
    """(host path, container path, read-only): e.g. the node endpoint's socket directory."""
    extra_envs: tuple[tuple[str, str], ...] = ()


@dataclass
class ResourceState:
    """The current devices of one resource, with a condition that wakes watchers."""

    resource: str
    devices: tuple[InventoryDevice, ...] = ()
    generation: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    closed: bool = False

    async def publish(self, devices: Sequence[InventoryDevice]) -> None:
        """Replace the device list if it differs and wake every ListAndWatch stream."""
        new = tuple(devices)
        async with self.changed:
            if new == self.devices and self.generation:
                return
            self.devices = new
            self.generation += 1
            self.changed.notify_all()

    async def close(self) -> None:
        async with self.changed:
            self.closed = True
            self.changed.notify_all()


def device_to_proto(device: InventoryDevice) -> api_pb2.Device:
    return api_pb2.Device(
        ID=device.id, health=HEALTHY if device.health == HEALTHY else UNHEALTHY,
        topology=api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=device.numa_node)]))


class DevicePluginServicer(api_pb2_grpc.DevicePluginServicer):
    """The DevicePlugin service for one resource."""

    def __init__(self, state: ResourceState, context: AllocateContext) -> None:
        self.state = state
        self.context = context

    async def GetDevicePluginOptions(
            self, request: api_pb2.Empty, context: grpc.aio.ServicerContext[object, object]
    ) -> api_pb2.DevicePluginOptions:
        return api_pb2.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True)

    async def ListAndWatch(
            self, request: api_pb2.Empty, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[api_pb2.ListAndWatchResponse]:
        state = self.state
        seen = -1
        while True:
            async with state.changed:
                while not state.closed and state.generation == seen:
                    await state.changed.wait()
                if state.closed:
                    return
                seen = state.generation
                devices = state.devices
            yield api_pb2.ListAndWatchResponse(devices=[device_to_proto(d) for d in devices])

    async def GetPreferredAllocation(
            self, request: api_pb2.PreferredAllocationRequest,
            context: grpc.aio.ServicerContext[object, object],
    ) -> api_pb2.PreferredAllocationResponse:
        known: dict[str, InventoryDevice] = {d.id: d for d in self.state.devices}
        responses = []
        for req in request.container_requests:
            try:
                # A device the kubelet still lists but this plugin no longer has (a GPU
                # just carved into MIG devices) is passed over, as NVIDIA's plugin does;
                # only Allocate refuses unknown IDs.
                available = [known[i] for i in req.available_deviceIDs if i in known]
                must = self._lookup(known, req.must_include_deviceIDs)
                ids = preferred(available, must, req.allocation_size)
            except DeviceRequestError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{self.state.resource}: {err}")
            responses.append(api_pb2.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    async def Allocate(
            self, request: api_pb2.AllocateRequest,
            context: grpc.aio.ServicerContext[object, object],
    ) -> api_pb2.AllocateResponse:
        known: dict[str, InventoryDevice] = {d.id: d for d in self.state.devices}
        responses = []
        for req in request.container_requests:
            try:
                devices = self._lookup(known, req.devices_ids)
                self._check_allocatable(devices)
            except DeviceRequestError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{self.state.resource}: {err}")
            responses.append(self._container_response(devices))
        return api_pb2.AllocateResponse(container_responses=responses)

    async def PreStartContainer(
            self, request: api_pb2.PreStartContainerRequest,
            context: grpc.aio.ServicerContext[object, object],
    ) -> api_pb2.PreStartContainerResponse:
        return api_pb2.PreStartContainerResponse()

    @staticmethod
    def _lookup(known: dict[str, InventoryDevice], ids: Sequence[str]) -> list[InventoryDevice]:
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise DeviceRequestError(f"unknown device ID(s) {', '.join(unknown)}")
        return [known[i] for i in ids]

    def _check_allocatable(self, devices: list[InventoryDevice]) -> None:
        if not devices:
            raise DeviceRequestError("a container request names no device")
        sick = [d.id for d in devices if d.health != HEALTHY]
        if sick:
            raise DeviceRequestError(f"device(s) {', '.join(sick)} are unhealthy")
        if self.state.resource.startswith(MIG_RESOURCE_PREFIX) and len(devices) > 1:
            raise DeviceRequestError(
                f"request for {len(devices)} MIG devices: one MIG device per container "
                "per resource is supported")

    def _container_response(self, devices: list[InventoryDevice]
                            ) -> api_pb2.ContainerAllocateResponse:
        ids = [d.id for d in devices]
        envs = {
            "NVIDIA_VISIBLE_DEVICES": ",".join(ids),
            "DGXSIM_NODE": self.context.node,
            "DGXSIM_ENDPOINT": self.context.node_endpoint,
            "DGXSIM_DEVICES": ",".join(ids),
        }
        envs.update(dict(self.context.extra_envs))
        mounts = [api_pb2.Mount(host_path=host, container_path=inside, read_only=ro)
                  for host, inside, ro in self.context.extra_mounts]
        if self.context.nvidia_smi_host_path:
            mounts.append(api_pb2.Mount(container_path=CONTAINER_NVIDIA_SMI,
                                        host_path=self.context.nvidia_smi_host_path,
                                        read_only=True))
        cdi = [api_pb2.CDIDevice(name=f"{GPU_RESOURCE}={i}") for i in ids] \
            if self.context.cdi_enabled else []
        return api_pb2.ContainerAllocateResponse(envs=envs, mounts=mounts, cdi_devices=cdi)
