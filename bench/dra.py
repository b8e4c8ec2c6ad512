"""DRA: ResourceSlice bytes per node and mode, and MIG claims started per second.

First, for a fresh DGX A100 node of each kind: the number of slices and devices
and the JSON bytes of the slices' specs in static mode (whole GPUs, and
all-1g.5gb MIG devices) and dynamic mode (every MIG slot under shared counters).

Then, unless ``--no-cluster``, on a real control plane with N nodes (default
20), side by side in one run: P pods each given one 1g.5gb MIG device (default
10 per node) by the device plugin (nodes pre-partitioned all-1g.5gb, resource
``nvidia.com/mig-1g.5gb``) and by DRA in dynamic mode (a claim per pod from a
ResourceClaimTemplate of ``mig.nvidia.com``: kube-scheduler allocates a slot, the
node prepares it by creating the MIG instance). Measured from one ``kubectl
apply`` of all pods to all Running (for DRA: every claim allocated and prepared).
Prints figures and the ratio, never pass/fail.

Run: ``.venv/bin/python bench/dra.py [--nodes 20] [--pods-per-node 10] [--no-cluster]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from dgxnode.node import SimNode
from gpumodel.dra import slice_specs
from gpumodel.vocabulary import NODE_KINDS


def _measure(specs: list[dict[str, object]]) -> tuple[int, int, int]:
    devices = sum(len(s.get("devices") or []) for s in specs)  # type: ignore[arg-type]
    return len(specs), devices, len(json.dumps(specs, separators=(",", ":")))


def slice_bytes() -> None:
    print(f"{'kind':<16} {'mode':<22} {'slices':>6} {'devices':>7} {'bytes':>9}")
    for kind in NODE_KINDS:
        node = SimNode.create("dgx-0", kind)
        rows = [("static (whole GPUs)", slice_specs(node.inventory(), "static"))]
        node.apply("all-1g.5gb" if kind.endswith("320gb") else "all-1g.10gb")
        rows.append(("static (all 1g MIG)", slice_specs(node.inventory(), "static")))
        fresh = SimNode.create("dgx-0", kind)
        rows.append(("dynamic (every slot)", slice_specs(fresh.inventory(), "dynamic")))
        base = _measure(rows[0][1])[2]
        for mode, specs in rows:
            count, devices, size = _measure(specs)
            print(f"{kind:<16} {mode:<22} {count:>6} {devices:>7} {size:>9,} "
                  f"({size / base:.1f}x whole)")


def _pod(name: str, dra: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "ctr", "image": "dgxsim/workload"}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if dra:
        container["resources"] = {"claims": [{"name": "mig"}]}
        spec["resourceClaims"] = [{"name": "mig", "resourceClaimTemplateName": "mig-1g5gb"}]
    else:
        container["resources"] = {"limits": {"nvidia.com/mig-1g.5gb": "1"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"dgxsim.io/duration": "1h"}},
            "spec": spec}


TEMPLATE = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": "mig-1g5gb"},
            "spec": {"spec": {"devices": {"requests": [{"name": "mig", "exactly": {
                "deviceClassName": "mig.nvidia.com", "selectors": [{"cel": {"expression":
                    "device.attributes['gpu.nvidia.com'].profile == '1g.5gb'"}}]}}]}}}}


def pods_per_second(nodes: int, pods: int, dra: bool) -> float:
    from _harness import local_cluster

    args = ("--dra", "dynamic") if dra else ("--mig-config", "all-1g.5gb")
    with local_cluster(nodes, *args) as kubectl:
        if not dra:  # wait until every node advertises its 56 MIG devices
            while True:
                items = json.loads(subprocess.run([*kubectl, "get", "nodes", "-o", "json"],
                                                  capture_output=True, check=True).stdout)
                ready = [n for n in items["items"] if n["status"].get("allocatable", {}).get(
                    "nvidia.com/mig-1g.5gb") == "56"]
                if len(ready) == nodes:
                    break
                time.sleep(0.5)
        objects = ([TEMPLATE] if dra else []) + [_pod(f"p-{i}", dra) for i in range(pods)]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        t0 = time.monotonic()
        subprocess.run([*kubectl, "apply", "-f", "-"], input=body.encode(), check=True,
                       capture_output=True)
        while True:
            listed = json.loads(subprocess.run([*kubectl, "get", "pods", "-o", "json"],
                                               capture_output=True, check=True).stdout)
            running = sum(p["status"].get("phase") == "Running" for p in listed["items"])
            if running == pods:
                return pods / (time.monotonic() - t0)
            time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods-per-node", type=int, default=10)
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    slice_bytes()
    if args.no_cluster:
        return
    pods = args.nodes * args.pods_per_node
    plugin = pods_per_second(args.nodes, pods, dra=False)
    print(f"device plugin: {pods} pods with one 1g.5gb each on {args.nodes} nodes: "
          f"{plugin:.1f} pods/s to Running")
    dra = pods_per_second(args.nodes, pods, dra=True)
    print(f"DRA dynamic:   {pods} claims allocated and prepared (a MIG instance created "
          f"for each) on {args.nodes} nodes: {dra:.1f} pods/s to Running "
          f"({dra / plugin:.2f}x the device plugin)")


if __name__ == "__main__":
    main()
