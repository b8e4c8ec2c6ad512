"""MIG reconfiguration latency end to end: relabel nodes, wait for ``mig.config.state=success``.

One node (``kubectl label``), then every node relabelled at once (merge patches
of the label, 16 in flight), on a real control plane with one node agent (the
node side of the label protocol, as NVIDIA's mig-manager). The wait follows a watch of the
Nodes (no polling), so the figure is the agent's, from the label command to the
last node reporting ``success`` with the new layout in its inventory. Prints
figures, never pass/fail.

Run: ``.venv/bin/python bench/reconcile_bench.py [--nodes 20] [--skip-single]``
(the goal: ``--nodes 1000``, every node at ``success`` within 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from _harness import local_cluster_and_agent
from scale import api_writes, cpu_s

from kubewire import JSON, KubeClient, KubeError, list_and_watch
from localkube import ControlPlane

SELECTOR = "dgxsim.io/node=true"
LABEL_CONCURRENCY = 16


def _applied(node: JSON, config: str) -> bool:
    meta = node["metadata"]
    inventory = json.loads((meta.get("annotations") or {}).get("dgxsim.io/inventory", "{}"))
    return bool((meta.get("labels") or {}).get("nvidia.com/mig.config.state") == "success"
                and inventory.get("mig_config") == config)


async def label_all(kube: KubeClient, nodes: list[str], config: str) -> None:
    """Label every node, LABEL_CONCURRENCY patches in flight (``kubectl label`` of a
    thousand nodes gets and patches them one after another: minutes on a loaded machine,
    which would measure kubectl rather than the nodes)."""
    gate = asyncio.Semaphore(LABEL_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            await kube.patch_node(name, {"metadata": {"labels": {
                "nvidia.com/mig.config": config}}})

    await asyncio.gather(*(one(n) for n in nodes))


async def relabel_and_wait(kubectl: list[str], kube: KubeClient, nodes: list[str],
                           config: str) -> float:
    wanted = set(nodes)
    done: set[str] = set()
    finished = asyncio.Event()
    last = [time.monotonic()]

    def see(node: JSON) -> None:
        name = node["metadata"]["name"]
        if name in wanted and _applied(node, config):
            done.add(name)
        else:
            done.discard(name)
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(f"  {len(done)}/{len(wanted)} at success "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
        if done == wanted:
            finished.set()

    async def on_list(items: list[JSON]) -> None:
        for item in items:
            see(item)

    async def on_event(_kind: str, node: JSON) -> None:
        see(node)

    async def follow() -> None:
        while True:
            try:
                await list_and_watch(lambda: kube.list_nodes(label_selector=SELECTOR),
                                     lambda v: kube.watch_nodes(v, label_selector=SELECTOR),
                                     on_list, on_event)
            except KubeError:
                await asyncio.sleep(0.5)

    t0 = time.monotonic()
    watcher = asyncio.create_task(follow())
    if len(nodes) == 1:
        await asyncio.to_thread(subprocess.run, [*kubectl, "label", "node", *nodes,
                                                 f"nvidia.com/mig.config={config}",
                                                 "--overwrite"], check=True,
                                capture_output=True)
    else:
        await label_all(kube, nodes, config)
    labelled = time.monotonic() - t0
    try:
        await finished.wait()
    finally:
        watcher.cancel()
    total = time.monotonic() - t0
    if len(nodes) > 1:
        print(f"  labelling {len(nodes)} nodes took {labelled:.1f} s; the last node "
              f"reached success {total - labelled:.1f} s after it", flush=True)
    return total


def _control_plane_pids(kubectl: list[str]) -> dict[str, int]:
    """The benchmark's control-plane processes by name (from its records)."""
    state = ControlPlane(Path(kubectl[kubectl.index("--kubeconfig") + 1]).parent).load_state()
    return {r.name: r.pid for r in state.processes} if state is not None else {}


def _costs(kubectl: list[str], pids: dict[str, int]) -> tuple[dict[str, float], Counter[str]]:
    return {name: cpu_s(pid) for name, pid in pids.items()}, api_writes(kubectl)


def _report_costs(count: int, before: tuple[dict[str, float], Counter[str]],
                  after: tuple[dict[str, float], Counter[str]]) -> None:
    cpu = ", ".join(f"{name} {after[0][name] - before[0][name]:.1f} s" for name in after[0])
    writes = after[1] - before[1]
    per_node = ", ".join(f"{key} {n / count:.2f}" for key, n in writes.most_common())
    print(f"  CPU: {cpu}; API writes per node {sum(writes.values()) / count:.2f} "
          f"({per_node})", flush=True)


async def run(kubectl: list[str], count: int, skip_single: bool,
              pids: dict[str, int]) -> None:
    kube = await KubeClient.connect(Path(kubectl[kubectl.index("--kubeconfig") + 1]))
    names = [f"dgx-{i}" for i in range(count)]
    try:
        if not skip_single:
            one = [await relabel_and_wait(kubectl, kube, names[:1], c)
                   for c in ("all-1g.5gb", "all-balanced", "all-disabled")]
            print(f"1 node relabelled: label -> state success in "
                  f"{', '.join(f'{t * 1000:.0f} ms' for t in one)} "
                  "(all-1g.5gb, all-balanced, all-disabled)", flush=True)
        many = []
        for config in ("all-1g.5gb", "all-disabled"):
            before = _costs(kubectl, pids)
            many.append(await relabel_and_wait(kubectl, kube, names, config))
            _report_costs(count, before, _costs(kubectl, pids))
            print(f"{count} nodes relabelled {config} at once: all success in "
                  f"{many[-1]:.1f} s (load {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
                  "cores)", flush=True)
    finally:
        await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--skip-single", action="store_true",
                        help="only the relabel of every node at once")
    args = parser.parse_args()
    with local_cluster_and_agent(args.nodes) as (kubectl, agent):
        pids = {"agent": agent.pid, **_control_plane_pids(kubectl)}
        asyncio.run(run(kubectl, args.nodes, args.skip_single, pids))


if __name__ == "__main__":
    main()
