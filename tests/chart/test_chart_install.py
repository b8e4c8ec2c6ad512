"""helm install, upgrade, test and uninstall on the real control plane, kubelet-less.

The node agent (as ``dgxsim up --nodes N`` starts it) plays the kubelet of two
simulated DGX nodes: it runs the chart's DaemonSet and operator pods (they stay
Running and Ready, as services do) and the ``helm test`` Job's pod, which asks
for one ``nvidia.com/gpu`` through the device plugin and completes after its
``dgxsim.io/duration`` divided by the agent's time scale. The nodes carry a
label of this test only, so the chart lands on them and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from chart_helpers import CHART, JSON, helm, values_args
from kube import AgentProcess, Cluster, wait_for

from gpumodel.vocabulary import DEVICES_ANNOTATION as DEVICES
from localkube.toolchain import ensure_tools

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "dgxsim-it"
NAMESPACE = "dgxsim-it"
NODE_LABEL = "dgxsim.io/chart-install"
NODES = 2
SELECT = {"dgxsim.io/dgx-node": None, NODE_LABEL: "true"}
VALUES: JSON = {
    "image": {"tag": "it"},
    "nodeSelector": SELECT,
    "operator": {"nodeSelector": {NODE_LABEL: "true"}},
    "gpuTest": {"duration": "20s", "nodeSelector": {NODE_LABEL: "true"}},
}
WAIT = "180s"



@pytest.fixture(scope="module")
def nodes(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    ensure_tools(("helm",))
    agent = AgentProcess(control_plane, tmp_path_factory.mktemp("chart-agent"), NODES,
                         "chart", "--time-scale", "10")
    agent.start()
    try:
        control_plane.kubectl("label", "node", *agent.names, f"{NODE_LABEL}=true")
        yield agent
    finally:
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig",
             str(control_plane.kubeconfig), "--ignore-not-found", "--wait", check=False)
        agent.stop()
        agent.delete_nodes()
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found",
                              "--wait=false", check=False)


def kubeconfig(cluster: Cluster) -> list[str]:
    return ["--kubeconfig", str(cluster.kubeconfig)]


def node_pods(cluster: Cluster) -> list[JSON]:
    pods: list[JSON] = cluster.kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=node")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def time_scale_of(pod: JSON) -> str:
    args: list[str] = pod["spec"]["containers"][0]["args"]
    return args[args.index("--time-scale") + 1]


def test_install_upgrade_test_uninstall(control_plane: Cluster, nodes: AgentProcess) -> None:
    # install --wait: every object created, the DaemonSet Ready on both nodes
    result = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE,
                  "--create-namespace", *values_args(VALUES), "--wait", "--timeout", WAIT,
                  *kubeconfig(control_plane))
    assert "STATUS: deployed" in result.stdout
    assert f"helm test {RELEASE} -n {NAMESPACE}" in result.stdout, "NOTES name the next step"
    ds = control_plane.kubectl_json("get", "daemonset", "-n", NAMESPACE, f"{RELEASE}-node")
    assert ds["status"]["desiredNumberScheduled"] == NODES
    assert ds["status"]["numberReady"] == NODES
    assert sorted(p["spec"]["nodeName"] for p in node_pods(control_plane)) == nodes.names
    deploy = control_plane.kubectl_json("get", "deployment", "-n", NAMESPACE,
                                        f"{RELEASE}-operator")
    assert deploy["status"]["availableReplicas"] == 1
    crd = control_plane.kubectl_json("get", "crd", "dgxjobs.dgxsim.io")
    assert crd["spec"]["names"]["kind"] == "DGXJob"
    control_plane.kubectl("get", "configmap", "-n", NAMESPACE, "dgxsim-mig-configs")

    # upgrade with a changed value: the DaemonSet rolls to pods with the new args
    assert {time_scale_of(p) for p in node_pods(control_plane)} == {"1"}
    result = helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
                  "--set", "timeScale=20", "--wait", "--timeout", WAIT,
                  *kubeconfig(control_plane))
    assert "REVISION: 2" in result.stdout
    wait_for("node pods rolled to timeScale 20", lambda: (
        len(pods := node_pods(control_plane)) == NODES
        and {time_scale_of(p) for p in pods} == {"20"}
        and all(p["status"].get("phase") == "Running" for p in pods)))

    # helm test: the one-GPU Job runs to completion on a simulated node. The hook deletes
    # the Job once it succeeded, so its pod's devices are read while it runs.
    seen: dict[str, str] = {}
    done = threading.Event()

    def watch_test_pod() -> None:
        while not done.is_set() and not seen:
            listed = control_plane.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
            for pod in listed:
                annotations = pod["metadata"].get("annotations") or {}
                if "test-gpu-job" in pod["metadata"]["name"] and DEVICES in annotations:
                    seen[pod["metadata"]["name"]] = annotations[DEVICES]
            done.wait(0.2)

    watcher = threading.Thread(target=watch_test_pod, daemon=True)
    watcher.start()
    try:
        result = helm("test", RELEASE, "--namespace", NAMESPACE, "--timeout", WAIT,
                      *kubeconfig(control_plane))
    finally:
        done.set()
        watcher.join(timeout=30)
    assert f"TEST SUITE:     {RELEASE}-test-gpu-job" in result.stdout, result.stdout
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    assert len(seen) == 1, seen
    assert next(iter(seen.values())).startswith("nvidia.com/gpu: GPU-"), seen

    # uninstall: everything of the release is gone (the CRD stays, as helm keeps CRDs)
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", WAIT,
         *kubeconfig(control_plane))
    left = control_plane.kubectl(
        "get", "daemonsets,deployments,configmaps,serviceaccounts,roles,rolebindings",
        "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name").stdout
    assert not left.strip(), left
    cluster_left = control_plane.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l",
        f"app.kubernetes.io/instance={RELEASE}", "-o", "name").stdout
    assert not cluster_left.strip(), cluster_left
    wait_for("node pods gone", lambda: not node_pods(control_plane))
    control_plane.kubectl("get", "crd", "dgxjobs.dgxsim.io")
    status = helm("status", RELEASE, "--namespace", NAMESPACE, *kubeconfig(control_plane),
                  check=False)
    assert status.returncode != 0 and "not found" in status.stderr
