"""Device plugin and node agent figures: Allocate latency, MIG change propagation, pod rate.

Prints figures, never pass/fail (the machine is shared and noisy):

1. Allocate latency (p50, p99) of one plugin over its Unix socket, as the
   kubelet calls it.
2. Time from a MIG layout change in the node's inventory to the kubelet side
   having the new device lists (ListAndWatch).
3. Pods per second one node agent admits and completes across 20 nodes on a
   real control plane (``--skip-cluster`` leaves this out).

Run: ``.venv/bin/python bench/plugin_bench.py [--skip-cluster] [--pods N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from deviceplugin.server import NodePlugin, socket_name
from deviceplugin.servicer import AllocateContext
from deviceplugin.source import InventoryFeed
from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.kubelet import DeviceManager
from kubeletapi.v1beta1 import api_pb2, api_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _harness import local_cluster
from factories import balanced, make_inventory


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_it() -> None:
        event.set()

    return set_it


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_allocate(tmp: Path, calls: int) -> None:
    plugin_dir = tmp / "dp"
    kubelet = DeviceManager("bench", plugin_dir, Checkpoint(tmp / "ck.json"))
    await kubelet.start()
    inventory = make_inventory("bench")
    plugin = NodePlugin(InventoryFeed(inventory), plugin_dir, "mixed",
                        AllocateContext("bench", "unix:///run/dgxsim/node.sock"))
    await plugin.start()
    ids = [d.id for d in inventory.devices if d.kind == "gpu"]
    latencies = []
    async with grpc.aio.insecure_channel(
            f"unix://{plugin_dir / socket_name('nvidia.com/gpu')}") as channel:
        stub = api_pb2_grpc.DevicePluginStub(channel)
        for i in range(calls):
            request = api_pb2.AllocateRequest(container_requests=[
                api_pb2.ContainerAllocateRequest(devices_ids=[ids[i % 8], ids[(i + 1) % 8]])])
            t0 = time.perf_counter()
            await stub.Allocate(request)
            latencies.append((time.perf_counter() - t0) * 1000)
    print(f"Allocate (2 GPUs) over the Unix socket, {calls} calls: "
          f"p50 {percentile(latencies, 0.5):.3f} ms, p99 {percentile(latencies, 0.99):.3f} ms, "
          f"mean {statistics.mean(latencies):.3f} ms")

    feed = plugin.source
    assert isinstance(feed, InventoryFeed)
    changed = asyncio.Event()

    async def note_change() -> None:
        changed.set()

    kubelet.on_change = note_change
    changes = []
    for i in range(20):
        layout = balanced("bench", generation=2 * i + 2) if i % 2 == 0 else make_inventory(
            "bench", generation=2 * i + 3)
        want = 16 if i % 2 == 0 else 0
        t0 = time.perf_counter()
        await feed.publish(layout)
        while kubelet.allocatable().get("nvidia.com/mig-1g.5gb", 0) != want:
            changed.clear()
            await changed.wait()
        changes.append((time.perf_counter() - t0) * 1000)
    print(f"MIG layout change -> kubelet has the new lists (20 changes): "
          f"p50 {percentile(changes, 0.5):.2f} ms, max {max(changes):.2f} ms")

    rejoin = []
    for i in range(5):
        await kubelet.stop()
        await asyncio.sleep(0.3)  # a kubelet restart takes at least this long
        listed = asyncio.Event()
        kubelet = DeviceManager("bench", plugin_dir, Checkpoint(tmp / f"ck{i}.json"),
                                on_change=_setter(listed))
        t0 = time.perf_counter()
        await kubelet.start()
        await listed.wait()
        rejoin.append((time.perf_counter() - t0) * 1000)
    print(f"kubelet.sock recreated -> plugin registered and listed again (5 restarts): "
          f"median {statistics.median(rejoin):.0f} ms, max {max(rejoin):.0f} ms")
    await plugin.stop()
    await kubelet.stop()


def bench_cluster(pods: int, nodes: int) -> None:
    with local_cluster(nodes, "--time-scale", "100") as kubectl:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rate"},
               "spec": {"completions": pods, "parallelism": pods, "template": {
                   "metadata": {"annotations": {"dgxsim.io/duration": "1s"}},
                   "spec": {"restartPolicy": "Never", "containers": [{
                       "name": "main", "image": "dgxsim/workload",
                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
        t0 = time.monotonic()
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(job), text=True,
                       check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=complete", "job/rate",
                        "--timeout=600s"], check=True, capture_output=True)
        elapsed = time.monotonic() - t0
        print(f"{pods} one-GPU pods on {nodes} nodes (1 s simulated each at time scale 100): "
              f"all complete in {elapsed:.1f} s -> {pods / elapsed:.1f} pods/s admitted and "
              "completed (includes the Job controller and kube-scheduler)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=160)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dgxb", dir="/tmp"))
    try:
        asyncio.run(bench_allocate(tmp, args.calls))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.skip_cluster:
        bench_cluster(args.pods, args.nodes)


if __name__ == "__main__":
    main()
