"""The node agent outlives the API server: its watches resume after a restart.

A kubelet keeps starting pods bound to its node after the API server comes
back; so must the agent. This test runs a control plane of its own (the
session's is shared by every other test), kills its API server with SIGKILL
while the agent runs, starts it again on the same address, and expects a pod
created afterwards to run to completion on the agent's node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import AgentProcess, Cluster, stop_process, wait_for

from localkube import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
NODE_PREFIX = "surv"


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    plane = ControlPlane(tmp_path / "plane")
    state = plane.up()
    try:
        yield Cluster(plane, state)
    finally:
        plane.down()


def restart_apiserver(cluster: Cluster) -> subprocess.Popen[bytes]:
    """SIGKILL the API server, then start it again with its recorded command line."""
    record = next(p for p in cluster.state.processes if p.name == "kube-apiserver")
    os.kill(record.pid, signal.SIGKILL)
    wait_for("API server gone", lambda: cluster.kubectl(
        "get", "--raw", "/readyz", check=False).returncode != 0)
    with open(record.log, "ab") as out:
        proc = subprocess.Popen(record.argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    wait_for("API server back", lambda: cluster.kubectl(
        "get", "--raw", "/readyz", check=False).returncode == 0, timeout_s=90)
    return proc


def pod(name: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"dgxsim.io/duration": "2s"}},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"dgxsim.io/node": "true"},
                 "containers": [{"name": "main", "image": "dgxsim/workload",
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def phase(cluster: Cluster, name: str) -> str | None:
    result = cluster.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(result.stdout)["status"].get("phase") if result.returncode == 0 else None


def test_pods_start_after_the_api_server_restarts(own_cluster: Cluster, tmp_path: Path) -> None:
    agent = AgentProcess(own_cluster, tmp_path / "agent", 1, NODE_PREFIX, "--time-scale", "1")
    agent.start()
    apiserver: subprocess.Popen[bytes] | None = None
    try:
        own_cluster.kubectl("apply", "-f", "-", stdin=pod("before"))
        wait_for("pod before the restart succeeds",
                 lambda: phase(own_cluster, "before") == "Succeeded", timeout_s=90)
        apiserver = restart_apiserver(own_cluster)
        own_cluster.kubectl("apply", "-f", "-", stdin=pod("after"))
        wait_for("pod after the restart succeeds",
                 lambda: phase(own_cluster, "after") == "Succeeded", timeout_s=90)
        assert agent.proc is not None and agent.proc.poll() is None, "the agent kept running"
    finally:
        agent.stop()
        if apiserver is not None:
            stop_process(apiserver)
