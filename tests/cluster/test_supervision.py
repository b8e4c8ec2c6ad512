"""``dgxsim up`` supervises what it starts: a component killed with SIGKILL comes back.

A control plane of the test's own (``dgxsim up --nodes 1`` in a temporary
state dir) runs the node agent, the operator and the supervisor. The test
kills the agent, then the operator, each with SIGKILL by the pid the cluster
recorded; each comes back under a new pid with one restart counted, ``dgxsim
status`` reports it healthy again, and a pod (after the operator's death, a
DGXJob) still runs to completion. ``dgxsim down`` then leaves no process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kube import dgxsim, kill_and_see_it_back, processes_mentioning, recorded, wait_for

from localkube.toolchain import bin_dir

pytestmark = [pytest.mark.cluster, pytest.mark.slow]



def kubectl(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig"),
                           *args], input=stdin, capture_output=True, text=True, timeout=60)


def phase(state: Path, kind: str, name: str) -> str | None:
    got = kubectl(state, "get", kind, name, "-o", "json")
    return json.loads(got.stdout).get("status", {}).get("phase") if got.returncode == 0 else None


def pod(name: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"dgxsim.io/duration": "2s"}},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"dgxsim.io/node": "true"},
                 "containers": [{"name": "main", "image": "dgxsim/workload",
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def test_the_agent_and_the_operator_come_back_after_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    up = dgxsim("up", "--nodes", "1", "--state-dir", str(state))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert recorded(state, "supervisor")["restarts"] == 0
        kill_and_see_it_back(state, "node-agent")
        kubectl(state, "apply", "-f", "-", stdin=pod("after-agent"))
        wait_for("pod after the agent's death succeeds", lambda: phase(
            state, "pod", "after-agent") == "Succeeded", timeout_s=90)

        kill_and_see_it_back(state, "operator")
        kubectl(state, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
            "metadata": {"name": "after-operator", "namespace": "default"},
            "spec": {"workload": "gemm", "durationSeconds": 2}}))
        wait_for("job after the operator's death succeeds", lambda: phase(
            state, "dgxjob", "after-operator") == "Succeeded", timeout_s=90)
    finally:
        down = dgxsim("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state)) == []
