"""Bad input refused at the door, on the real control plane, and nothing running disturbed.

* Pods a node can never run (two MIG devices of one
  profile in a container, workload numbers that are NaN, 1e308 or ``"inf"``, a
  duration of 1e308 s) end Failed with the reason within seconds, on a real
  node agent, while a pod already running there keeps its device and succeeds.
* The DGXJob CRD the operator installs carries the model's bounds, so the API
  server refuses bad jobs (and unknown spec fields, under the strict field
  validation kubectl asks for) naming the field, and a job already placed stays
  as it was; workload parameters, a map of mixed values no schema bounds, are
  refused by the operator before anything is placed.
* A job edited after admission into one the performance model refuses fails
  alone: the operator places the other jobs of the same round.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kube import AgentProcess, Cluster
from operator_proc import (
    OperatorProcess,
    dgxjob,
    fake_node,
    job_pods,
    job_status,
    unique_name,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
PREFIX = "bad"
MIG = "nvidia.com/mig-1g.5gb"


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    """Two nodes: bad-0 with whole GPUs, bad-1 in MIG mode (all-1g.5gb)."""
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("badagent"), 2, PREFIX,
                           "--time-scale", "1")
    process.start()
    try:
        control_plane.kubectl("label", "node", f"{PREFIX}-1", "nvidia.com/mig.config=all-1g.5gb",
                              "--overwrite")
        wait_for("bad-1 in MIG mode", lambda: control_plane.allocatable(f"{PREFIX}-1").get(
            MIG, "0") != "0", timeout_s=60)
        yield process
    finally:
        process.stop()
        process.delete_nodes()


@pytest.fixture(scope="module")
def operator(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, tmp_path_factory.mktemp("badop") / "op.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def pod(name: str, node: str, resources: dict[str, str], **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"restartPolicy": "Never", "nodeName": node,
                     "containers": [{"name": "main", "image": "dgxsim/workload",
                                     "resources": {"limits": resources}}]}}


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "pod", name, "-n", namespace).get("status") or {})


def gemm(**params: Any) -> str:
    return json.dumps({"workload": "gemm", "steps": 10, "params": params}).replace(
        '"NaN"', "NaN")


BAD_PODS = [
    ("two-mig", 1, {MIG: "2"}, {}, "UnexpectedAdmissionError",
     "one MIG device per container and resource"),
    ("param-nan", 0, {"nvidia.com/gpu": "1"}, {"dgxsim.io/workload": gemm(m="NaN")},
     "InvalidWorkload", "m=nan"),
    ("param-1e308", 0, {"nvidia.com/gpu": "1"}, {"dgxsim.io/workload": gemm(m=1e308)},
     "InvalidWorkload", "m=1e+308"),
    ("param-inf", 0, {"nvidia.com/gpu": "1"}, {"dgxsim.io/workload": gemm(m="inf")},
     "InvalidWorkload", "m='inf'"),
    ("duration-1e308", 1, {MIG: "1"}, {"dgxsim.io/duration": "1e308"}, "InvalidWorkload",
     "1e308"),
]


def test_pods_the_node_cannot_run_fail_with_the_reason_and_disturb_nobody(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    running = [pod(f"running-{i}", f"{PREFIX}-{i}", {"nvidia.com/gpu" if i == 0 else MIG: "1"},
                   **{"dgxsim.io/duration": "40s"}) for i in range(2)]
    bad = [pod(name, f"{PREFIX}-{node}", resources, **notes)
           for name, node, resources, notes, _, _ in BAD_PODS]
    for body in running:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))
    for body in running:
        wait_for("a pod running", lambda b=body: status(
            control_plane, namespace, b["metadata"]["name"]).get("phase") == "Running")
    devices = {b["metadata"]["name"]: control_plane.kubectl_json(
        "get", "pod", b["metadata"]["name"], "-n", namespace)["metadata"]["annotations"][
        "dgxsim.io/devices"] for b in running}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": bad}))
    for name, _, _, _, reason, words in BAD_PODS:
        found = wait_for(f"{name} Failed", lambda n=name: (
            s := status(control_plane, namespace, n)).get("phase") == "Failed" and s,
            timeout_s=30)
        assert found["reason"] == reason, name
        assert words in found["message"], (name, found["message"])
    for name, held in devices.items():
        after = control_plane.kubectl_json("get", "pod", name, "-n", namespace)
        assert after["status"]["phase"] in ("Running", "Succeeded")
        assert after["metadata"]["annotations"]["dgxsim.io/devices"] == held
    for body in running:
        wait_for("the running pod succeeds", lambda b=body: status(
            control_plane, namespace, b["metadata"]["name"]).get("phase") == "Succeeded",
            timeout_s=90)


@pytest.fixture
def nodes(control_plane: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """Two fake DGX nodes with a label unique to the test; yields the label's value."""
    tag = unique_name("t", request)
    names = [f"{tag}-{i}" for i in range(2)]
    for name in names:
        fake_node(control_plane, name, {"dgxsim.io/test": tag})
    yield tag
    for name in names:
        control_plane.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")


