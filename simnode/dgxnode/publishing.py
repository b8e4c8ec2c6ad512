"""The node's published document: :class:`gpumodel.inventory.NodeInventory`.

Built from the hardware and the current state on request, never stored, so it
cannot disagree with either. A GPU in MIG mode is listed but marked unusable
(only its MIG devices can be given out), as NVIDIA's plugin does in the mixed
strategy; the plugin decides what to advertise under its own strategy.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from dgxnode.devices import mig_devices
from dgxnode.state import GpuState, LayoutKey, NodeState
from gpumodel.ids import DeviceID
from gpumodel.inventory import GpuSummary, InventoryDevice, MigPlacement, NodeInventory
from gpumodel.mig import ProfileTable
from gpumodel.node import GpuHardware, NodeHardware
from gpumodel.vocabulary import GPU_RESOURCE, mig_resource


class Published(NamedTuple):
    """One state of the node, its inventory and its layout key."""

    state: NodeState
    inventory: NodeInventory
    layout: LayoutKey


def _mode(enabled: bool) -> Literal["Enabled", "Disabled"]:
    return "Enabled" if enabled else "Disabled"


def build_inventory(hardware: NodeHardware, table: ProfileTable | None,
                    state: NodeState) -> NodeInventory:
    devices: list[InventoryDevice] = []
    for gpu in state.gpus:
        hw = hardware.gpu(gpu.index)
        devices.append(_gpu_device(hw, gpu, state))
        if table is not None:
            devices += _mig_entries(hardware.name, hw, table, gpu, state)
    gpus = tuple(GpuSummary(index=g.index, uuid=hardware.gpu(g.index).uuid,
                            product_name=hardware.gpu(g.index).product_name,
                            pci_device_id=hardware.gpu(g.index).pci_device_id,
                            memory_mib=hardware.gpu(g.index).memory_mib,
                            mig_mode=_mode(g.mig_enabled),
                            mig_mode_pending=_mode(g.mig_pending))
                 for g in state.gpus)
    return NodeInventory(node=state.node, kind=state.kind, generation=state.generation,
                         gpus=gpus, devices=tuple(devices), mig_config=state.mig_config,
                         mig_config_state=state.mig_config_state)


def _gpu_device(hw: GpuHardware, gpu: GpuState, state: NodeState) -> InventoryDevice:
    return InventoryDevice(
        id=DeviceID(hw.uuid), kind="gpu", resource=GPU_RESOURCE, gpu_index=hw.index,
        gpu_uuid=hw.uuid, pci_bus_id=hw.pci_bus_id, pcie_switch=hw.pcie_switch,
        numa_node=hw.numa_node, memory_mib=hw.memory_mib, sms=hw.sms,
        health="Unhealthy" if hw.uuid in state.unhealthy else "Healthy",
        xid=state.last_xid.get(hw.uuid) if hw.uuid in state.unhealthy else None,
        owner=state.allocations.get(hw.uuid), usable=not gpu.mig_enabled)


def _mig_entries(node: str, hw: GpuHardware, table: ProfileTable, gpu: GpuState,
                 state: NodeState) -> list[InventoryDevice]:
    entries = []
    for dev in mig_devices(node, table, gpu):
        placement = MigPlacement(
            gi_id=dev.gi.gi_id, ci_id=dev.ci.ci_id, gi_profile_id=dev.gi_spec.profile_id,
            ci_profile_id=table.ci_profile_id(dev.ci.slices), memory_start=dev.gi.start,
            memory_slices=dev.gi.size, compute_start=dev.ci.start,
            compute_slices=dev.ci.slices)
        unhealthy = dev.uuid in state.unhealthy or hw.uuid in state.unhealthy
        entries.append(InventoryDevice(
            id=DeviceID(dev.uuid), kind="mig", resource=mig_resource(str(dev.profile)),
            profile=dev.profile, gpu_index=hw.index, gpu_uuid=hw.uuid,
            pci_bus_id=hw.pci_bus_id, pcie_switch=hw.pcie_switch, numa_node=hw.numa_node,
            memory_mib=dev.gi_spec.memory_mib, sms=dev.sms, mig=placement,
            health="Unhealthy" if unhealthy else "Healthy",
            xid=(state.last_xid.get(dev.uuid, state.last_xid.get(hw.uuid)) if unhealthy
                 else None),
            owner=state.allocations.get(dev.uuid)))
    return entries


def with_owners(inventory: NodeInventory, state: NodeState) -> NodeInventory:
    """``inventory`` (built from a state of the same layout) with the owners and generation
    of ``state``: only the devices whose owner changed are copied."""
    held = state.allocations
    devices = tuple(d if d.owner == held.get(d.id)
                    else d.model_copy(update={"owner": held.get(d.id)})
                    for d in inventory.devices)
    return inventory.model_copy(update={"devices": devices, "generation": state.generation})
