"""The Helm chart's node DaemonSet on a real node: ``up --real-node-agent chart``.

``dgxsim up --real-nodes 1 --real-node-agent chart`` starts a real kubelet and
containerd without ``dgxsim node run`` beside them; the chart, installed with
the values ``dgxsim real-node-values`` prints, runs the node in a real pod of
the workload image there: the pod's device plugin registers with the kubelet,
its CDI specification goes to the node's containerd, and ``helm test`` runs its
GPU Job as a real container. The tests run in file order on one cluster; every
one needs root (without it each reports skipped).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import cli_kubectl, dgxsim, wait_for

from localkube.realnode import Runtime
from localkube.toolchain import bin_dir, ensure_tools

REAL = "dgx-real-0"
RELEASE = "dgxsim-real"
NAMESPACE = "dgxsim-real"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
pytestmark = [needs_root, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]
CHART = Path(__file__).resolve().parents[2] / "charts" / "dgxsim"
HELM_HOME = Path(tempfile.mkdtemp(prefix="dgxsim-helm-real-"))


def helm(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """helm against the cluster, with its config, cache and data in a temporary folder."""
    env = {**os.environ, "HELM_CONFIG_HOME": str(HELM_HOME / "config"),
           "HELM_CACHE_HOME": str(HELM_HOME / "cache"),
           "HELM_DATA_HOME": str(HELM_HOME / "data")}
    result = subprocess.run([str(bin_dir() / "helm"), *args, "--kubeconfig",
                             str(state / "kubeconfig")], capture_output=True, text=True,
                            env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ensure_tools(("helm",))
    state = tmp_path_factory.mktemp("realchart")
    up = dgxsim("up", "--state-dir", str(state), "--real-nodes", "1",
                "--real-node-agent", "chart", timeout_s=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:
        helm(state, "uninstall", RELEASE, "--namespace", NAMESPACE, "--ignore-not-found",
             "--wait", "--timeout", "120s", check=False)
        dgxsim("down", "--state-dir", str(state))


def kubectl(state: Path, *args: str) -> Any:
    return cli_kubectl(state, *args)


def allocatable(state: Path) -> dict[str, str]:
    node: dict[str, Any] = kubectl(state, "get", "node", REAL, "-o", "json")
    result: dict[str, str] = node["status"].get("allocatable", {})
    return result


def node_pods(state: Path) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl(
        state, "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=node",
        "-o", "json")["items"]
    return pods


def test_bare_real_node_is_ready_without_gpus(cluster: Path) -> None:
    status = dgxsim("status", "--state-dir", str(cluster))
    assert f"real node:  {REAL}" in status.stdout, status.stdout
    assert f"node-{REAL}" not in status.stdout, "no `dgxsim node run` beside the kubelet"
    assert "the Helm chart's node DaemonSet" in status.stdout
    node: dict[str, Any] = kubectl(cluster, "get", "node", REAL, "-o", "json")
    assert any(c["type"] == "Ready" and c["status"] == "True"
               for c in node["status"]["conditions"])
    assert not any(k.startswith("nvidia.com/") and v != "0"
                   for k, v in allocatable(cluster).items())


def test_chart_daemonset_runs_the_node_in_a_real_pod(cluster: Path) -> None:
    printed = dgxsim("real-node-values", "--state-dir", str(cluster))
    assert printed.returncode == 0, printed.stderr
    values = yaml.safe_load(printed.stdout)
    values["gpuTest"] = {"duration": "5s", "nodeSelector": {"kubernetes.io/hostname": REAL}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-",
                                     delete=False) as handle:
        yaml.safe_dump(values, handle)
    kubectl(cluster, "wait", "--for=create", "serviceaccount/default", "--timeout=120s")
    helm(cluster, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace", "--values", handle.name, "--wait", "--timeout", "300s")

    def running() -> bool:
        pods = node_pods(cluster)
        return len(pods) == 1 and pods[0]["spec"]["nodeName"] == REAL \
            and pods[0]["status"].get("phase") == "Running"

    wait_for("the node DaemonSet's pod Running on the real node", running, timeout_s=300)
    pod = node_pods(cluster)[0]
    assert pod["spec"]["hostNetwork"] is True
    wait_for("nvidia.com/gpu: 8 allocatable on the real node",
             lambda: allocatable(cluster).get("nvidia.com/gpu") == "8", timeout_s=300)
    # A real container of the node's containerd runs the node (no process beside it).
    real = Runtime(cluster).load()
    assert real is not None and real.agent == "chart"
    containers = subprocess.run(
        [str(bin_dir() / "ctr"), "--address", str(Runtime(cluster).containerd(
            real.nodes[0]).socket), "--namespace", "k8s.io", "containers", "list", "-q"],
        capture_output=True, text=True, check=True).stdout.split()
    node_container = pod["status"]["containerStatuses"][0]["containerID"]
    assert node_container.removeprefix("containerd://") in containers


def test_helm_test_passes_on_the_real_node(cluster: Path) -> None:
    result = helm(cluster, "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "300s")
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_uninstall_and_down_leave_nothing(cluster: Path) -> None:
    helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait",
         "--timeout", "180s")
    wait_for("the node pods gone", lambda: node_pods(cluster) == [], timeout_s=180)
    real = Runtime(cluster).load()
    assert real is not None
    shim = Runtime(cluster).containerd(real.nodes[0]).socket
    down = dgxsim("down", "--state-dir", str(cluster))
    assert down.returncode == 0, down.stdout + down.stderr
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _cmdline_mentions(p, str(cluster), str(shim), real.nodes[0].netns)]
    assert leftover == []
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(str(cluster))]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert real.nodes[0].netns not in namespaces
    assert not any(Path("/sys/fs/cgroup", c, real.nodes[0].cgroup_root.lstrip("/")).exists()
                   for c in ("memory", "cpu", "pids"))


def _cmdline_mentions(proc: Path, *texts: str) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and any(t in cmdline for t in texts)
