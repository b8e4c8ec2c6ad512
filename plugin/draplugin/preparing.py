"""Preparing and unpreparing claims: the devices the scheduler chose, made real on the node.

For each allocation result of this driver and this node's pool:

- ``static``: the device exists (a whole GPU, or a MIG device of the current
  layout); preparing finds its UUID.
- ``dynamic``: a MIG device name is a slot (``gpu-0-mig-1g5gb-19-6``: profile ID
  19 at memory slice 6); preparing turns MIG mode on where it is off and creates
  the GPU and compute instance on exactly that slot. A whole GPU is made whole
  (MIG off). Unpreparing destroys what preparing created.

Each device is handed to the runtime by its CDI name in the node's CDI
specification (``nvidia.com/gpu=<UUID>``). Prepared claims are checkpointed
before the answer goes back: preparing a claim again returns the same devices,
and a claim that fails half-way is rolled back so nothing leaks.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from draplugin.checkpoint import ClaimCheckpoint, PreparedClaim, PreparedDevice
from draplugin.errors import DraPluginError, PrepareError
from draplugin.host import GpuHost
from gpumodel.dra import parse_device_name, static_devices
from gpumodel.vocabulary import DRA_DRIVER, GPU_RESOURCE, DraMode

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def cdi_name(uuid: str) -> str:
    """The device's name in the node's CDI specification (kind ``nvidia.com/gpu``)."""
    return f"{GPU_RESOURCE}={uuid}"


def our_results(claim: JSON, pool: str) -> list[JSON]:
    """The claim's allocation results for this driver in this node's pool."""
    allocation = (claim.get("status") or {}).get("allocation")
    meta = claim.get("metadata") or {}
    if not allocation:
        raise PrepareError(f"ResourceClaim {meta.get('namespace')}/{meta.get('name')} is not "
                           "allocated")
    results = (allocation.get("devices") or {}).get("results") or []
    return [r for r in results if r.get("driver") == DRA_DRIVER and r.get("pool") == pool]


@dataclass
class DeviceState:
    """The claims prepared on one node."""

    node: str
    mode: DraMode
    host: GpuHost
    checkpoint: ClaimCheckpoint
    prepares: int = 0
    """How many claims were prepared (not found prepared) since start."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def prepare(self, claim: JSON) -> PreparedClaim:
        meta = claim["metadata"]
        async with self._lock:
            known = self.checkpoint.get(meta["uid"])
            if known is not None:
                return known
            devices: list[PreparedDevice] = []
            try:
                for result in our_results(claim, self.node):
                    devices.append(await self._prepare_device(result))
                prepared = PreparedClaim(uid=meta["uid"], namespace=meta["namespace"],
                                         name=meta["name"], devices=tuple(devices))
                await asyncio.to_thread(self.checkpoint.put, prepared)
            except BaseException:
                await self._undo(devices)
                raise
            self.prepares += 1
            log.info("%s: prepared claim %s/%s: %s", self.node, meta["namespace"], meta["name"],
                     ", ".join(f"{d.device} ({d.uuid})" for d in devices))
            return prepared

    async def _prepare_device(self, result: JSON) -> PreparedDevice:
        name = str(result.get("device"))
        ref = parse_device_name(name)
        if ref is None:
            raise PrepareError(f"{self.node}: no device {name!r} in pool {self.node}")
        created = False
        if self.mode == "dynamic" and ref.is_mig:
            assert ref.profile_id is not None and ref.start is not None
            uuid = await asyncio.to_thread(self.host.create_mig, ref.gpu, ref.profile_id,
                                           ref.start)
            created = True
        elif self.mode == "dynamic":
            uuid = await asyncio.to_thread(self.host.whole_gpu, ref.gpu)
        else:
            uuid = self._existing(name)
        request = str(result.get("request", ""))
        return PreparedDevice(request_names=(request,) if request else (), pool=self.node,
                              device=name, gpu=ref.gpu, uuid=uuid, created=created,
                              cdi_device_ids=(cdi_name(uuid),))

    def _existing(self, name: str) -> str:
        for device in static_devices(self.host.inventory()):
            if device["name"] == name:
                return str(device["attributes"]["uuid"]["string"])
        raise PrepareError(f"{self.node}: device {name} no longer exists (the MIG layout "
                           "changed since it was published)")

    async def clear_strangers(self) -> list[str]:
        """Dynamic mode, at start: destroy MIG devices no prepared claim holds (left by a
        crash, or made by hand), as NVIDIA's driver does, so the published counters are
        true; a device someone holds is left and reported. The names of what was left."""
        if self.mode != "dynamic":
            return []
        async with self._lock:
            ours = {d.uuid for c in self.checkpoint.claims().values() for d in c.devices}
            left = []
            for device in self.host.inventory().devices:
                if device.kind != "mig" or device.id in ours:
                    continue
                if device.owner is not None:
                    left.append(f"{device.id} (held by {device.owner})")
                    continue
                await asyncio.to_thread(self.host.destroy_mig, device.gpu_index, device.id)
                log.warning("%s: destroyed MIG device %s that no prepared claim holds",
                            self.node, device.id)
            return left

    async def unprepare(self, uid: str) -> None:
        async with self._lock:
            claim = self.checkpoint.get(uid)
            if claim is None:
                return
            await self._undo(list(claim.devices))
            await asyncio.to_thread(self.checkpoint.drop, uid)
            log.info("%s: unprepared claim %s/%s", self.node, claim.namespace, claim.name)

    async def _undo(self, devices: list[PreparedDevice]) -> None:
        """Destroy what preparing created; errors name every device left behind."""
        failed = []
        for device in devices:
            if not device.created:
                continue
            try:
                await asyncio.to_thread(self.host.destroy_mig, device.gpu, device.uuid)
            except DraPluginError as err:
                failed.append(f"{device.device}: {err}")
        if failed:
            raise PrepareError(f"{self.node}: cannot destroy " + "; ".join(failed))
