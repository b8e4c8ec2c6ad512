"""The kubelet's device manager, played by the node agent in kubelet-less mode.

It does what the kubelet does with device plugins, over the same gRPC API:
serves ``Registration`` on ``kubelet.sock`` in the node's device-plugin
directory; for each registration dials the plugin's socket, reads its options
and follows ``ListAndWatch``; and for a container asks
``GetPreferredAllocation`` then ``Allocate``. Allocations are checkpointed so
an agent restart never hands a device to two containers. When a plugin's
stream ends its devices count as unhealthy until it registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc

from dgxnode.agent.checkpoint import Checkpoint, ContainerAllocation
from dgxnode.agent.errors import DeviceAllocationError
from kubeletapi.v1beta1 import api_pb2, api_pb2_grpc
from kubeletapi.v1beta1.constants import API_VERSION, HEALTHY, KUBELET_SOCKET_NAME

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 10.0


@dataclass
class PluginEndpoint:
    """One registered plugin: its channel, options and the devices it lists."""

    resource: str
    socket: Path
    channel: grpc.aio.Channel
    stub: api_pb2_grpc.DevicePluginAsyncStub
    preferred_available: bool
    devices: dict[str, bool] = field(default_factory=dict)  # id -> healthy
    connected: bool = True
    first_list: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None


class _RegistrationServicer(api_pb2_grpc.RegistrationServicer):
    def __init__(self, manager: DeviceManager) -> None:
        self.manager = manager

    async def Register(self, request: api_pb2.RegisterRequest,
                       context: grpc.aio.ServicerContext[object, object]) -> api_pb2.Empty:
        problem = self.manager.validate(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        await self.manager.add_endpoint(request)
        return api_pb2.Empty()


@dataclass
class DeviceManager:
    """Device-plugin side of one simulated kubelet."""

    node: str
    plugin_dir: Path
    checkpoint: Checkpoint
    on_change: Callable[[], Awaitable[None]] | None = None
    endpoints: dict[str, PluginEndpoint] = field(default_factory=dict)
    registrations: list[api_pb2.RegisterRequest] = field(default_factory=list)
    _server: grpc.aio.Server | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def socket(self) -> Path:
        return self.plugin_dir / KUBELET_SOCKET_NAME

    async def start(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        server = grpc.aio.server()
        api_pb2_grpc.add_RegistrationServicer_to_server(_RegistrationServicer(self), server)
        server.add_insecure_port(f"unix://{self.socket}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
        for endpoint in list(self.endpoints.values()):
            await self._close(endpoint)
        self.endpoints.clear()
        self.socket.unlink(missing_ok=True)

    # ------------------------------------------------------------ registration

    def validate(self, request: api_pb2.RegisterRequest) -> str | None:
        """The kubelet's checks of a registration request, with its wording."""
        if request.version != API_VERSION:
            return (f"invalid version {request.version!r}: the kubelet supports "
                    f"{API_VERSION}")
        if "/" not in request.resource_name or request.resource_name.startswith(
                ("kubernetes.io/", "requests.")):
            return f"invalid extended resource name {request.resource_name!r}"
        if not request.endpoint or "/" in request.endpoint:
            return f"invalid endpoint {request.endpoint!r}: a socket file name is expected"
        return None

    async def add_endpoint(self, request: api_pb2.RegisterRequest) -> None:
        socket = self.plugin_dir / request.endpoint
        channel = grpc.aio.insecure_channel(f"unix://{socket}")
        stub = cast("api_pb2_grpc.DevicePluginAsyncStub", api_pb2_grpc.DevicePluginStub(channel))
        endpoint = PluginEndpoint(
            resource=request.resource_name, socket=socket, channel=channel, stub=stub,
            preferred_available=request.options.get_preferred_allocation_available)
        async with self._lock:
            self.registrations.append(request)
            old = self.endpoints.get(request.resource_name)
            self.endpoints[request.resource_name] = endpoint
        if old is not None:
            await self._close(old)
        endpoint.watcher = asyncio.create_task(self._watch(endpoint),
                                               name=f"listandwatch {request.resource_name}")
        log.info("%s: registered %s at %s", self.node, request.resource_name, socket)

    async def _close(self, endpoint: PluginEndpoint) -> None:
        if endpoint.watcher is not None:
            endpoint.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await endpoint.watcher
        await endpoint.channel.close()

    async def _watch(self, endpoint: PluginEndpoint) -> None:
        try:
            # As the kubelet dials a registered plugin blocking, the stream waits for the
            # connection instead of failing on a first attempt that raced the socket.
            async for response in endpoint.stub.ListAndWatch(api_pb2.Empty(),
                                                             wait_for_ready=True):
                endpoint.devices = {d.ID: d.health == HEALTHY for d in response.devices}
                endpoint.connected = True
                endpoint.first_list.set()
                await self.checkpoint.write_if_new()
                await self._changed()
        except grpc.aio.AioRpcError as err:
            log.warning("%s: ListAndWatch of %s ended: %s", self.node, endpoint.resource,
                        err.code().name)
        endpoint.connected = False
        endpoint.devices = dict.fromkeys(endpoint.devices, False)
        await self._changed()

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    # ------------------------------------------------------------ capacity

    def capacity(self) -> dict[str, int]:
        return {r: len(e.devices) for r, e in self.endpoints.items()}

    def allocatable(self) -> dict[str, int]:
        return {r: sum(e.devices.values()) for r, e in self.endpoints.items()}

    def free_devices(self, resource: str) -> list[str]:
        endpoint = self.endpoints.get(resource)
        if endpoint is None:
            return []
        held = self.checkpoint.held(resource)
        return [d for d, healthy in endpoint.devices.items() if healthy and d not in held]

    # ------------------------------------------------------------ allocation

    async def allocate(self, pod_uid: str, container: str, resource: str, count: int
                       ) -> ContainerAllocation:
        """Pick and allocate ``count`` devices of ``resource`` for one container."""
        async with self._lock:
            existing = self.checkpoint.get(pod_uid, container, resource)
            if existing is not None:
                return existing
            endpoint = self.endpoints.get(resource)
            if endpoint is None:
                raise DeviceAllocationError(f"{self.node}: no plugin serves {resource}")
            free = self.free_devices(resource)
            if len(free) < count:
                raise DeviceAllocationError(
                    f"{self.node}: {resource}: {count} requested, {len(free)} free")
            try:
                chosen = await self._choose(endpoint, free, count)
                response = await endpoint.stub.Allocate(api_pb2.AllocateRequest(
                    container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=chosen)]),
                    timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as err:
                raise DeviceAllocationError(
                    f"{self.node}: {resource}: the device plugin answered "
                    f"{err.code().name}: {err.details()}") from err
            if len(response.container_responses) != 1:
                raise DeviceAllocationError(
                    f"{self.node}: {resource}: the device plugin answered "
                    f"{len(response.container_responses)} container responses for one")
            reply = response.container_responses[0]
            allocation = ContainerAllocation(
                resource=resource, device_ids=tuple(chosen), envs=dict(reply.envs),
                mounts=tuple((m.container_path, m.host_path) for m in reply.mounts),
                cdi_devices=tuple(c.name for c in reply.cdi_devices))
            await self.checkpoint.record(pod_uid, container, allocation)
            return allocation

    async def _choose(self, endpoint: PluginEndpoint, free: list[str], count: int) -> list[str]:
        if not endpoint.preferred_available:
            return free[:count]
        response = await endpoint.stub.GetPreferredAllocation(
            api_pb2.PreferredAllocationRequest(container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=free, must_include_deviceIDs=[],
                    allocation_size=count)]),
            timeout=RPC_TIMEOUT_S)
        chosen = list(response.container_responses[0].deviceIDs)
        if len(chosen) != count or not set(chosen) <= set(free):
            raise DeviceAllocationError(
                f"{self.node}: {endpoint.resource}: preferred allocation {chosen} is not "
                f"{count} of the free devices")
        return chosen

    async def release(self, pod_uid: str) -> None:
        async with self._lock:
            await self.checkpoint.release(pod_uid)
