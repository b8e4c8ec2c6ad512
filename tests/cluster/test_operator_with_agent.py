"""The operator with the node agent on the real control plane: NVIDIA's label protocol end
to end, a relabel blocked by a running pod, dynamic partitioning across an operator
restart, and gang placement of a DGXJob that runs to completion."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kube import AgentProcess, Cluster
from operator_proc import OperatorProcess, dgxjob, job_pods, job_status, wait_for

PREFIX = "opa"
TAG = {"dgxsim.io/test": "operator-with-agent"}


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("opagent"), 3, PREFIX,
                           "--time-scale", "1")
    process.start()
    try:
        for name in process.names:
            control_plane.kubectl("label", "node", name, "dgxsim.io/test=operator-with-agent")
        yield process
    finally:
        process.stop()
        process.delete_nodes()


@pytest.fixture(scope="module")
def operator(control_plane: Cluster, agent: AgentProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("opop") / "op.log",
                              ("DGXSIM_OPERATOR_PLACEMENT__MAX_REQUEUES", "10"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def pod(name: str, node: str, resource: str, duration: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"dgxsim.io/duration": duration}},
            "spec": {"restartPolicy": "Never",
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": "main", "image": "dgxsim/workload",
                                     "resources": {"limits": {resource: "1"}}}]}}


def apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def phase(cluster: Cluster, namespace: str, name: str) -> str:
    return str(cluster.kubectl_json("get", "pod", name, "-n", namespace)["status"].get("phase"))


def test_a_gang_runs_on_the_two_free_nodes_and_completes(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    busy = agent.names[2]
    apply(control_plane, namespace, pod("busy", busy, "nvidia.com/gpu", "45s")
          | {"spec": {**pod("busy", busy, "nvidia.com/gpu", "45s")["spec"], "containers": [{
              "name": "main", "image": "dgxsim/workload",
              "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}})
    wait_for("busy pod running", lambda: phase(control_plane, namespace, "busy") == "Running")
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "train", workload="resnet50-train", replicas=2, gpusPerReplica=8, steps=20,
        durationSeconds=3, nodeSelector=TAG))
    wait_for("job succeeded", lambda: job_status(control_plane, namespace, "train").get(
        "phase") == "Succeeded")
    pods = job_pods(control_plane, namespace, "train")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(agent.names[:2])
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    status = job_status(control_plane, namespace, "train")
    assert status["succeeded"] == 2 and status["predictedSeconds"] == 3.0
    control_plane.kubectl("delete", "pod", "busy", "-n", namespace, "--wait=true")


def test_a_replica_the_node_refuses_sends_the_gang_back_and_it_runs_later(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    """The node's allocatable lags behind a GPU fault: the operator places an 8-GPU replica
    there, the node refuses it at admission, the job goes back to Pending and runs once the
    GPU is healthy again."""
    import subprocess
    import sys

    node = agent.names[2]
    fault = [sys.executable, "-m", "dgxsim", "fault"]
    where = ["--state-dir", str(agent.state_dir), "--node", node, "--gpu", "3"]
    subprocess.run([*fault, "inject", *where, "--xid", "79"], check=True, capture_output=True)
    try:
        wait_for("7 GPUs", lambda: control_plane.allocatable(node)["nvidia.com/gpu"] == "7")
        with agent.paused():
            control_plane.kubectl("patch", "node", node, "--subresource=status",
                                  "--type=merge", "-p", json.dumps({"status": {
                                      "allocatable": {"nvidia.com/gpu": "8"}}}))
            control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
                "eight", workload="resnet50-train", replicas=1, gpusPerReplica=8, steps=20,
                durationSeconds=2, nodeSelector={"kubernetes.io/hostname": node}))
            wait_for("placed on the node", lambda: job_status(
                control_plane, namespace, "eight").get("phase") == "Scheduled")
        wait_for("requeued", lambda: job_status(control_plane, namespace, "eight").get(
            "requeues", 0) >= 1)
    finally:
        subprocess.run([*fault, "clear", *where], check=True, capture_output=True)
    wait_for("job succeeded", lambda: job_status(control_plane, namespace, "eight").get(
        "phase") == "Succeeded")
    events = control_plane.kubectl_json("get", "events", "-n", namespace, "--field-selector",
                                        "involvedObject.name=eight")["items"]
    refused = [e["message"] for e in events if e["reason"] == "AdmissionRefused"]
    assert refused and f"was refused by node {node}" in refused[0]
    (pod_,) = job_pods(control_plane, namespace, "eight")
    assert pod_["status"]["phase"] == "Succeeded" and pod_["spec"]["nodeName"] == node
    wait_for("8 GPUs", lambda: control_plane.allocatable(node)["nvidia.com/gpu"] == "8")


def test_a_gang_that_loses_a_replica_fails_and_stops_the_others(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    node = agent.names[2]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "pair", workload="resnet50-train", replicas=2, gpusPerReplica=1, steps=20,
        durationSeconds=600, nodeSelector={"kubernetes.io/hostname": node}))
    wait_for("running", lambda: job_status(control_plane, namespace, "pair").get(
        "phase") == "Running")
    control_plane.kubectl("delete", "pod", "pair-r0", "-n", namespace, "--wait=false")
    wait_for("failed", lambda: job_status(control_plane, namespace, "pair").get(
        "phase") == "Failed")
    assert job_status(control_plane, namespace, "pair")["reason"] == "ReplicaDeleted"
    wait_for("the other replica gone", lambda: not job_pods(control_plane, namespace, "pair"))
    wait_for("GPUs back", lambda: control_plane.allocatable(node)["nvidia.com/gpu"] == "8"
             and not control_plane.held(node))


def test_a_named_config_reaches_success_with_56_instances(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess) -> None:
    node = agent.names[0]
    control_plane.kubectl("label", "node", node, "nvidia.com/mig.config=all-1g.5gb",
                          "--overwrite")
    wait_for("success", lambda: control_plane.labels(node).get(
        "nvidia.com/mig.config.state") == "success")
    wait_for("56 slices", lambda: control_plane.allocatable(node).get(
        "nvidia.com/mig-1g.5gb") == "56")


def test_a_relabel_blocked_by_a_running_pod_fails_and_later_succeeds(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    node = agent.names[0]
    wait_for("all-1g.5gb applied", lambda: control_plane.allocatable(node).get(
        "nvidia.com/mig-1g.5gb") == "56")
    apply(control_plane, namespace, pod("holder", node, "nvidia.com/mig-1g.5gb", "8s"))
    wait_for("holder running", lambda: phase(control_plane, namespace, "holder") == "Running")
    control_plane.kubectl("label", "node", node, "nvidia.com/mig.config=all-7g.40gb",
                          "--overwrite")
    wait_for("failed", lambda: control_plane.labels(node).get(
        "nvidia.com/mig.config.state") == "failed")

    def operator_event() -> dict[str, Any] | None:
        events = control_plane.kubectl_json("get", "events", "-n", "default",
                                            "--field-selector",
                                            f"involvedObject.name={node}")["items"]
        return next((e for e in events if e["reason"] == "MigReconfigurationFailed"
                     and "all-7g.40gb" in e["message"]), None)

    event = wait_for("operator event", operator_event)
    assert f"{namespace}/holder" in event["message"]
    assert event["source"]["component"] == "dgxsim-operator"
    assert control_plane.inventory(node).resources().get("nvidia.com/mig-1g.5gb") == 56
    wait_for("holder done", lambda: phase(control_plane, namespace, "holder") == "Succeeded")
    control_plane.kubectl("label", "node", node, "nvidia.com/mig.config=all-3g.20gb",
                          "--overwrite")
    wait_for("success", lambda: control_plane.labels(node).get(
        "nvidia.com/mig.config.state") == "success" and control_plane.labels(node).get(
        "nvidia.com/mig.config") == "all-3g.20gb")
    wait_for("16 slices", lambda: control_plane.allocatable(node).get(
        "nvidia.com/mig-3g.20gb") == "16")


class HeldWatcher:
    """Polls a node's inventory; records any held device that vanished while held."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.cluster, self.node = cluster, node
        self.violations: list[str] = []
        self.snapshots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HeldWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        held: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                inv = self.cluster.inventory(self.node)
            except (AssertionError, KeyError, ValueError):
                continue
            self.snapshots += 1
            try:
                holders = self.cluster.held(self.node, inv)
            except (AssertionError, KeyError, ValueError):
                continue
            present = {d.id for d in inv.devices}
            for device, owner in held.items():
                if device not in present:
                    self.violations.append(f"{device} vanished while held by {owner}")
            held = {d: o for d, o in holders.items() if d in present}
            self._stop.wait(0.2)


