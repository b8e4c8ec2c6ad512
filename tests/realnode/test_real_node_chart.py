"""The Helm chart's node DaemonSet on a real node: ``up --real-node-agent chart``.

``dgxsim up --real-nodes 2 --real-node-agent chart`` starts two real kubelets,
each with its containerd, without ``dgxsim node run`` beside them (the two share
one file system, so each node's folders differ) beside a kubelet-less node
(its agent's: the chart must stay off it); the chart, installed with
the values ``dgxsim real-node-values`` prints, runs the node in a real pod of
the workload image there: the pod's device plugin registers with the kubelet,
its CDI specification goes to the node's containerd, and ``helm test`` runs its
GPU Job as a real container. The tests run in file order on one cluster; every
one needs root (without it each reports skipped).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import cli_kubectl, dgxsim, wait_for
from realnode_helpers import cmdline_mentions, mounts_under, needs_root

from localkube.realnode import Runtime
from localkube.toolchain import bin_dir, ensure_tools

REAL = "dgx-real-0"
REALS = (REAL, "dgx-real-1")
RELEASE = "dgxsim-real"
NAMESPACE = "dgxsim-real"
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
    up = dgxsim("up", "--state-dir", str(state), "--nodes", "1",
                "--real-nodes", str(len(REALS)),
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


def allocatable(state: Path, name: str = REAL) -> dict[str, str]:
    node: dict[str, Any] = kubectl(state, "get", "node", name, "-o", "json")
    result: dict[str, str] = node["status"].get("allocatable", {})
    return result


def node_pods(state: Path) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl(
        state, "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=node",
        "-o", "json")["items"]
    return pods


def kubelet_log(state: Path, name: str = REAL) -> str:
    return (state / "logs" / f"kubelet-{name}.log").read_text(errors="replace")


def test_bare_real_nodes_are_ready_without_gpus(cluster: Path) -> None:
    status = dgxsim("status", "--state-dir", str(cluster))
    assert "the Helm chart's node DaemonSet" in status.stdout
    for name in REALS:
        assert f"real node:  {name}" in status.stdout, status.stdout
        assert f"node-{name}" not in status.stdout, "no `dgxsim node run` beside the kubelet"
        node: dict[str, Any] = kubectl(cluster, "get", "node", name, "-o", "json")
        assert any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"]["conditions"])
        assert not any(k.startswith("nvidia.com/") and v != "0"
                       for k, v in allocatable(cluster, name).items())


def test_chart_daemonset_runs_the_node_in_a_real_pod(cluster: Path) -> None:
    printed = dgxsim("real-node-values", "--state-dir", str(cluster))
    assert printed.returncode == 0, printed.stderr
    values = yaml.safe_load(printed.stdout)
    assert values["gpuTest"]["nodeSelector"] == {"kubernetes.io/hostname": REAL}
    values["gpuTest"]["duration"] = "5s"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-",
                                     delete=False) as handle:
        yaml.safe_dump(values, handle)
    kubectl(cluster, "wait", "--for=create", "serviceaccount/default", "--timeout=120s")
    helm(cluster, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace", "--values", handle.name, "--wait", "--timeout", "300s")

    def running() -> bool:
        pods = node_pods(cluster)
        return sorted(p["spec"]["nodeName"] for p in pods) == list(REALS) \
            and all(p["status"].get("phase") == "Running" for p in pods)

    wait_for("the node DaemonSet's pods Running on the real nodes", running, timeout_s=300)
    for name in REALS:
        wait_for(f"nvidia.com/gpu: 8 allocatable on {name}",
                 lambda name=name: allocatable(cluster, name).get("nvidia.com/gpu") == "8",
                 timeout_s=300)
    real = Runtime(cluster).load()
    assert real is not None and real.agent == "chart"
    runtime = Runtime(cluster)
    for record, pod in zip(real.nodes, sorted(node_pods(cluster),
                                              key=lambda p: p["spec"]["nodeName"]), strict=True):
        assert pod["spec"]["nodeName"] == record.name and pod["spec"]["hostNetwork"] is True
        # A real container of that node's own containerd runs the node ...
        containerd = runtime.containerd(record)
        containers = subprocess.run(
            [str(bin_dir() / "ctr"), "--address", str(containerd.socket), "--namespace",
             "k8s.io", "containers", "list", "-q"],
            capture_output=True, text=True, check=True).stdout.split()
        node_container = pod["status"]["containerStatuses"][0]["containerID"]
        assert node_container.removeprefix("containerd://") in containers
        # ... its plugin registered with that node's kubelet once, its CDI specification
        # is in that node's containerd's CDI folder, its state in the node's own folder.
        assert kubelet_log(cluster, record.name).count(
            'resourceName="nvidia.com/gpu"') >= 1
        assert [p for p in containerd.cdi_dir.iterdir() if record.name in p.name], \
            list(containerd.cdi_dir.iterdir())
        assert (cluster / "nodes" / record.name).is_dir()
        # ... and it reached the API server (through the node's network): its labels.
        node: dict[str, Any] = kubectl(cluster, "get", "node", record.name, "-o", "json")
        assert node["metadata"]["labels"].get("nvidia.com/mig.strategy") == "mixed", \
            node["metadata"]["labels"]


def test_helm_test_passes_on_the_real_node(cluster: Path) -> None:
    result = helm(cluster, "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "300s")
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    # The test Job's pod ran under the real kubelet: its sandbox and its workload
    # container were created by the real node's containerd, whose CRI only that
    # kubelet calls. (The kubelet's own log names a pod at this verbosity only for
    # some pods and timings: volume mounts, an observed start.)
    runtime_log = (cluster / "logs" / f"containerd-{REAL}.log").read_text(errors="replace")
    sandbox = re.search(rf'RunPodSandbox for name:\\"{RELEASE}-test-gpu-job-[^"\\]*\\".*'
                        r'returns sandbox id \\"([0-9a-f]+)\\"', runtime_log)
    assert sandbox, "no sandbox of the test Job's pod on the real node"
    assert re.search(rf'CreateContainer within sandbox \\"{sandbox.group(1)}\\" for name:'
                     r'\\"workload\\" returns container id', runtime_log), \
        "no workload container in the test Job's sandbox"


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
                and cmdline_mentions(p, str(cluster), str(shim), real.nodes[0].netns)]
    assert leftover == []
    assert mounts_under(cluster) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert real.nodes[0].netns not in namespaces
    assert not any(Path("/sys/fs/cgroup", c, real.nodes[0].cgroup_root.lstrip("/")).exists()
                   for c in ("memory", "cpu", "pids"))


