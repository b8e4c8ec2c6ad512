"""The plugin of one node: a gRPC server per resource, registered with the kubelet.

:class:`NodePlugin` follows a device source. On every snapshot it recomputes the
resources under the MIG strategy, starts (and registers) a server for each new
resource, and publishes the new device lists so ``ListAndWatch`` streams send
them at once; a resource that vanishes is kept with an empty list, so the
kubelet sets its capacity to zero instead of waiting for a disconnect timeout.

It stays registered as a kubelet expects: when ``kubelet.sock`` is recreated (a
kubelet restart) every resource registers again, once; when a plugin's own
socket disappears its server is restarted and registered again. Changes of the
directory arrive as inotify events (:mod:`localkube.dirwatch`), so an idle
node costs nothing however many there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import grpc

from deviceplugin.errors import DevicePluginError, RegistrationError, StrategyError
from deviceplugin.servicer import AllocateContext, DevicePluginServicer, ResourceState
from deviceplugin.strategy import Strategy, resources
from gpumodel.inventory import NodeInventory
from kubeletapi.v1beta1 import api_pb2, api_pb2_grpc
from kubeletapi.v1beta1.constants import API_VERSION, KUBELET_SOCKET_NAME
from localkube.dirwatch import dir_watcher

log = logging.getLogger(__name__)
RESTART_SETTLE_S = 0.2
"""How long after restarting a server the directory is looked at again."""
REGISTER_TIMEOUT_S = 5.0


class DeviceSource(Protocol):
    """Where a node's device snapshots come from."""

    def snapshot(self) -> NodeInventory: ...

    def watch(self) -> AsyncIterator[NodeInventory]: ...


MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def socket_name(resource: str) -> str:
    """NVIDIA's naming: ``nvidia.com/gpu`` -> ``nvidia-gpu.sock``, ``nvidia-mig-1g.5gb.sock``."""
    vendor, _, name = resource.partition("/")
    prefix = vendor.split(".")[0]
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9._-]", "-", name) + ".sock"


def check_socket_path(path: Path) -> None:
    """Unix socket paths are limited to 107 bytes; say so instead of failing to bind."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise DevicePluginError(
            f"socket path {path} is {len(os.fsencode(path))} bytes; Unix sockets allow "
            f"{MAX_SOCKET_PATH}: use a shorter device-plugin directory")


def _inode(path: Path) -> tuple[int, int] | None:
    """Identity of the file at ``path``: inode plus change time (inode numbers get reused)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_ctime_ns)


@dataclass
class ResourceServer:
    """One resource's gRPC server on its Unix socket."""

    resource: str
    socket_path: Path
    state: ResourceState
    context: AllocateContext
    server: grpc.aio.Server | None = None
    inode: tuple[int, int] | None = None
    registered_with: tuple[int, int] | None = None
    """The kubelet socket (inode, ctime) this server last registered with."""

    async def start(self) -> None:
        check_socket_path(self.socket_path)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.aio.server()
        api_pb2_grpc.add_DevicePluginServicer_to_server(
            DevicePluginServicer(self.state, self.context), server)
        server.add_insecure_port(f"unix://{self.socket_path}")
        await server.start()
        self.server = server
        self.inode = _inode(self.socket_path)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.5)
            self.server = None
        self.socket_path.unlink(missing_ok=True)


async def register(kubelet_socket: Path, resource: str, endpoint: str) -> None:
    """Call the kubelet's Registration service for one resource."""
    request = api_pb2.RegisterRequest(
        version=API_VERSION, endpoint=endpoint, resource_name=resource,
        options=api_pb2.DevicePluginOptions(get_preferred_allocation_available=True))
    try:
        async with grpc.aio.insecure_channel(f"unix://{kubelet_socket}") as channel:
            stub = cast("api_pb2_grpc.RegistrationAsyncStub",
                        api_pb2_grpc.RegistrationStub(channel))
            await stub.Register(request, timeout=REGISTER_TIMEOUT_S)
    except grpc.aio.AioRpcError as err:
        raise RegistrationError(
            f"registering {resource} at {kubelet_socket}: {err.code().name}: {err.details()}"
        ) from err


