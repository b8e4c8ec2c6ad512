"""Operator planners: gang placement decisions per second and dynamic partitioning rounds.

Pure planners, no cluster: figures say how much work one reconcile round is.

* placement: 500 pending DGXJobs (a mix of 1-4 replicas of 1, 2, 4 or 8 GPUs, or
  MIG devices) against 64 DGX A100 nodes in 8 leaf switches, a quarter of them
  partly busy; one round places the whole queue in priority order;
* partitioning: a round of the dynamic partitioner for 1 node and for 20 nodes
  relabelled at once (all MIG-disabled, each asked for 14 1g.5gb + 2 3g.20gb).

Run: ``.venv/bin/python bench/operator_bench.py``.
"""

from __future__ import annotations

import random
import statistics
import time

from migoperator.planning.job_placer import JobRequest, NodeCapacity, place_jobs
from migoperator.planning.mig_planner import PartitionMemory, plan_partitions
from migoperator.planning.views import GpuView, NodeView, Request

GPU = "nvidia.com/gpu"
MIG = ("nvidia.com/mig-1g.5gb", "nvidia.com/mig-2g.10gb", "nvidia.com/mig-3g.20gb")


def cluster(rng: random.Random, nodes: int = 64) -> list[NodeCapacity]:
    out = []
    for i in range(nodes):
        busy = rng.choice((0, 0, 0, 2, 4, 8))
        free = {GPU: 8 - busy, MIG[0]: rng.choice((0, 7, 14)), MIG[1]: rng.choice((0, 3)),
                MIG[2]: rng.choice((0, 2))}
        out.append(NodeCapacity(f"dgx-{i}", free, leaf=f"leaf-{i // 8}"))
    return out


def queue(rng: random.Random, jobs: int = 500) -> list[JobRequest]:
    out = []
    for i in range(jobs):
        if rng.random() < 0.3:
            out.append(JobRequest(f"ns/mig-{i}", rng.choice(MIG), 1, rng.randint(1, 8),
                                  rng.randint(-2, 2), float(i)))
        else:
            out.append(JobRequest(f"ns/job-{i}", GPU, rng.choice((1, 2, 4, 8)),
                                  rng.randint(1, 4), rng.randint(-2, 2), float(i)))
    return out


def bench_placement(rounds: int = 20) -> None:
    rng = random.Random(7)
    nodes, jobs = cluster(rng), queue(rng)
    times = []
    placed = 0
    for _ in range(rounds):
        start = time.perf_counter()
        results = place_jobs(jobs, nodes)
        times.append(time.perf_counter() - start)
        placed = sum(1 for r in results if hasattr(r, "nodes"))
    best, median = min(times), statistics.median(times)
    print(f"placement: {len(jobs)} pending DGXJobs, {len(nodes)} nodes: round median "
          f"{median * 1e3:.1f} ms (best {best * 1e3:.1f} ms); {len(jobs) / median:,.0f} "
          f"decisions/s; {placed} placed, {len(jobs) - placed} waiting")


def dynamic_nodes(n: int) -> list[NodeView]:
    return [NodeView(name=f"dgx-{i}", device="a100-40gb",
                     gpus=tuple(GpuView(index=g, mig_enabled=False) for g in range(8)),
                     labels={"dgxsim.io/mig-policy": "dynamic",
                             "kubernetes.io/hostname": f"dgx-{i}"},
                     allocatable={GPU: 8}) for i in range(n)]


def demand(n: int) -> list[Request]:
    out = []
    for i in range(n):
        sel = (("kubernetes.io/hostname", f"dgx-{i}"),)
        out += [Request(f"ns/s{i}-{k}", MIG[0], 1, 0.0, sel) for k in range(14)]
        out += [Request(f"ns/l{i}-{k}", MIG[2], 1, 0.0, sel) for k in range(2)]
    return out


def bench_partitioning(nodes: int, rounds: int = 10) -> None:
    views, reqs = dynamic_nodes(nodes), demand(nodes)
    times = []
    gpus = 0
    for _ in range(rounds):
        start = time.perf_counter()
        plan = plan_partitions(views, reqs, PartitionMemory(), 100.0)
        times.append(time.perf_counter() - start)
        gpus = sum(d.gpus_in_use for d in plan.decisions)
    median = statistics.median(times)
    print(f"partitioning: {nodes} node(s) relabelled at once, {len(reqs)} pending pods: round "
          f"median {median * 1e3:.1f} ms; {len(plan.decisions)} configs, {gpus} GPUs carved "
          f"({gpus / max(nodes, 1):.0f} per node)")


if __name__ == "__main__":
    bench_placement()
    bench_partitioning(1)
    bench_partitioning(20)
