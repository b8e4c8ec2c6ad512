"""Collective communication with NCCL's definitions and NCCL's own link figures.

Why NCCL's definitions: every published collective figure (nccl-tests, NCCL
issues, vendor reports) is a *bus bandwidth*, ``busbw = factor * S / t`` with
``factor = 2(n-1)/n`` for all-reduce and ``(n-1)/n`` for all-gather,
reduce-scatter and all-to-all, so the model speaks the same language:
``t = alpha + factor * S / busbw``.

Where the numbers come from: the bandwidth of one NVLink is the figure NCCL's
topology search itself uses for that NVLink generation, and a GPU's inter-node
bandwidth is its rail-matched HDR NIC (one per GPU on a DGX A100) at the fitted
IB efficiency. The fat tree is non-blocking between rails, so rails do not
contend.

Why a choice of algorithm and protocol: NCCL has no single cost. Its tuner
(``src/graph/tuning.cc``) prices every algorithm (ring; across nodes also the
tree: a chain inside each node and a double binary tree between nodes) with
every protocol (LL: 8-byte stores with an inline flag, lowest latency, a
quarter of the link; LL128: 128-byte lines, 120 bytes of data; Simple: full
bandwidth, highest latency) as ``latency + bytes / bandwidth`` and runs the
cheapest (:mod:`gpumodel.perf.nccl`). Phases are pipelined: a ring or tree
that spans nodes moves data through NVLink and the NICs at once, in chunks, so
its bandwidth is that of its slowest stage, not the sum of the stages' times.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.errors import PerfError
from gpumodel.perf.fabric import Fabric, fabric, system_for
from gpumodel.perf.nccl import COLLECTIVES, Collective, bus_factor, cheapest

__all__ = ["COLLECTIVES", "Collective", "CollectiveTime", "Fabric", "bus_factor",
           "collective_time", "fabric", "system_for"]


@dataclass(frozen=True, slots=True)
class CollectiveTime:
    """Duration of one collective and the bus bandwidth NCCL would report for it."""

    time_s: float
    busbw_gb_per_s: float
    bytes: float
    choice: str = "none"
    """NCCL's algorithm/protocol for it (``ring/simple``, ``tree/ll``, ...)."""


def collective_time(kind: Collective, size_bytes: float, gpus_per_node: int, nodes: int,
                    device_name: str, c: PerfConstants) -> CollectiveTime:
    """Time of one ``kind`` over ``gpus_per_node`` x ``nodes`` GPUs of ``size_bytes``."""
    if kind not in COLLECTIVES:
        raise PerfError(f"unknown collective {kind!r}; known: {', '.join(COLLECTIVES)}")
    ranks = gpus_per_node * nodes
    if ranks <= 1 or size_bytes <= 0:
        return CollectiveTime(time_s=0.0, busbw_gb_per_s=0.0, bytes=size_bytes)
    fab = fabric(device_name, c)
    if kind == "alltoall":
        t, choice = _alltoall(size_bytes, gpus_per_node, nodes, fab, c), "p2p/simple"
    else:
        best = cheapest(kind, size_bytes, gpus_per_node, nodes, fab, c)
        t, choice = best.time_s, f"{best.algorithm}/{best.protocol}"
    busbw = bus_factor(kind, ranks) * size_bytes / t / 1e9
    return CollectiveTime(time_s=t, busbw_gb_per_s=busbw, bytes=size_bytes, choice=choice)


def _alltoall(size_bytes: float, g: int, nodes: int, fab: Fabric, c: PerfConstants) -> float:
    """Each GPU sends S/n to every peer: the node-local share over NVLink, the rest over its NIC."""
    ranks = g * nodes
    local = size_bytes * (g - 1) / ranks / (fab.intra_gb_per_s * 1e9)
    remote = size_bytes * (ranks - g) / ranks / (fab.inter_gb_per_s * 1e9)
    alpha = (c.table("nccl_base_latency_us", "ring/simple")
             + (g - 1) * c.table("nccl_hop_latency_us", f"ring/{fab.intra_hop}/simple")
             + (nodes - 1) * c.table("nccl_hop_latency_us", "ring/net/simple"))
    return alpha * 1e-6 + max(local, remote)
