"""Collective communication with NCCL's definitions and NCCL's own link figures.

Why NCCL's definitions: every published collective figure (nccl-tests, NCCL
issues, vendor reports) is a *bus bandwidth*, ``busbw = factor * S / t`` with
``factor = 2(n-1)/n`` for all-reduce and ``(n-1)/n`` for all-gather,
reduce-scatter and all-to-all, so the model speaks the same language:
``t = alpha + factor * S / busbw``.

Where the numbers come from: the bandwidth of one NVLink is the figure NCCL's
topology search itself uses for that NVLink generation, the latencies are NCCL's
ring latencies (base plus one hop per step), and a GPU's inter-node bandwidth is
its rail-matched HDR NIC (one per GPU on a DGX A100) at the fitted IB efficiency.
The fat tree is non-blocking between rails, so rails do not contend. Across nodes
the algorithm is hierarchical: reduce-scatter inside the node over NVSwitch,
all-reduce of each GPU's shard across nodes on its own rail, all-gather inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from gpumodel.gpus import DeviceSpec, device
from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.errors import PerfError
from gpumodel.systems import SystemSpec, system_catalog

Collective = Literal["allreduce", "allgather", "reducescatter", "alltoall"]
COLLECTIVES: tuple[Collective, ...] = ("allreduce", "allgather", "reducescatter", "alltoall")


@dataclass(frozen=True, slots=True)
class Fabric:
    """Per-GPU bandwidths and hop latencies NCCL sees on one kind of node."""

    intra_gb_per_s: float
    intra_hop: Literal["nvlink", "pcie"]
    inter_gb_per_s: float
    intra_name: str


@dataclass(frozen=True, slots=True)
class CollectiveTime:
    """Duration of one collective and the bus bandwidth NCCL would report for it."""

    time_s: float
    busbw_gb_per_s: float
    bytes: float


def bus_factor(kind: Collective, ranks: int) -> float:
    """NCCL's bus-bandwidth factor: 2(n-1)/n for all-reduce, (n-1)/n otherwise."""
    if ranks <= 1:
        return 0.0
    share = (ranks - 1) / ranks
    return 2 * share if kind == "allreduce" else share


def system_for(device_name: str) -> SystemSpec | None:
    """The DGX system built from ``device_name`` (first in catalog order), if any."""
    for spec in system_catalog().values():
        if spec.gpu == device_name:
            return spec
    return None


@cache
def fabric(device_name: str, c: PerfConstants) -> Fabric:
    """The fabric a GPU of ``device_name`` sits on: its DGX system, or its own links."""
    spec = device(device_name)
    sys_spec = system_for(device_name)
    intra_name = sys_spec.intra_node_fabric if sys_spec else ("nvswitch" if spec.nvlink
                                                               else "pcie")
    if spec.nvlink is not None:
        per_link = c.table("nccl_nvlink_gb_per_s_per_link", str(spec.nvlink.generation))
        intra, hop = spec.nvlink.links * per_link, "nvlink"
    else:
        intra, hop = _pcie_gb_per_s(spec, c), "pcie"
    inter = _nic_gb_per_s(spec, sys_spec, c)
    return Fabric(intra_gb_per_s=intra, intra_hop=hop,  # type: ignore[arg-type]
                  inter_gb_per_s=inter, intra_name=intra_name)


def _pcie_gb_per_s(spec: DeviceSpec, c: PerfConstants) -> float:
    if spec.pcie is None:
        raise PerfError(f"{spec.name} has neither NVLink nor PCIe to talk to its peers")
    gen3_x16_gb_per_s = 15.75  # the Gen3 x16 line rate NCCL's PCI_BW figure stands for
    return c.scalar("nccl_pcie_gen3_x16_gb_per_s") * spec.pcie.gb_per_s / gen3_x16_gb_per_s


