"""Builders of node inventories for tests: whole GPUs, or MIG devices at given slots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpumodel.ids import DeviceID, gpu_uuid, mig_uuid
from gpumodel.inventory import GpuSummary, InventoryDevice, MigPlacement, NodeInventory
from gpumodel.mig import profile_table
from gpumodel.node import build_node_hardware

Layout = Mapping[int, Sequence[tuple[str, int]]]
"""GPU index -> [(GI profile, memory start slice), ...] for GPUs in MIG mode."""


def make_inventory(node: str = "dgx-0", layout: Layout | None = None, generation: int = 1,
                   unhealthy: Sequence[str] = ()) -> NodeInventory:
    """An inventory of a DGX A100 320GB; GPUs named in ``layout`` are in MIG mode."""
    layout = layout or {}
    hardware = build_node_hardware(node)
    table = profile_table("a100-40gb")
    gpus, devices = [], []
    for gpu in hardware.gpus:
        mig_on = gpu.index in layout
        gpus.append(GpuSummary(
            index=gpu.index, uuid=gpu.uuid, product_name=gpu.product_name,
            pci_device_id=gpu.pci_device_id, memory_mib=gpu.memory_mib,
            mig_mode="Enabled" if mig_on else "Disabled",
            mig_mode_pending="Enabled" if mig_on else "Disabled"))
        common = {"gpu_index": gpu.index, "gpu_uuid": gpu.uuid, "pci_bus_id": gpu.pci_bus_id,
                  "pcie_switch": gpu.pcie_switch, "numa_node": gpu.numa_node}
        devices.append(InventoryDevice(
            id=DeviceID(gpu.uuid), kind="gpu", resource="nvidia.com/gpu",
            memory_mib=gpu.memory_mib, sms=gpu.sms, usable=not mig_on, **common))
        compute_start = 0
        for gi_id, (name, start) in enumerate(layout.get(gpu.index, ()), start=1):
            spec = table.get(name)
            devices.append(InventoryDevice(
                id=DeviceID(mig_uuid(node, gpu.index, start, spec.memory_slices)), kind="mig",
                resource=spec.resource_name, profile=name, memory_mib=spec.memory_mib,
                sms=spec.sms, mig=MigPlacement(
                    gi_id=gi_id, ci_id=0, gi_profile_id=spec.profile_id,
                    ci_profile_id=table.ci_profile_id(spec.compute_slices),
                    memory_start=start, memory_slices=spec.memory_slices,
                    compute_start=compute_start, compute_slices=spec.compute_slices),
                **common))
            compute_start += spec.compute_slices
    devices = [d.model_copy(update={"health": "Unhealthy"}) if d.id in unhealthy else d
               for d in devices]
    return NodeInventory(node=node, kind=hardware.kind, generation=generation,
                         gpus=tuple(gpus), devices=tuple(devices))


BALANCED = (("2g.10gb", 0), ("1g.5gb", 2), ("1g.5gb", 3), ("3g.20gb", 4))
"""all-balanced as the driver places it: 1g.5gb may start at slices 0-6 only."""


def balanced(node: str = "dgx-0", gpus: Sequence[int] = range(8), generation: int = 1
             ) -> NodeInventory:
    """``all-balanced`` on the given GPUs: 3g.20gb, 2g.10gb and two 1g.5gb each."""
    return make_inventory(node, dict.fromkeys(gpus, BALANCED), generation=generation)


__all__ = ["BALANCED", "balanced", "gpu_uuid", "make_inventory"]
