"""Preferred allocation: which of the free devices a container should get.

Whole GPUs: NCCL and GPUDirect RDMA run best when a job's GPUs share a PCIe
switch (and with it their rail NICs) and a NUMA node, so for 2 and 4 GPUs the
choice minimises the PCIe switches, then the NUMA nodes, it spans; among equal
choices it keeps the other switches whole, so the next job finds pairs intact.

MIG devices: a device is taken from the GPU that already has the fewest free
devices of its kind, so that partly used GPUs fill up first and idle GPUs stay
idle (and can be reconfigured). Ties go to the lowest GPU index and the lowest
start slice. This module is pure: it sees devices, never gRPC.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from deviceplugin.errors import DeviceRequestError
from gpumodel.inventory import InventoryDevice

MAX_EXHAUSTIVE = 5000


def preferred(available: Sequence[InventoryDevice], must_include: Sequence[InventoryDevice],
              size: int) -> list[str]:
    """IDs of ``size`` devices from ``available`` that include every ``must_include``."""
    must_ids = {d.id for d in must_include}
    avail_ids = {d.id for d in available}
    if not must_ids <= avail_ids:
        missing = sorted(must_ids - avail_ids)
        raise DeviceRequestError(f"must-include devices not available: {missing}")
    if size < len(must_ids):
        raise DeviceRequestError(f"allocation size {size} is smaller than the "
                              f"{len(must_ids)} must-include devices")
    if size > len(available):
        raise DeviceRequestError(f"allocation size {size} exceeds the {len(available)} "
                              "available devices")
    rest = [d for d in available if d.id not in must_ids]
    need = size - len(must_ids)
    fixed = [d for d in available if d.id in must_ids]
    if all(d.kind == "mig" for d in available):
        chosen = fixed + _pack_mig(rest, need)
    else:
        chosen = fixed + _closest_gpus(fixed, rest, need)
    return [d.id for d in chosen]


def _pack_mig(rest: list[InventoryDevice], need: int) -> list[InventoryDevice]:
    free_per_gpu = Counter(d.gpu_index for d in rest)
    ordered = sorted(rest, key=lambda d: (free_per_gpu[d.gpu_index], *_slot(d)))
    return ordered[:need]


def _slot(device: InventoryDevice) -> tuple[int, int]:
    start = device.mig.memory_start if device.mig else 0
    return (device.gpu_index, start)


def _closest_gpus(fixed: list[InventoryDevice], rest: list[InventoryDevice], need: int
                  ) -> list[InventoryDevice]:
    if need == 0:
        return []
    if _combinations(len(rest), need) > MAX_EXHAUSTIVE:
        return sorted(rest, key=lambda d: (d.pcie_switch, d.gpu_index))[:need]
    free_per_switch = Counter(d.pcie_switch for d in rest)

    def score(combo: tuple[InventoryDevice, ...]) -> tuple[int, int, int, tuple[int, ...]]:
        group = [*fixed, *combo]
        switches = {d.pcie_switch for d in group}
        numa = {d.numa_node for d in group}
        # Switches left partly used by this choice: fewer is better.
        taken = Counter(d.pcie_switch for d in combo)
        broken = sum(1 for s, n in taken.items() if n < free_per_switch[s])
        return (len(switches), len(numa), broken, tuple(d.gpu_index for d in combo))

    best = min(itertools.combinations(rest, need), key=score)
    return list(best)


def _combinations(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)
