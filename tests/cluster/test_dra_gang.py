"""DGXJob gangs on DRA nodes: replicas claim whole GPUs through the job's ResourceClaimTemplate,
kube-scheduler allocates each claim on the node the operator pinned the replica to, and a
gang that cannot fit starts nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import AgentProcess, Cluster
from operator_proc import OperatorProcess, dgxjob, job_pods, job_status, wait_for

PREFIX = "drag"
TAG = {"dgxsim.io/test": "dra-gang"}
TIMEOUT_S = 180.0
EXAMPLE = Path(__file__).parents[2] / "examples" / "jobs" / "train-dra-gang.yaml"


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("dra-gang"), 2, PREFIX,
                           "--time-scale", "1", "--dra", "static")
    process.start()
    try:
        for name in process.names:
            control_plane.kubectl("label", "node", name, "dgxsim.io/test=dra-gang")
        yield process
    finally:
        process.stop()
        process.delete_nodes()


@pytest.fixture(scope="module")
def operator(control_plane: Cluster, agent: AgentProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("dra-gang-op") / "op.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def claims_of(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> list[dict[str, Any]]:
    names = [s["resourceClaimName"] for s in pod["status"].get("resourceClaimStatuses") or []]
    return [cluster.kubectl_json("get", "resourceclaim", n, "-n", namespace) for n in names]


def test_a_two_replica_gang_claiming_whole_gpus_runs_on_two_static_dra_nodes(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    """The example as written, on this test's nodes and for 20 simulated seconds."""
    job = yaml.safe_load(EXAMPLE.read_text())
    job["spec"] |= {"nodeSelector": TAG, "durationSeconds": 20}
    name = job["metadata"]["name"]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(job))
    wait_for("job running", lambda: job_status(control_plane, namespace, name).get(
        "phase") in ("Running", "Succeeded"), TIMEOUT_S)
    template = control_plane.kubectl_json("get", "resourceclaimtemplate", name, "-n",
                                          namespace)
    request = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert (request["deviceClassName"], request["count"]) == ("gpu.nvidia.com", 8)
    pods = job_pods(control_plane, namespace, name)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(agent.names)
    for pod in pods:
        assert pod["spec"]["schedulerName"] == "default-scheduler"
        (claim,) = claims_of(control_plane, namespace, pod)
        results = claim["status"]["allocation"]["devices"]["results"]
        assert len(results) == 8
        assert {(r["driver"], r["pool"]) for r in results} == {
            ("gpu.nvidia.com", pod["spec"]["nodeName"])}
        visible = pod["metadata"]["annotations"]["dgxsim.io/env.main.NVIDIA_VISIBLE_DEVICES"]
        assert len(set(visible.split(","))) == 8
    wait_for("job succeeded", lambda: job_status(control_plane, namespace, name).get(
        "phase") == "Succeeded", TIMEOUT_S)
    pods = job_pods(control_plane, namespace, name)
    assert [p["status"]["phase"] for p in pods] == ["Succeeded", "Succeeded"]
    assert job_status(control_plane, namespace, name)["succeeded"] == 2
    wait_for("devices released", lambda: not any(agent.allocations(n) for n in agent.names),
             TIMEOUT_S)


def test_a_gang_that_cannot_fit_stays_pending_and_starts_nothing(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "huge", workload="resnet50-train", replicas=3, gpusPerReplica=8, steps=20,
        durationSeconds=5, allocation="DRA", nodeSelector=TAG))
    wanted = "needs 3 replica(s) of 8 gpu.nvidia.com; free nodes hold 2"
    status = wait_for("the operator's reason", lambda: (
        s if wanted in str((s := job_status(control_plane, namespace, "huge")).get("message"))
        else None), TIMEOUT_S)
    assert status["phase"] == "Pending" and status.get("reason") == "WaitingForCapacity"
    # Another placement round (retry delay 1 s) comes to the same answer, still with nothing.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "fits", workload="resnet50-train", replicas=1, gpusPerReplica=8, steps=20,
        durationSeconds=2, allocation="DRA", nodeSelector=TAG))
    wait_for("the job that fits succeeded", lambda: job_status(
        control_plane, namespace, "fits").get("phase") == "Succeeded", TIMEOUT_S)
    assert job_status(control_plane, namespace, "huge")["phase"] == "Pending"
    assert job_pods(control_plane, namespace, "huge") == []
    claims = control_plane.kubectl_json("get", "resourceclaims", "-n", namespace)["items"]
    assert not [c for c in claims if c["metadata"]["name"].startswith("huge")]


def test_a_template_of_the_jobs_name_that_someone_else_wrote_fails_the_job(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "mine"},
        "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": {
            "deviceClassName": "gpu.nvidia.com", "count": 1}}]}}}}))
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "mine", workload="resnet50-train", replicas=1, gpusPerReplica=2, steps=20,
        durationSeconds=2, allocation="DRA", nodeSelector=TAG))
    status = wait_for("the job failed", lambda: (
        s if (s := job_status(control_plane, namespace, "mine")).get("phase") == "Failed"
        else None), TIMEOUT_S)
    assert status["reason"] == "ClaimTemplateTaken"
    assert f"ResourceClaimTemplate {namespace}/mine exists and is not this job's" in status[
        "message"]
    assert job_pods(control_plane, namespace, "mine") == []