def test_dynamic_partitioning_runs_pending_pods_on_the_fewest_gpus_across_a_restart(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    node = agent.names[1]
    assert not any(g.mig_mode == "Enabled" for g in control_plane.inventory(node).gpus)
    with HeldWatcher(control_plane, node) as watcher:
        control_plane.kubectl("label", "node", node, "dgxsim.io/mig-policy=dynamic")
        pods = [pod(f"small-{i}", node, "nvidia.com/mig-1g.5gb", "40s") for i in range(14)]
        pods += [pod(f"large-{i}", node, "nvidia.com/mig-3g.20gb", "40s") for i in range(2)]
        apply(control_plane, namespace, *pods)
        config = wait_for("dynamic config", lambda: control_plane.labels(node).get(
            "nvidia.com/mig.config"))
        operator.stop(crash=True)  # in the middle of the reconfiguration
        operator.start()
        for item in pods:
            name = item["metadata"]["name"]
            wait_for(f"{name} running", lambda n=name: phase(control_plane, namespace,
                                                              n) == "Running")
    assert watcher.snapshots > 0 and watcher.violations == []
    inventory = control_plane.inventory(node)
    held = control_plane.held(node, inventory)
    assert len(held) == 16, "16 instances held"
    held_gpus = {d.gpu_index for d in inventory.devices if d.id in held}
    assert len(held_gpus) == 3, "16 instances fit on three GPUs"
    events = control_plane.kubectl_json("get", "events", "-n", "default", "--field-selector",
                                        f"involvedObject.name={node}")["items"]
    decided = [e["message"].split(":", 1)[0] for e in events
               if e["reason"] == "MigLayoutDecided"]
    assert config in decided
    assert len(decided) == len(set(decided)), "the restart decided no layout twice"
    # Events carry second-resolution times and generated names, so a list does
    # not order two decisions of one second; the label must be one of them.
    assert control_plane.labels(node)["nvidia.com/mig.config"] in decided


def test_show_draws_every_node_with_its_slices(control_plane: Cluster, agent: AgentProcess,
                                               tmp_path: Any) -> None:
    import subprocess
    import sys

    png = tmp_path / "nodes.png"
    result = subprocess.run([sys.executable, "-m", "dgxsim", "show", "--kubeconfig",
                             str(control_plane.kubeconfig), "--png", str(png)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    heads = [line for line in result.stdout.splitlines() if line.startswith(PREFIX)]
    assert [h.split()[0] for h in heads] == agent.names
    assert "3g.20gb" in result.stdout and png.read_bytes()[:4] == b"\x89PNG"