BAD_JOBS = [
    ({"durationSeconds": 1e308}, "spec.durationSeconds"),
    ({"steps": 9_000_000_000_000_000_000}, "spec.steps"),
    ({"steps": 2_000_000_000}, "spec.steps"),
    ({"replicas": 0}, "spec.replicas"),
    ({"gpusPerReplica": 9}, "spec.gpusPerReplica"),
    ({"gpus": 3}, 'unknown field "spec.gpus"'),
    ({"parameters": {f"p{i}": 1 for i in range(40)}}, "spec.parameters"),
]
UNRUNNABLE_JOBS = [
    ({"m": 1e308}, "InvalidWorkload", "m=1e+308"),
    ({"m": "inf"}, "InvalidWorkload", "m='inf'"),
    ({"m": {"nested": 1}}, "InvalidSpec", "spec.parameters.m"),
    ({"mm": 64}, "InvalidWorkload", "mm is not one of gemm's"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_JOBS, ids=[str(c[0]) for c in BAD_JOBS])
def test_the_api_server_refuses_bad_jobs_naming_the_field(
        control_plane: Cluster, operator: OperatorProcess, nodes: str, namespace: str,
        spec: dict[str, Any], field: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "good", workload="gemm", durationSeconds=30, nodeSelector={"dgxsim.io/test": nodes}))
    wait_for("good job scheduled", lambda: job_status(
        control_plane, namespace, "good").get("phase") == "Scheduled")
    before = job_status(control_plane, namespace, "good")
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "bad", **{"workload": "gemm", **spec}), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert control_plane.kubectl("get", "dgxjob", "bad", "-n", namespace,
                                 check=False).returncode != 0, "nothing was stored"
    assert job_status(control_plane, namespace, "good") == before


@pytest.mark.parametrize(("parameters", "reason", "words"), UNRUNNABLE_JOBS,
                         ids=[str(c[0]) for c in UNRUNNABLE_JOBS])
def test_the_operator_fails_jobs_whose_parameters_the_model_refuses(
        control_plane: Cluster, operator: OperatorProcess, nodes: str, namespace: str,
        parameters: dict[str, Any], reason: str, words: str) -> None:
    """Parameters are a map of mixed values the schema cannot bound; the operator does,
    before anything is placed."""
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "bad", workload="gemm", parameters=parameters, nodeSelector={"dgxsim.io/test": nodes}))
    failed = wait_for("job failed", lambda: (s := job_status(
        control_plane, namespace, "bad")).get("phase") == "Failed" and s, timeout_s=30)
    assert failed["reason"] == reason
    assert words in failed["message"], failed["message"]
    assert job_pods(control_plane, namespace, "bad") == []


def test_a_job_edited_into_one_the_model_refuses_fails_alone(
        control_plane: Cluster, operator: OperatorProcess, nodes: str, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "edited", workload="gemm", steps=10, nodeSelector={"dgxsim.io/test": "nowhere"}))
    wait_for("edited job admitted and waiting", lambda: job_status(
        control_plane, namespace, "edited").get("reason") in ("WaitingForCapacity",
                                                              "Unschedulable"))
    control_plane.kubectl("patch", "dgxjob", "edited", "-n", namespace, "--type=merge", "-p",
                          json.dumps({"spec": {"parameters": {"m": "inf"},
                                               "nodeSelector": {"dgxsim.io/test": nodes}}}))
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=dgxjob(
        "valid", workload="gemm", steps=10, nodeSelector={"dgxsim.io/test": nodes}))
    wait_for("valid job scheduled", lambda: job_status(
        control_plane, namespace, "valid").get("phase") == "Scheduled", timeout_s=30)
    failed = wait_for("edited job failed", lambda: (s := job_status(
        control_plane, namespace, "edited")).get("phase") == "Failed" and s, timeout_s=30)
    assert failed["reason"] == "InvalidWorkload"
    assert "m='inf'" in failed["message"]
    assert job_pods(control_plane, namespace, "edited") == []
