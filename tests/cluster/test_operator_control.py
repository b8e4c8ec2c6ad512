"""The operator on the real control plane with fake nodes: CRD, ConfigMap, validation,
gang placement, restart in the middle of a placement, dynamic partitioning decisions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kube import Cluster
from operator_proc import (
    OperatorProcess,
    dgxjob,
    fake_node,
    job_pods,
    job_status,
    unique_name,
    wait_for,
)

from gpumodel.migparted import parse_mig_parted_config


@pytest.fixture(scope="module")
def operator(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("operator") / "op.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def nodes(control_plane: Cluster, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Three fake DGX nodes with a label unique to the test (jobs select on it)."""
    tag = unique_name("t", request)
    names = [f"{tag}-{i}" for i in range(3)]
    for name in names:
        fake_node(control_plane, name, {"dgxsim.io/test": tag})
    yield names
    for name in names:
        control_plane.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")


def test_crd_and_default_configmap_are_installed(control_plane: Cluster,
                                                 operator: OperatorProcess) -> None:
    crd = control_plane.kubectl_json("get", "crd", "dgxjobs.dgxsim.io")
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Phase", "Workload", "GPUs", "Nodes", "Predicted", "Age"]
    cm = control_plane.kubectl_json("get", "configmap", "dgxsim-mig-configs",
                                    "-n", "dgxsim-system")
    config = parse_mig_parted_config(cm["data"]["config.yaml"])
    assert {"all-disabled", "all-1g.5gb", "all-balanced", "custom-config"} <= set(config.names())


@pytest.mark.parametrize(("spec", "message"), [
    ({"workload": "gemm", "gpusPerReplica": 9}, "should be less than or equal to 8"),
    ({"workload": "gemm", "replicas": -2}, "should be greater than or equal to 1"),
    ({"workload": "gemm", "migProfile": "3g.big"}, "should match"),
    ({"workload": "gemm", "migProfile": "1g.5gb", "gpusPerReplica": 2}, "one MIG device"),
])
def test_the_schema_rejects_bad_jobs(control_plane: Cluster, operator: OperatorProcess,
                                     namespace: str, spec: dict[str, Any],
                                     message: str) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-",
                                   stdin=dgxjob("bad", **spec), check=False)
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize(("spec", "reason", "words"), [
    ({"workload": "no-such-model"}, "UnknownWorkload", "unknown workload 'no-such-model'"),
    ({"workload": "resnet50-inference", "migProfile": "5g.25gb"}, "UnknownMigProfile",
     "no MIG profile '5g.25gb'"),
])
def test_the_operator_fails_jobs_it_cannot_run(control_plane: Cluster,
                                               operator: OperatorProcess, namespace: str,
                                               spec: dict[str, Any], reason: str,
                                               words: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob("bad", **spec))
    status = wait_for("Failed", lambda: (s := job_status(control_plane, namespace, "bad"))
                      .get("phase") == "Failed" and s)
    assert status["reason"] == reason and words in status["message"]
    assert job_pods(control_plane, namespace, "bad") == []


def busy_pod(node: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy"},
                       "spec": {"nodeName": node, "containers": [{
                           "name": "main", "image": "x",
                           "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}})


def test_a_gang_takes_the_two_free_nodes_or_waits(control_plane: Cluster,
                                                  operator: OperatorProcess, namespace: str,
                                                  nodes: list[str]) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=busy_pod(nodes[1]))
    tag = control_plane.kubectl_json("get", "node", nodes[0])["metadata"]["labels"][
        "dgxsim.io/test"]
    job = {"workload": "resnet50-train", "replicas": 2, "gpusPerReplica": 8,
           "nodeSelector": {"dgxsim.io/test": tag}}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob("first", **job))
    status = wait_for("first placed", lambda: (s := job_status(
        control_plane, namespace, "first")).get("phase") == "Scheduled" and s)
    pods = job_pods(control_plane, namespace, "first")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted([nodes[0], nodes[2]])
    assert all(p["spec"]["schedulerName"] == "dgxsim-scheduler" for p in pods)
    assert set(status["nodes"].split(",")) == {nodes[0], nodes[2]}
    assert float(status["predictedSeconds"]) > 0
    # A second gang finds one free node at most: it waits with no pod bound anywhere.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob("second", **job))
    wait_for("second admitted", lambda: job_status(control_plane, namespace, "second").get(
        "gpus"))
    control_plane.kubectl("delete", "pod", "busy", "-n", namespace, "--wait=false",
                          "--grace-period=0", "--force")
    # Now one node is free: still not enough for two replicas of 8 GPUs.
    waiting = wait_for("second waits", lambda: (s := job_status(
        control_plane, namespace, "second")).get("reason") == "WaitingForCapacity" and s)
    assert waiting["phase"] == "Pending"
    assert job_pods(control_plane, namespace, "second") == []


def test_a_restart_in_the_middle_of_a_placement_finishes_it_once(
        control_plane: Cluster, operator: OperatorProcess, namespace: str,
        nodes: list[str]) -> None:
    operator.stop(crash=True)
    try:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
            "resumed", workload="gemm", replicas=2, gpusPerReplica=8))
        job = control_plane.kubectl_json("get", "dgxjob", "resumed", "-n", namespace)
        # What a crash after recording the placement and binding replica 0 leaves behind.
        placement = [{"replica": 0, "node": nodes[2], "pod": "resumed-r0"},
                     {"replica": 1, "node": nodes[0], "pod": "resumed-r1"}]
        control_plane.kubectl("patch", "dgxjob", "resumed", "-n", namespace,
                              "--subresource=status", "--type=merge", "-p", json.dumps({
                                  "status": {"phase": "Placing", "gpus": "2x8",
                                             "placement": placement,
                                             "predictedSeconds": 30.0}}))
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "resumed-r0", "labels": {"dgxsim.io/job": "resumed"},
                         "ownerReferences": [{"apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
                                              "name": "resumed",
                                              "uid": job["metadata"]["uid"]}]},
            "spec": {"schedulerName": "dgxsim-scheduler", "nodeName": nodes[2],
                     "containers": [{"name": "main", "image": "x", "resources": {
                         "limits": {"nvidia.com/gpu": "8"}}}]}}))
    finally:
        operator.start()
    wait_for("placement resumed", lambda: job_status(control_plane, namespace, "resumed").get(
        "phase") == "Scheduled")
    pods = job_pods(control_plane, namespace, "resumed")
    assert sorted((p["metadata"]["name"], p["spec"]["nodeName"]) for p in pods) == [
        ("resumed-r0", nodes[2]), ("resumed-r1", nodes[0])]