def blocker(node: str) -> list[dict[str, Any]]:
    """A pod holding all eight GPUs of ``node`` through a claim of its own."""
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
             "metadata": {"name": "all-eight"},
             "spec": {"devices": {"requests": [{"name": "gpus", "exactly": {
                 "deviceClassName": "gpu.nvidia.com", "count": 8}}]}}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "blocker", "annotations": {"dgxsim.io/duration": "600s"}},
           "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                    "containers": [{"name": "main", "image": "dgxsim/workload",
                                    "resources": {"claims": [{"name": "gpus"}]}}],
                    "resourceClaims": [{"name": "gpus", "resourceClaimName": "all-eight"}]}}
    return [claim, pod]


def test_a_replica_whose_claim_cannot_be_allocated_sends_the_whole_gang_back(
        control_plane: Cluster, agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    """A placement recorded while the devices were free (the operator stopped right after
    writing it) meets a node whose GPUs another claim took meanwhile: kube-scheduler cannot
    allocate that replica's claim, so the operator deletes every replica and the job waits
    (all or none); it runs once the devices are free."""
    taken, free = agent.names
    operator.stop()
    try:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": blocker(taken)}))
        wait_for("the blocker running", lambda: control_plane.kubectl_json(
            "get", "pod", "blocker", "-n", namespace)["status"].get("phase") == "Running",
            TIMEOUT_S)
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
            "raced", workload="resnet50-train", replicas=2, gpusPerReplica=8, steps=20,
            durationSeconds=3, allocation="DRA", nodeSelector=TAG))
        placement = [{"replica": 0, "node": free, "pod": "raced-r0"},
                     {"replica": 1, "node": taken, "pod": "raced-r1"}]
        control_plane.kubectl("patch", "dgxjob", "raced", "-n", namespace,
                              "--subresource=status", "--type=merge", "-p", json.dumps(
                                  {"status": {"phase": "Placing", "gpus": "2x8",
                                              "placement": placement,
                                              "predictedSeconds": 3.0}}))
    finally:
        operator.start()
    status = wait_for("the gang sent back", lambda: (
        s if (s := job_status(control_plane, namespace, "raced")).get("requeues") else None),
        TIMEOUT_S)
    assert status["phase"] == "Pending" and status["reason"] == "AdmissionRefused"

    def refusals() -> list[str]:
        events = control_plane.kubectl_json("get", "events", "-n", namespace,
                                            "--field-selector", "involvedObject.name=raced")
        return [e["message"] for e in events["items"] if e["reason"] == "AdmissionRefused"]

    (refused,) = wait_for("the refusal's event", refusals, TIMEOUT_S)
    assert f"pod raced-r1 cannot get its devices on node {taken}" in refused
    assert "cannot allocate all claims" in refused
    wait_for("no replica left", lambda: job_pods(control_plane, namespace, "raced") == [],
             TIMEOUT_S)
    wait_for("the operator's reason", lambda: "free nodes hold 1" in str(
        job_status(control_plane, namespace, "raced").get("message")), TIMEOUT_S)
    assert job_pods(control_plane, namespace, "raced") == []
    control_plane.kubectl("delete", "pod", "blocker", "-n", namespace, "--wait=true")
    wait_for("the gang succeeded", lambda: job_status(
        control_plane, namespace, "raced").get("phase") == "Succeeded", TIMEOUT_S)


@pytest.fixture(scope="module")
def dynamic_agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("dra-gang-dyn"), 1, "dragd",
                           "--time-scale", "1", "--dra", "dynamic")
    process.start()
    try:
        control_plane.kubectl("label", "node", process.names[0],
                              "dgxsim.io/test=dra-gang-dynamic")
        yield process
    finally:
        process.stop()
        process.delete_nodes()


def test_a_mig_gang_fills_a_dynamic_node_and_a_whole_gpu_waits_for_it(
        control_plane: Cluster, dynamic_agent: AgentProcess, operator: OperatorProcess,
        namespace: str) -> None:
    """Sixteen 3g.20gb replicas take both 3g slots of all eight GPUs; no GPU is whole then,
    so a one-GPU job waits with the operator's reason and runs once the slices are gone."""
    node, tag = dynamic_agent.names[0], {"dgxsim.io/test": "dra-gang-dynamic"}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "slices", workload="resnet50-train", replicas=16, migProfile="3g.20gb", steps=20,
        durationSeconds=60, allocation="DRA", nodeSelector=tag))
    wait_for("the MIG gang running", lambda: job_status(control_plane, namespace, "slices").get(
        "phase") in ("Running", "Succeeded"), TIMEOUT_S)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "whole", workload="resnet50-train", replicas=1, gpusPerReplica=1, steps=20,
        durationSeconds=2, allocation="DRA", nodeSelector=tag))
    devices = []
    for pod in job_pods(control_plane, namespace, "slices"):
        assert pod["spec"]["nodeName"] == node
        (claim,) = claims_of(control_plane, namespace, pod)
        devices += [r["device"] for r in claim["status"]["allocation"]["devices"]["results"]]
    assert len(set(devices)) == 16 and all("-mig-3g20gb-" in d for d in devices)
    wait_for("the one-GPU job's reason", lambda: "no node has 1 free gpu.nvidia.com" in str(
        job_status(control_plane, namespace, "whole").get("message")), TIMEOUT_S)
    assert job_status(control_plane, namespace, "slices")["phase"] == "Running"
    assert job_pods(control_plane, namespace, "whole") == []
    wait_for("the MIG gang succeeded", lambda: job_status(
        control_plane, namespace, "slices").get("phase") == "Succeeded", TIMEOUT_S)
    wait_for("the one-GPU job succeeded", lambda: job_status(
        control_plane, namespace, "whole").get("phase") == "Succeeded", TIMEOUT_S)