def _nic_gb_per_s(spec: DeviceSpec, sys_spec: SystemSpec | None, c: PerfConstants) -> float:
    """Inter-node bandwidth per GPU: its share of the rail-matched compute NICs."""
    efficiency = c.scalar("ib_efficiency")
    if sys_spec is None:  # a lone server: assume one HDR 200 Gb/s NIC per GPU
        return 200 / 8 * efficiency
    nics = sys_spec.nics_with_role("compute")
    per_gpu_gb_per_s = sum(n.gb_per_s for n in nics) / sys_spec.gpu_count
    return per_gpu_gb_per_s * efficiency


def _ring(kind: Collective, ranks: int, size_bytes: float, gb_per_s: float, hop_us: float,
          c: PerfConstants) -> float:
    """One ring collective among ``ranks`` peers at ``gb_per_s`` bus bandwidth."""
    if ranks <= 1:
        return 0.0
    steps = 2 * (ranks - 1) if kind == "allreduce" else ranks - 1
    alpha_s = (c.scalar("nccl_ring_base_latency_us") + steps * hop_us) * 1e-6
    return alpha_s + bus_factor(kind, ranks) * size_bytes / (gb_per_s * 1e9)


def collective_time(kind: Collective, size_bytes: float, gpus_per_node: int, nodes: int,
                    device_name: str, c: PerfConstants) -> CollectiveTime:
    """Time of one ``kind`` over ``gpus_per_node`` x ``nodes`` GPUs of ``size_bytes``."""
    if kind not in COLLECTIVES:
        raise PerfError(f"unknown collective {kind!r}; known: {', '.join(COLLECTIVES)}")
    ranks = gpus_per_node * nodes
    if ranks <= 1 or size_bytes <= 0:
        return CollectiveTime(time_s=0.0, busbw_gb_per_s=0.0, bytes=size_bytes)
    fab = fabric(device_name, c)
    hop = c.table("nccl_ring_hop_latency_us", fab.intra_hop)
    net_hop = c.table("nccl_ring_hop_latency_us", "net")
    if nodes == 1:
        t = _ring(kind, ranks, size_bytes, fab.intra_gb_per_s, hop, c)
    elif kind == "alltoall":
        t = _alltoall(size_bytes, gpus_per_node, nodes, fab, hop, net_hop, c)
    elif gpus_per_node == 1:
        t = _ring(kind, nodes, size_bytes, fab.inter_gb_per_s, net_hop, c)
    else:
        t = _hierarchical(kind, size_bytes, gpus_per_node, nodes, fab, hop, net_hop, c)
    busbw = bus_factor(kind, ranks) * size_bytes / t / 1e9
    return CollectiveTime(time_s=t, busbw_gb_per_s=busbw, bytes=size_bytes)


def _hierarchical(kind: Collective, size_bytes: float, g: int, nodes: int, fab: Fabric,
                  hop: float, net_hop: float, c: PerfConstants) -> float:
    """Reduce-scatter in the node, the cross-node step per rail on S/g, all-gather in the node."""
    shard = size_bytes / g
    inter = _ring(kind, nodes, shard, fab.inter_gb_per_s, net_hop, c)
    if kind == "allreduce":
        return (_ring("reducescatter", g, size_bytes, fab.intra_gb_per_s, hop, c) + inter
                + _ring("allgather", g, size_bytes, fab.intra_gb_per_s, hop, c))
    # all-gather / reduce-scatter: the node-local and the cross-node stage each once
    return _ring(kind, g, size_bytes, fab.intra_gb_per_s, hop, c) + inter


def _alltoall(size_bytes: float, g: int, nodes: int, fab: Fabric, hop: float, net_hop: float,
              c: PerfConstants) -> float:
    """Each GPU sends S/n to every peer: the node-local share over NVLink, the rest over its NIC."""
    ranks = g * nodes
    local = size_bytes * (g - 1) / ranks / (fab.intra_gb_per_s * 1e9)
    remote = size_bytes * (ranks - g) / ranks / (fab.inter_gb_per_s * 1e9)
    alpha = (c.scalar("nccl_ring_base_latency_us") + (g - 1) * hop + (nodes - 1) * net_hop)
    return alpha * 1e-6 + max(local, remote)