def test_a_crash_right_after_a_job_arrives_never_places_it_twice(
        control_plane: Cluster, operator: OperatorProcess, namespace: str,
        nodes: list[str]) -> None:
    tag = control_plane.kubectl_json("get", "node", nodes[0])["metadata"]["labels"][
        "dgxsim.io/test"]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "crashy", workload="gemm", replicas=3, gpusPerReplica=4,
        nodeSelector={"dgxsim.io/test": tag}))
    wait_for("placement started", lambda: job_status(control_plane, namespace, "crashy").get(
        "phase") in ("Placing", "Scheduled"), timeout_s=60)
    operator.stop(crash=True)
    operator.start()
    wait_for("placed", lambda: job_status(control_plane, namespace, "crashy").get(
        "phase") == "Scheduled")
    pods = job_pods(control_plane, namespace, "crashy")
    assert sorted(p["metadata"]["name"] for p in pods) == ["crashy-r0", "crashy-r1", "crashy-r2"]
    placed = {r["pod"]: r["node"] for r in job_status(control_plane, namespace,
                                                      "crashy")["placement"]}
    assert {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods} == placed
    per_node: dict[str, int] = {}
    for node in placed.values():
        per_node[node] = per_node.get(node, 0) + 4
    assert all(n <= 8 for n in per_node.values())


def test_a_dynamic_node_gets_a_config_that_fits_pending_pods_on_the_fewest_gpus(
        control_plane: Cluster, operator: OperatorProcess, namespace: str) -> None:
    node = "op-dynamic-0"
    # The node turns dynamic only once kube-scheduler has found every pod
    # unschedulable, so the operator's first decision sees the whole demand
    # however slowly a loaded machine schedules.
    fake_node(control_plane, node)
    try:
        pods = []
        for i in range(16):
            profile = "1g.5gb" if i < 14 else "3g.20gb"
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"inf-{i}", "namespace": namespace},
                         "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                  "containers": [{"name": "main", "image": "x", "resources": {
                                      "limits": {f"nvidia.com/mig-{profile}": "1"}}}]}})
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": pods}))

        def unschedulable() -> bool:
            items = control_plane.kubectl_json("get", "pods", "-n", namespace)["items"]
            return sum(any(c["type"] == "PodScheduled" and c["status"] == "False"
                           for c in (p.get("status") or {}).get("conditions", []))
                       for p in items if p["metadata"]["name"].startswith("inf-")) == 16

        wait_for("16 unschedulable pods", unschedulable)
        control_plane.kubectl("label", "node", node, "dgxsim.io/mig-policy=dynamic")
        name = wait_for("mig.config label", lambda: control_plane.kubectl_json(
            "get", "node", node)["metadata"]["labels"].get("nvidia.com/mig.config"))
        assert name.startswith(f"dgxsim-dynamic-{node}-")
        cm = control_plane.kubectl_json("get", "configmap", "dgxsim-mig-configs",
                                        "-n", "dgxsim-system")
        entries = yaml.safe_load(cm["data"]["config.yaml"])["mig-configs"][name]
        assert sorted(json.dumps(e["mig-devices"], sort_keys=True) for e in entries) == sorted(
            [json.dumps({"3g.20gb": 2}), json.dumps({"1g.5gb": 7}),
             json.dumps({"1g.5gb": 7})])
        assert all(e["mig-enabled"] for e in entries) and len(entries) == 3
        events = control_plane.kubectl_json("get", "events", "-n", "default", "--field-selector",
                                            f"involvedObject.name={node}")["items"]
        assert any(e["reason"] == "MigLayoutDecided" and name in e["message"] for e in events)
    finally:
        control_plane.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false")
