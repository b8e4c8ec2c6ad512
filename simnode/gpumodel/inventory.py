"""NodeInventory: the document a node publishes about its devices.

The device plugin advertises what this document lists and the operator reads
it to plan; neither looks at simnode's internal state. One entry per device a
container could be given: every GPU (advertised as ``nvidia.com/gpu`` when MIG
is off) and every MIG device (a compute instance inside a GPU instance,
advertised as ``nvidia.com/mig-<profile>``), with its topology, health and
owner. ``generation`` grows with every change so a reader can tell news apart.

A node without a kubelet of its own (kubelet-less) publishes no owners: each pod
it starts records the devices it holds in its own ``dgxsim.io/devices``
annotation (:func:`devices_record`), which readers take instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.ids import DeviceID, GpuUUID
from gpumodel.vocabulary import DEVICES_ANNOTATION

Health = Literal["Healthy", "Unhealthy"]
"""The kubelet device-plugin API's two health values."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MigPlacement(_Frozen):
    """Where a MIG device sits: its GI and CI IDs and slice ranges."""

    gi_id: int = Field(ge=0)
    ci_id: int = Field(ge=0)
    gi_profile_id: int = Field(ge=0)
    ci_profile_id: int = Field(ge=0)
    memory_start: int = Field(ge=0)
    memory_slices: int = Field(ge=1)
    compute_start: int = Field(ge=0)
    compute_slices: int = Field(ge=1)


class InventoryDevice(_Frozen):
    """One allocatable device."""

    id: DeviceID
    kind: Literal["gpu", "mig"]
    resource: str
    """``nvidia.com/gpu`` or ``nvidia.com/mig-<profile>`` (NVIDIA's mixed strategy)."""
    profile: str | None = None
    """The MIG profile (``3g.20gb``, ``1c.3g.20gb``); None for a whole GPU."""
    gpu_index: int = Field(ge=0)
    gpu_uuid: GpuUUID
    pci_bus_id: str
    pcie_switch: int = Field(ge=0)
    numa_node: int = Field(ge=0)
    memory_mib: int = Field(gt=0)
    sms: int = Field(gt=0)
    mig: MigPlacement | None = None
    health: Health = "Healthy"
    xid: int | None = None
    """The XID error that made the device (or its GPU) unhealthy, where one is known."""
    owner: str | None = None
    """Who holds the device (``namespace/pod/container``); None when free."""
    usable: bool = True
    """False for a whole GPU in MIG mode (only its MIG devices can be handed out)."""


class GpuSummary(_Frozen):
    index: int = Field(ge=0)
    uuid: GpuUUID
    product_name: str
    pci_device_id: str
    memory_mib: int
    mig_mode: Literal["Enabled", "Disabled"]
    mig_mode_pending: Literal["Enabled", "Disabled"]


class NodeInventory(_Frozen):
    """The published state of one node (see the module doc)."""

    version: Literal["v1"] = "v1"
    node: str
    kind: str
    generation: int = Field(ge=0)
    gpus: tuple[GpuSummary, ...]
    devices: tuple[InventoryDevice, ...]
    mig_config: str | None = None
    mig_config_state: Literal["pending", "rebooting", "success", "failed"] | None = None

    def usable_devices(self, resource: str | None = None) -> tuple[InventoryDevice, ...]:
        """Devices that can be allocated now, optionally of one resource name."""
        return tuple(d for d in self.devices
                     if d.usable and (resource is None or d.resource == resource))

    def device(self, device_id: str) -> InventoryDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id} on node {self.node}")

    def resources(self) -> dict[str, int]:
        """Resource name -> number of usable devices (what the node can advertise)."""
        counts: dict[str, int] = {}
        for d in self.usable_devices():
            counts[d.resource] = counts.get(d.resource, 0) + 1
        return counts


def devices_record(devices: Mapping[str, Sequence[str]]) -> str:
    """The text of a pod's ``dgxsim.io/devices`` annotation: ``resource: id, id; ...``
    in the order given, ``none`` for a pod that holds no device."""
    return "; ".join(f"{r}: {', '.join(ids)}" for r, ids in devices.items()) or "none"


def parse_devices_record(text: str) -> dict[str, tuple[str, ...]]:
    """resource -> device IDs from a :func:`devices_record` text ({} for ``none``);
    ValueError when a part is not ``resource: id, ...``."""
    devices: dict[str, tuple[str, ...]] = {}
    if text.strip() in ("", "none"):
        return devices
    for part in text.split(";"):
        resource, sep, ids = part.strip().partition(": ")
        if not sep or not resource:
            raise ValueError(f"{part.strip()!r} is not 'resource: device, ...'")
        devices[resource] = devices.get(resource, ()) + tuple(
            i.strip() for i in ids.split(",") if i.strip())
    return devices


def held_devices(inventory: NodeInventory | None, bound_pods: Iterable[Mapping[str, Any]]
                 ) -> dict[str, str]:
    """Device ID -> the pod holding it (``namespace/pod``) on one node: the owners its
    inventory names (under a real kubelet) and the devices its pods that have not ended
    record holding (kubelet-less). A record that does not parse names nothing."""
    held: dict[str, str] = {d.id: d.owner.rsplit("/", 1)[0]
                            for d in (inventory.devices if inventory else ()) if d.owner}
    for pod in bound_pods:
        meta = pod.get("metadata") or {}
        text = (meta.get("annotations") or {}).get(DEVICES_ANNOTATION)
        if text is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        try:
            recorded = parse_devices_record(text)
        except ValueError:
            continue
        holder = f"{meta.get('namespace')}/{meta.get('name')}"
        held.update((device, holder) for ids in recorded.values() for device in ids)
    return held
