"""Real nodes: how long until one is Ready, and pod start latency real vs kubelet-less.

Starts ``dgxsim up --nodes 1 --real-nodes 1`` in a temporary state directory and
prints how long ``up`` took and how long the real node took to become Ready
(network namespace, its containerd, image import, kubelet registration, device
plugin registered), as ``up`` reports them. Then, in the same cluster, it
starts pods asking ``nvidia.com/gpu: 1`` one after another on the real node
(``dgx-real-0``, a real container of the workload image) and on the
kubelet-less node (``dgx-0``), and measures from ``kubectl create`` to the pod
seen Running. Figures and their ratio only; nothing passes or fails. Needs root.

    .venv/bin/python bench/realnode.py [--pods 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localkube.realnode import Runtime
from localkube.toolchain import bin_dir


def dgxsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dgxsim", *args], capture_output=True,
                          text=True, timeout=1200)


def pod(name: str, node: str, image: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                 "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": image,
                                 "command": ["sleep", "600"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def start_latency_s(kubectl: list[str], name: str, node: str, image: str) -> float:
    t0 = time.monotonic()
    subprocess.run([*kubectl, "create", "-f", "-"], input=pod(name, node, image),
                   capture_output=True, text=True, check=True)
    while True:
        phase = subprocess.run([*kubectl, "get", "pod", name, "-o", "jsonpath={.status.phase}"],
                               capture_output=True, text=True).stdout
        if phase == "Running":
            elapsed = time.monotonic() - t0
            break
        if phase in ("Failed", "Succeeded") or time.monotonic() - t0 > 300:
            raise SystemExit(f"pod {name} on {node} ended {phase or 'not started'}")
        time.sleep(0.05)
    subprocess.run([*kubectl, "delete", "pod", name, "--wait=true", "--timeout=120s"],
                   capture_output=True, text=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5, help="pods per node (sequential)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("real nodes need root: nothing measured")
        return
    state = Path(tempfile.mkdtemp(prefix="dgxr", dir="/tmp"))
    t0 = time.monotonic()
    up = dgxsim("up", "--state-dir", str(state), "--nodes", "1", "--real-nodes", "1",
                "--no-operator")
    up_s = time.monotonic() - t0
    try:
        if up.returncode != 0:
            raise SystemExit(up.stdout + up.stderr)
        ready = re.search(r"real node \S+ Ready at \S+ in ([\d.]+)s", up.stdout)
        all_real = re.search(r"real nodes Ready in ([\d.]+)s", up.stdout)
        print(f"dgxsim up (control plane, 1 kubelet-less + 1 real node): {up_s:.1f} s")
        if all_real and ready:
            print(f"  real nodes step (images built or found, then the node): "
                  f"{all_real.group(1)} s; of it the node (namespace, containerd, image "
                  f"import, kubelet Ready, plugin registered) {ready.group(1)} s")
        real = Runtime(state).load()
        assert real is not None and real.workload_image
        kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig")]
        subprocess.run([*kubectl, "wait", "--for=create", "serviceaccount/default",
                        "--timeout=120s"], capture_output=True, check=True)
        figures: dict[str, list[float]] = {"dgx-real-0": [], "dgx-0": []}
        for i in range(args.pods):
            for node, values in figures.items():
                values.append(start_latency_s(kubectl, f"lat-{node}-{i}", node,
                                              real.workload_image))
        print(f"pod start latency, create -> Running, {args.pods} pods each (median / max):")
        for node, values in figures.items():
            what = "real kubelet + containerd 2" if node == "dgx-real-0" else "kubelet-less"
            print(f"  {node:<11} {what:<28} {statistics.median(values):6.2f} s "
                  f"/ {max(values):6.2f} s")
        ratio = statistics.median(figures["dgx-real-0"]) / statistics.median(figures["dgx-0"])
        print(f"  real / kubelet-less (medians): {ratio:.1f}x")
    finally:
        dgxsim("down", "--state-dir", str(state))


if __name__ == "__main__":
    main()
