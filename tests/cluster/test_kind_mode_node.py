"""`dgxsim node run` beside a kubelet: what the chart's DaemonSet runs on each kind worker.

The kubelet's side is played by the node agent's device manager (the same
Registration service and device-plugin client a kubelet has), and the Node
object is created first, as a kubelet would register it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import Cluster

from deviceplugin.cdi import resolves, spec_file, spec_problems
from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.store import NodeStore

NODE = "kind-worker-sim"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dgk", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def labels(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.kubectl_json("get", "node", NODE)["metadata"].get("labels") or {})


async def until(what: str, predicate: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_node_run_serves_a_kubelet_and_answers_mig_labels(
        control_plane: Cluster, short_dir: Path) -> None:
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"dgxsim.io/dgx-node": "true"}}}))
    plugin_dir = short_dir / "device-plugins"
    kubelet = DeviceManager(NODE, plugin_dir, Checkpoint(short_dir / "kubelet-checkpoint.json"))
    await kubelet.start()
    state = short_dir / "state"
    log = open(short_dir / "node.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "dgxsim", "node", "run", "--node-name", NODE,
         "--state-dir", str(state), "--device-plugin-dir", str(plugin_dir),
         "--cdi-dir", str(short_dir / "cdi"),
         "--kubeconfig", str(control_plane.kubeconfig)], stdout=log, stderr=subprocess.STDOUT)
    try:
        await until("8 GPUs advertised",
                    lambda: kubelet.allocatable().get("nvidia.com/gpu") == 8)
        await until("GPU labels", lambda: labels(control_plane).get(
            "nvidia.com/gpu.product") == "NVIDIA-A100-SXM4-40GB")
        node = control_plane.kubectl_json("get", "node", NODE)
        assert "dgxsim.io/inventory" in node["metadata"]["annotations"]
        assert "nvidia.com/gpu" not in (node.get("status") or {}).get("capacity", {}), \
            "status belongs to the real kubelet"

        control_plane.kubectl("label", "node", NODE, "nvidia.com/mig.config=all-1g.5gb")
        await until("MIG config success", lambda: labels(control_plane).get(
            "nvidia.com/mig.config.state") == "success")
        await until("56 slices",
                    lambda: kubelet.allocatable().get("nvidia.com/mig-1g.5gb") == 56)

        alloc = await kubelet.allocate("pod-uid", "main", "nvidia.com/mig-1g.5gb", 1)
        assert alloc.envs["DGXSIM_ENDPOINT"] == "unix:///run/dgxsim/node.sock"
        # The runtime resolves every CDI name Allocate returns from the node's spec,
        # rewritten for the new layout: 56 MIG devices by UUID and by index.
        spec_path = short_dir / "cdi" / spec_file(NODE)
        await until("CDI spec with the MIG devices", lambda: spec_path.exists() and sum(
            d["name"].startswith("MIG-") for d in json.loads(spec_path.read_text())[
                "devices"]) == 56)
        spec = json.loads(spec_path.read_text())
        assert spec_problems(spec) == []
        assert alloc.cdi_devices and all(resolves(spec, n) for n in alloc.cdi_devices)
        assert resolves(spec, "nvidia.com/gpu=0:6") and resolves(spec, "nvidia.com/gpu=all")
        assert ("/run/dgxsim", str(state / "run")) in alloc.mounts

        # The job container's view: the endpoint socket through its mount.
        env = {**os.environ, "DGXSIM_ENDPOINT": f"unix://{state / 'run' / 'node.sock'}",
               "DGXSIM_NODE": NODE,
               "NVIDIA_VISIBLE_DEVICES": alloc.envs["NVIDIA_VISIBLE_DEVICES"],
               "DGXSIM_POD_NAMESPACE": "team", "DGXSIM_POD_NAME": "infer-0",
               "DGXSIM_CONTAINER_NAME": "main"}
        job = subprocess.Popen([sys.executable, "-m", "dgxsim", "workload", "--duration", "3s"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        store = NodeStore(state)
        await until("device held by the workload", lambda: "team/infer-0/main"
                    in store.load().allocations.values() or job.poll() is not None)
        assert job.poll() is None, job.communicate()[0]
        out, _ = job.communicate(timeout=60)
        assert job.returncode == 0, out
        assert '"status": "completed"' in out
        assert "team/infer-0/main" not in store.load().allocations.values()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        await kubelet.stop()
        control_plane.kubectl("delete", "node", NODE, "--ignore-not-found")
