"""One node's DRA kubelet plugin: ResourceSlices, registration and the DRA service.

Laid out as the kubelet expects: the service socket at
``<plugins>/gpu.nvidia.com/dra.sock`` and the registration socket at
``<plugins_registry>/gpu.nvidia.com-reg.sock`` (the kubelet's defaults are
``/var/lib/kubelet/plugins`` and ``/var/lib/kubelet/plugins_registry``), so
the same plugin registers with a real kubelet's plugin watcher or with the
node agent that plays the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc

from draplugin.checkpoint import CHECKPOINT_FILE, ClaimCheckpoint
from draplugin.host import GpuHost
from draplugin.preparing import DeviceState
from draplugin.publisher import SliceApi, SlicePublisher
from draplugin.servicer import ClaimReader, DraServicer, RegistrationServicer
from gpumodel.vocabulary import DRA_DRIVER, DraMode
from kubeletapi.dra.v1 import api_pb2_grpc
from kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)
SERVICE_SOCKET = "dra.sock"
REPUBLISH_DEBOUNCE_S = 0.05


class DraApi(SliceApi, ClaimReader, Protocol):
    """Every API call the plugin makes."""


def registration_socket(registry_dir: Path) -> Path:
    return registry_dir / f"{DRA_DRIVER}-reg.sock"


def service_socket(plugins_dir: Path) -> Path:
    return plugins_dir / DRA_DRIVER / SERVICE_SOCKET


@dataclass
class DraNodePlugin:
    """The DRA driver of one node (see the module doc)."""

    node: str
    mode: DraMode
    host: GpuHost
    api: DraApi
    registry_dir: Path
    plugins_dir: Path
    state_dir: Path
    state: DeviceState = field(init=False)
    publisher: SlicePublisher = field(init=False)
    registration: RegistrationServicer = field(init=False)
    _servers: list[grpc.aio.Server] = field(default_factory=list)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        checkpoint = ClaimCheckpoint(self.state_dir / CHECKPOINT_FILE)
        self.state = DeviceState(self.node, self.mode, self.host, checkpoint)
        self.publisher = SlicePublisher(self.api, self.node, self.mode, self.host.inventory)
        self.registration = RegistrationServicer(str(service_socket(self.plugins_dir)))

    async def start(self) -> None:
        """Publish the slices, then serve the DRA service and the registration socket."""
        left = await self.state.clear_strangers()
        if left:
            log.error("%s: MIG devices in use that no claim holds (the published counters "
                      "count their slots as free): %s", self.node, ", ".join(left))
        await self.publisher.publish()
        service = service_socket(self.plugins_dir)
        service.parent.mkdir(parents=True, exist_ok=True)
        service.unlink(missing_ok=True)
        server = grpc.aio.server()
        api_pb2_grpc.add_DRAPluginServicer_to_server(DraServicer(self.state, self.api), server)
        server.add_insecure_port(f"unix://{service}")
        await server.start()
        self._servers.append(server)
        registration = registration_socket(self.registry_dir)
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        registration.unlink(missing_ok=True)
        reg_server = grpc.aio.server()
        reg_grpc.add_RegistrationServicer_to_server(self.registration, reg_server)
        reg_server.add_insecure_port(f"unix://{registration}")
        await reg_server.start()
        self._servers.append(reg_server)
        self._task = asyncio.create_task(self._republish(), name=f"dra slices {self.node}")

    def inventory_changed(self) -> None:
        """The node changed: publish again (at once in static mode; dynamic slices change
        only with the devices' health)."""
        self._dirty.set()

    async def _republish(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(REPUBLISH_DEBOUNCE_S)
            self._dirty.clear()
            try:
                await self.publisher.publish()
            except Exception:
                log.exception("%s: publishing ResourceSlices failed; retrying", self.node)
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for server in self._servers:
            await server.stop(grace=0.5)
        self._servers.clear()
        registration_socket(self.registry_dir).unlink(missing_ok=True)
        service_socket(self.plugins_dir).unlink(missing_ok=True)
