"""MIG reconfiguration latency end to end: relabel nodes, wait for ``mig.config.state=success``.

One node, then 20 nodes relabelled at once, on a real control plane with one
node agent (the node side of the label protocol, as NVIDIA's mig-manager).
The figure includes kubectl's polling (a process start per look, about 50 ms).
Prints figures, never pass/fail.

Run: ``.venv/bin/python bench/reconcile_bench.py [--nodes 20]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

from _harness import local_cluster


def relabel_and_wait(kubectl: list[str], nodes: list[str], config: str) -> float:
    t0 = time.monotonic()
    subprocess.run([*kubectl, "label", "node", *nodes, f"nvidia.com/mig.config={config}",
                    "--overwrite"], check=True, capture_output=True)
    while True:
        items = json.loads(subprocess.run(
            [*kubectl, "get", "nodes", "-o", "json"], check=True, capture_output=True,
            text=True).stdout)["items"]
        done = [n for n in items if n["metadata"]["name"] in nodes
                and n["metadata"]["labels"].get("nvidia.com/mig.config.state") == "success"
                and json.loads(n["metadata"]["annotations"]["dgxsim.io/inventory"]).get(
                    "mig_config") == config]
        if len(done) == len(nodes):
            return time.monotonic() - t0
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    with local_cluster(args.nodes) as kubectl:
        names = [f"dgx-{i}" for i in range(args.nodes)]
        one = [relabel_and_wait(kubectl, names[:1], c)
               for c in ("all-1g.5gb", "all-balanced", "all-disabled")]
        print(f"1 node relabelled: label -> state success in "
              f"{', '.join(f'{t * 1000:.0f} ms' for t in one)} "
              "(all-1g.5gb, all-balanced, all-disabled)")
        many = [relabel_and_wait(kubectl, names, c) for c in ("all-1g.5gb", "all-disabled")]
        print(f"{args.nodes} nodes relabelled at once: all success in "
              f"{', '.join(f'{t:.2f} s' for t in many)} (all-1g.5gb, all-disabled); "
              f"{many[0] / one[0]:.1f}x the single-node time")


if __name__ == "__main__":
    main()
