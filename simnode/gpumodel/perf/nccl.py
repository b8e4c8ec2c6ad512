"""NCCL's choice of algorithm and protocol, priced as NCCL's own tuner prices them.

Why model the tuner rather than one formula: a collective's cost depends on
its size and scale in ways no single algorithm captures. NCCL
(``src/graph/tuning.cc``) prices each (algorithm, protocol) pair as
``latency + bytes / bandwidth`` and runs the cheapest, so the model does too:

* **ring**: every rank sends to the next; ``2(n-1)`` steps for all-reduce
  (``n-1`` otherwise), each paying one hop's latency, NVLink (or PCIe) inside a
  node and the network where the ring crosses nodes. One ring per NIC rail runs
  at once, so its bandwidth is the slower of a GPU's NVLink and the node's NICs
  that the job's GPUs drive (one rail each). Data flows through all links at
  once in chunks: the stages are pipelined, not added.
* **tree** (all-reduce across nodes): a chain inside each node and a double
  binary tree between nodes, reduce up and broadcast down pipelined, so its
  latency grows with ``log2(nodes)`` rather than with the ranks, at about 92%
  of the ring's bandwidth and twice the bytes per rank.
* **protocols**: LL (8-byte stores carrying their own flag: lowest latency, a
  quarter of the bandwidth in a ring), LL128 (128-byte lines with 120 bytes of
  data), Simple (full bandwidth, the highest latency). Latencies and bandwidth
  shares are NCCL's tables (``perf-constants.yaml``).

Each candidate's time is non-decreasing in the message size and the cheapest of
them is too; no candidate's bus bandwidth exceeds the slowest link it crosses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.fabric import Fabric

Collective = Literal["allreduce", "allgather", "reducescatter", "alltoall"]
COLLECTIVES: tuple[Collective, ...] = ("allreduce", "allgather", "reducescatter", "alltoall")
Algorithm = Literal["ring", "tree"]
PROTOCOLS = ("ll", "ll128", "simple")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (algorithm, protocol) NCCL could run, with its predicted time."""

    algorithm: Algorithm
    protocol: str
    time_s: float


def bus_factor(kind: Collective, ranks: int) -> float:
    """NCCL's bus-bandwidth factor: 2(n-1)/n for all-reduce, (n-1)/n otherwise."""
    if ranks <= 1:
        return 0.0
    share = (ranks - 1) / ranks
    return 2 * share if kind == "allreduce" else share


def link_gb_per_s(fab: Fabric, gpus_per_node: int, nodes: int) -> float:
    """Bus bandwidth of the slowest stage a collective crosses (NVLink, or the node's NICs)."""
    if nodes == 1:
        return fab.intra_gb_per_s
    return min(fab.intra_gb_per_s, fab.node_nic_gb_per_s(gpus_per_node))


def _ring(kind: Collective, size: float, g: int, nodes: int, proto: str, fab: Fabric,
          c: PerfConstants) -> float:
    ranks = g * nodes
    steps = 2 * (ranks - 1) if kind == "allreduce" else ranks - 1
    # A ring over n ranks in N nodes crosses the network on N of its n links.
    net_steps = math.ceil(steps * nodes / ranks) if nodes > 1 else 0
    latency_us = (c.table("nccl_base_latency_us", f"ring/{proto}")
                  + (steps - net_steps) * c.table("nccl_hop_latency_us",
                                                  f"ring/{fab.intra_hop}/{proto}")
                  + net_steps * c.table("nccl_hop_latency_us", f"ring/net/{proto}"))
    bw = link_gb_per_s(fab, g, nodes) * c.table("nccl_protocol_bw_share", f"ring/{proto}")
    return latency_us * 1e-6 + bus_factor(kind, ranks) * size / (bw * 1e9)


def _tree(size: float, g: int, nodes: int, proto: str, fab: Fabric, c: PerfConstants) -> float:
    """All-reduce up and down a chain in each node and a double binary tree across nodes."""
    depth = (g - 1) * c.table("nccl_hop_latency_us", f"tree/{fab.intra_hop}/{proto}") \
        + math.log2(nodes) * c.table("nccl_hop_latency_us", f"tree/net/{proto}")
    latency_us = c.table("nccl_base_latency_us", f"tree/{proto}") + 2 * depth
    bw = link_gb_per_s(fab, g, nodes) * c.table("nccl_protocol_bw_share", f"tree/{proto}")
    # Every rank sends and receives the whole buffer once up and once down the tree.
    return latency_us * 1e-6 + 2 * size / (bw * 1e9)


def candidates(kind: Collective, size: float, g: int, nodes: int, fab: Fabric,
               c: PerfConstants) -> list[Candidate]:
    """Every (algorithm, protocol) NCCL would consider for this collective."""
    out = [Candidate("ring", p, _ring(kind, size, g, nodes, p, fab, c)) for p in PROTOCOLS]
    if kind == "allreduce" and nodes > 1:
        out += [Candidate("tree", p, _tree(size, g, nodes, p, fab, c)) for p in PROTOCOLS]
    return out


def cheapest(kind: Collective, size: float, g: int, nodes: int, fab: Fabric,
             c: PerfConstants) -> Candidate:
    """The candidate NCCL's tuner runs: the one with the least predicted time."""
    return min(candidates(kind, size, g, nodes, fab, c), key=lambda x: x.time_s)
