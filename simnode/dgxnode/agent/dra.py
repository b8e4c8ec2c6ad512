"""The kubelet's DRA manager, played by the node agent in kubelet-less mode.

As the kubelet does: its plugin watcher finds a registration socket in the
node's ``plugins_registry`` directory, calls ``GetInfo`` (a ``DRAPlugin``
supporting ``v1.DRAPlugin``) and ``NotifyRegistrationStatus``, and dials the
endpoint the plugin names. For a pod bound to the node whose ResourceClaims are
allocated and reserved for it, it calls ``NodePrepareResources`` before the
pod starts, and ``NodeUnprepareResources`` when the pod ends or goes away (for
each claim no other pod of the node still uses). Which claims each pod holds is
recorded on disk before they are prepared, so an agent restart unprepares
what a pod it no longer sees held.

The devices of a prepared claim come back as CDI names of the node's CDI
specification (``nvidia.com/gpu=<UUID>``); their UUIDs are what the pod is
given, exactly as a device-plugin pod is given them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from pydantic import BaseModel, ConfigDict

from dgxnode.agent.errors import DeviceAllocationError
from dgxnode.agent.kube import Kube
from gpumodel.vocabulary import DRA_DRIVER, GPU_RESOURCE
from kubeletapi.dra.v1 import DRA_PLUGIN_SERVICE, DRA_PLUGIN_TYPE, api_pb2, api_pb2_grpc
from kubeletapi.pluginregistration.v1 import api_pb2 as reg_pb2
from kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from localkube.dirwatch import dir_watcher
from localkube.files import atomic_write_text

log = logging.getLogger(__name__)
JSON = dict[str, Any]
CLAIMS_FILE = "dra-claims.json"
RPC_TIMEOUT_S = 30.0
REGISTER_TIMEOUT_S = 5.0
"""How long a socket of the registry directory may take to answer GetInfo (a stale
socket of a plugin that is gone must not hold up the others for long)."""


class ClaimRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    uid: str


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = "v1"
    pods: dict[str, list[ClaimRef]] = {}


def pod_claim_names(pod: JSON) -> dict[str, str]:
    """The pod's claim entries -> ResourceClaim names (a template's claim from the status)."""
    generated = {s["name"]: s.get("resourceClaimName")
                 for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
    names = {}
    for entry in pod["spec"].get("resourceClaims") or []:
        name = entry.get("resourceClaimName") or generated.get(entry["name"])
        if not name:
            raise DeviceAllocationError(f"resource claim {entry['name']!r} of the pod has no "
                                        "ResourceClaim yet")
        names[entry["name"]] = name
    return names


def uuid_of(cdi_id: str) -> str:
    return cdi_id.split("=", 1)[1] if "=" in cdi_id else cdi_id


@dataclass
class ClaimManager:
    """The DRA side of one simulated kubelet."""

    node: str
    registry_dir: Path
    kube: Kube
    record_path: Path
    stub: api_pb2_grpc.DRAPluginAsyncStub | None = None
    endpoint: str | None = None
    _channel: grpc.aio.Channel | None = None
    _seen: dict[Path, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _unwatch: Callable[[], None] | None = None
    _dirty: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _record: _Record = field(default_factory=_Record)

    async def start(self) -> None:
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        if self.record_path.exists():
            self._record = _Record.model_validate(json.loads(self.record_path.read_text()))
        # The kubelet's plugin watcher learns of new sockets from inotify (fsnotify):
        # so does this one, through the process's one watcher of plugin directories.
        self._unwatch = dir_watcher().watch(self.registry_dir, self._changed)
        await self.scan()

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            await self._channel.close()

    def _changed(self, name: str) -> None:
        if not name.endswith(".sock"):
            return
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._rescan(), name=f"dra registry {self.node}")

    async def _rescan(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.scan()
            except Exception:
                log.exception("%s: looking for DRA plugins failed", self.node)

    async def scan(self) -> None:
        """Register every socket of the registry directory not seen before (or replaced)."""
        for socket in sorted(self.registry_dir.glob("*.sock")):
            try:
                inode = socket.stat().st_ino
            except OSError:
                continue
            if self._seen.get(socket) != inode:
                self._seen[socket] = inode
                if not await self._register(socket):
                    # Looked at again when the socket next changes.
                    self._seen.pop(socket, None)

    async def _register(self, socket: Path) -> bool:
        """Register the plugin behind ``socket``; False when it did not answer."""
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            registration = reg_grpc.RegistrationStub(channel)
            try:
                # The socket appears when the plugin binds it, a moment before it
                # listens: wait for it as the kubelet's blocking dial does.
                info = await registration.GetInfo(reg_pb2.InfoRequest(),
                                                  timeout=REGISTER_TIMEOUT_S,
                                                  wait_for_ready=True)
            except grpc.aio.AioRpcError as err:
                log.warning("%s: %s did not answer GetInfo: %s", self.node, socket,
                            err.code().name)
                return False
            problem = None
            if info.type != DRA_PLUGIN_TYPE:
                problem = f"plugin type {info.type!r} is not handled here"
            elif DRA_PLUGIN_SERVICE not in info.supported_versions:
                problem = (f"none of the services {list(info.supported_versions)} is "
                           f"supported by the kubelet ({DRA_PLUGIN_SERVICE})")
            elif info.name != DRA_DRIVER:
                problem = f"driver {info.name!r} is not served on this node"
            if problem is None:
                if self._channel is not None:
                    await self._channel.close()
                self._channel = grpc.aio.insecure_channel(f"unix://{info.endpoint}")
                self.stub = cast("api_pb2_grpc.DRAPluginAsyncStub",
                                 api_pb2_grpc.DRAPluginStub(self._channel))
                self.endpoint = info.endpoint
                log.info("%s: registered DRA driver %s at %s", self.node, info.name,
                         info.endpoint)
            await registration.NotifyRegistrationStatus(reg_pb2.RegistrationStatus(
                plugin_registered=problem is None, error=problem or ""), timeout=RPC_TIMEOUT_S)
            return True

    # ------------------------------------------------------------ claims

    async def prepare(self, pod: JSON) -> dict[str, dict[str, tuple[str, ...]]]:
        """Prepare the pod's claims: container -> claim entry -> device UUIDs."""
        meta = pod["metadata"]
        if not pod["spec"].get("resourceClaims"):
            return {}
        if not (pod.get("status") or {}).get("resourceClaimStatuses"):
            pod = await self.kube.read_pod(meta["namespace"], meta["name"])
        names = pod_claim_names(pod)
        claims: dict[str, JSON] = {}
        for entry, name in names.items():
            claim = await self.kube.read_resource_claim(meta["namespace"], name)
            status = claim.get("status") or {}
            if not status.get("allocation"):
                raise DeviceAllocationError(f"ResourceClaim {name} is not allocated")
            if meta["uid"] not in {r.get("uid") for r in status.get("reservedFor") or []}:
                raise DeviceAllocationError(f"ResourceClaim {name} is not reserved for the pod")
            results = (status["allocation"].get("devices") or {}).get("results") or []
            if any(r.get("driver") == DRA_DRIVER for r in results):
                claims[entry] = claim
        if not claims:
            return {}
        if self.stub is None:
            raise DeviceAllocationError(f"{self.node}: DRA driver {DRA_DRIVER} is not "
                                        "registered")
        refs = [ClaimRef(namespace=c["metadata"]["namespace"], name=c["metadata"]["name"],
                         uid=c["metadata"]["uid"]) for c in claims.values()]
        async with self._lock:
            await self._save({**self._record.pods, meta["uid"]: refs})
        try:
            response = await self.stub.NodePrepareResources(
                api_pb2.NodePrepareResourcesRequest(claims=[
                    api_pb2.Claim(namespace=r.namespace, name=r.name, uid=r.uid)
                    for r in refs]), timeout=RPC_TIMEOUT_S, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            raise DeviceAllocationError(f"{self.node}: NodePrepareResources: "
                                        f"{err.code().name}: {err.details()}") from err
        by_entry: dict[str, list[api_pb2.Device]] = {}
        for entry, claim in claims.items():
            answer = response.claims.get(claim["metadata"]["uid"])
            if answer is None:
                raise DeviceAllocationError(f"{self.node}: claim {claim['metadata']['name']} "
                                            "was not prepared")
            if answer.error:
                raise DeviceAllocationError(f"{self.node}: claim {claim['metadata']['name']}: "
                                            f"{answer.error}")
            by_entry[entry] = list(answer.devices)
        return self._per_container(pod, by_entry)

    @staticmethod
    def _per_container(pod: JSON, by_entry: dict[str, list[api_pb2.Device]]
                       ) -> dict[str, dict[str, tuple[str, ...]]]:
        result: dict[str, dict[str, tuple[str, ...]]] = {}
        for container in pod["spec"].get("containers", []):
            for use in (container.get("resources") or {}).get("claims") or []:
                devices = by_entry.get(use["name"], [])
                request = use.get("request")
                chosen = [d for d in devices if not request or not d.request_names
                          or request in d.request_names]
                uuids = tuple(uuid_of(c) for d in chosen for c in d.cdi_device_ids
                              if c.startswith(f"{GPU_RESOURCE}="))
                if uuids:
                    result.setdefault(container["name"], {})[use["name"]] = uuids
        return result

    async def unprepare(self, pod_uid: str) -> None:
        """Unprepare the pod's claims that no other pod of this node still holds."""
        async with self._lock:
            refs = self._record.pods.get(pod_uid)
            if refs is None:
                return
            others = {r.uid for uid, rs in self._record.pods.items() if uid != pod_uid
                      for r in rs}
            done = [r for r in refs if r.uid not in others]
            if done and self.stub is not None:
                try:
                    response = await self.stub.NodeUnprepareResources(
                        api_pb2.NodeUnprepareResourcesRequest(claims=[
                            api_pb2.Claim(namespace=r.namespace, name=r.name, uid=r.uid)
                            for r in done]), timeout=RPC_TIMEOUT_S, wait_for_ready=True)
                except grpc.aio.AioRpcError as err:
                    raise DeviceAllocationError(f"{self.node}: NodeUnprepareResources: "
                                                f"{err.code().name}: {err.details()}") from err
                errors = [f"{r.name}: {response.claims[r.uid].error}" for r in done
                          if r.uid in response.claims and response.claims[r.uid].error]
                if errors:
                    raise DeviceAllocationError(f"{self.node}: unprepare failed: "
                                                + "; ".join(errors))
            await self._save({k: v for k, v in self._record.pods.items() if k != pod_uid})

    def pods(self) -> list[str]:
        return list(self._record.pods)

    async def _save(self, pods: dict[str, list[ClaimRef]]) -> None:
        record = _Record(pods=pods)
        await asyncio.to_thread(atomic_write_text, self.record_path,
                                record.model_dump_json(indent=1))
        self._record = record
