"""MIG strategies: which resources a node's devices are advertised as.

Behaves as NVIDIA's device plugin:

* ``none``: every GPU is ``nvidia.com/gpu``; MIG devices are not advertised.
* ``single``: every MIG device is ``nvidia.com/gpu``. The node must have MIG
  enabled on all of its GPUs with one profile only; otherwise the layout is
  refused (GPUs with MIG disabled are advertised whole when no GPU has MIG).
* ``mixed``: GPUs with MIG disabled are ``nvidia.com/gpu``; each MIG device is
  ``nvidia.com/mig-<profile>``.
"""

from __future__ import annotations

from deviceplugin.errors import StrategyError
from gpumodel.inventory import InventoryDevice, NodeInventory
from gpumodel.vocabulary import GPU_RESOURCE, MIG_STRATEGIES, MigStrategy, mig_resource

Strategy = MigStrategy
STRATEGIES = MIG_STRATEGIES


def resources(node: NodeInventory, strategy: Strategy
              ) -> dict[str, tuple[InventoryDevice, ...]]:
    """Devices per resource name, in GPU then placement order; empty resources omitted."""
    whole = tuple(d for d in node.devices if d.kind == "gpu" and not _mig_on(node, d))
    migs = tuple(sorted((d for d in node.devices if d.kind == "mig"), key=placement_order))
    if strategy == "none":
        return _non_empty({GPU_RESOURCE: tuple(d for d in node.devices if d.kind == "gpu")})
    if strategy == "single":
        return _non_empty({GPU_RESOURCE: _single(node, whole, migs)})
    table: dict[str, tuple[InventoryDevice, ...]] = {GPU_RESOURCE: whole}
    for device in migs:
        name = mig_resource(str(device.profile))
        table[name] = (*table.get(name, ()), device)
    return _non_empty(table)


def advertised_counts(node: NodeInventory, strategy: Strategy) -> dict[str, int]:
    """How many devices the plugins advertise per resource; nothing for a layout the
    strategy refuses (as :meth:`NodePlugin.apply` does)."""
    try:
        return {name: len(devices) for name, devices in resources(node, strategy).items()}
    except StrategyError:
        return {}


def placement_order(device: InventoryDevice) -> tuple[int, int, int]:
    """GPU index, then memory start slice, then compute start slice."""
    if device.mig is None:
        return (device.gpu_index, 0, 0)
    return (device.gpu_index, device.mig.memory_start, device.mig.compute_start)


def _mig_on(node: NodeInventory, device: InventoryDevice) -> bool:
    return any(g.index == device.gpu_index and g.mig_mode == "Enabled" for g in node.gpus)


def _single(node: NodeInventory, whole: tuple[InventoryDevice, ...],
            migs: tuple[InventoryDevice, ...]) -> tuple[InventoryDevice, ...]:
    enabled = [g.index for g in node.gpus if g.mig_mode == "Enabled"]
    if not enabled:
        return whole
    if len(enabled) != len(node.gpus):
        disabled = [g.index for g in node.gpus if g.mig_mode != "Enabled"]
        raise StrategyError(
            f"node {node.node}: invalid MIG configuration for strategy single: GPUs {disabled} "
            f"have MIG disabled while GPUs {enabled} have it enabled")
    profiles = sorted({str(d.profile) for d in migs})
    if len(profiles) > 1:
        raise StrategyError(
            f"node {node.node}: invalid MIG configuration for strategy single: more than one "
            f"MIG device type present ({', '.join(profiles)})")
    return migs


def _non_empty(table: dict[str, tuple[InventoryDevice, ...]]
               ) -> dict[str, tuple[InventoryDevice, ...]]:
    return {name: devices for name, devices in table.items() if devices}