@dataclass
class NodePlugin:
    """Every resource server of one node, kept in step with its device source."""

    source: DeviceSource
    plugin_dir: Path
    strategy: Strategy
    context: AllocateContext
    servers: dict[str, ResourceServer] = field(default_factory=dict)
    last_error: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _unwatch: Callable[[], None] | None = None

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / KUBELET_SOCKET_NAME

    async def start(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        await self.apply(self.source.snapshot())
        names = {KUBELET_SOCKET_NAME}

        def changed(name: str) -> None:
            if name in names or name in {s.socket_path.name for s in self.servers.values()}:
                self._changed.set()

        self._unwatch = dir_watcher().watch(self.plugin_dir, changed)
        self._tasks = [asyncio.create_task(self._follow_source(), name="plugin-source"),
                       asyncio.create_task(self._keep_registered(), name="plugin-watchdog")]

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for srv in self.servers.values():
            await srv.state.close()
            await srv.stop()
        self.servers.clear()

    async def apply(self, snapshot: NodeInventory) -> None:
        """Advertise ``snapshot``; a layout the strategy refuses advertises nothing."""
        try:
            table = resources(snapshot, self.strategy)
            self.last_error = None
        except StrategyError as err:
            log.error("%s", err)
            self.last_error = str(err)
            table = {}
        for name in sorted(set(table) | set(self.servers)):
            devices = table.get(name, ())
            srv = self.servers.get(name)
            if srv is None:
                srv = ResourceServer(name, self.plugin_dir / socket_name(name),
                                     ResourceState(name), self.context)
                self.servers[name] = srv
                await srv.state.publish(devices)
                await srv.start()
                await self._register(srv)
            else:
                await srv.state.publish(devices)

    async def _register(self, srv: ResourceServer) -> None:
        kubelet = _inode(self.kubelet_socket)
        if kubelet is None:
            log.info("no kubelet socket yet at %s; %s registers when it appears",
                     self.kubelet_socket, srv.resource)
            return
        # Marked before the call: a new server's socket wakes the watchdog while this
        # registration is in flight, and it must not register the resource a second time.
        srv.registered_with = kubelet
        try:
            await register(self.kubelet_socket, srv.resource, srv.socket_path.name)
        except RegistrationError as err:
            srv.registered_with = None
            log.warning("%s", err)

    async def _follow_source(self) -> None:
        async for snapshot in self.source.watch():
            await self.apply(snapshot)

    async def _keep_registered(self) -> None:
        """On each change of the directory: restart a server whose socket went, and
        register every server the current kubelet socket has not seen, once.

        A gRPC server that stops unlinks its socket path when its listener is torn
        down, which can come after the next server bound the same path: after a
        restart the directory is looked at again a moment later, so a socket lost that
        way is served again too."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            restarted = False
            for srv in list(self.servers.values()):
                if srv.inode is None:
                    continue  # still starting: its own start records its socket
                current = _inode(srv.socket_path)
                if current is None or current != srv.inode:
                    log.warning("socket of %s disappeared; restarting its server", srv.resource)
                    await srv.stop()
                    await srv.start()
                    srv.registered_with = None
                    restarted = True
            if restarted:
                await asyncio.sleep(RESTART_SETTLE_S)
                self._changed.set()
                continue
            kubelet = _inode(self.kubelet_socket)
            if kubelet is None:
                continue
            stale = [s for s in self.servers.values() if s.registered_with != kubelet]
            if stale:
                log.info("kubelet socket %s: registering %d resources",
                         self.kubelet_socket, len(stale))
            for srv in stale:
                await self._register(srv)


def plugin_dir_default() -> Path:
    return Path(os.environ.get("DGXSIM_DEVICE_PLUGIN_DIR", "/var/lib/kubelet/device-plugins"))
