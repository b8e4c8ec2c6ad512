"""What an idle node agent costs: CPU and memory with N nodes and no pods.

A kubelet-less agent should cost nothing while nothing happens, whatever the
node count: KWOK's fake kubelet idles at a few percent of a core for hundreds
of nodes. This starts a control plane and an agent with N nodes, lets it settle,
then samples the agent's CPU time over a window and prints CPU (% of one core)
and RSS per node count. Figures only; nothing passes or fails.

    .venv/bin/python bench/idle_agent.py [--nodes 20 140] [--window 20]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _harness import local_cluster_and_agent

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(nodes: int, settle_s: float, window_s: float) -> tuple[float, float]:
    with local_cluster_and_agent(nodes) as (_kubectl, agent):
        time.sleep(settle_s)
        before, t0 = cpu_s(agent.pid), time.monotonic()
        time.sleep(window_s)
        used = cpu_s(agent.pid) - before
        return 100 * used / (time.monotonic() - t0), rss_mib(agent.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[20, 140])
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    print(f"{'nodes':>6} {'agent CPU %':>12} {'RSS MiB':>9} {'CPU % per 100 nodes':>20}")
    for n in args.nodes:
        cpu, rss = measure(n, args.settle, args.window)
        print(f"{n:>6} {cpu:>12.1f} {rss:>9.0f} {100 * cpu / n:>20.2f}", flush=True)


if __name__ == "__main__":
    main()
