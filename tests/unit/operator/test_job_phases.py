"""A placed DGXJob's phase from its pods, and replicas a node refused at admission."""

from __future__ import annotations

from typing import Any

from migoperator.apply.jobs import admission_refusal, phase_from_pods

JSON = dict[str, Any]


def job(replicas: int = 2) -> JSON:
    return {"metadata": {"name": "bert", "namespace": "ml"},
            "spec": {"workload": "bert-large-pretrain", "replicas": replicas,
                     "gpusPerReplica": 8},
            "status": {"phase": "Scheduled", "placement": [
                {"replica": i, "node": f"dgx-{i}", "pod": f"bert-r{i}"}
                for i in range(replicas)]}}


def pod(name: str, phase: str, reason: str | None = None, message: str | None = None
        ) -> JSON:
    status: JSON = {"phase": phase}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {"metadata": {"name": name, "namespace": "ml"}, "status": status}


def test_a_replica_refused_for_its_devices_is_an_admission_refusal() -> None:
    pods = [pod("bert-r0", "Running"),
            pod("bert-r1", "Failed", "UnexpectedAdmissionError",
                "Allocate failed: requested 8 nvidia.com/gpu, 7 free")]
    assert admission_refusal(job(), pods) == (
        "pod bert-r1 was refused by node dgx-1: Allocate failed: requested 8 "
        "nvidia.com/gpu, 7 free")


def test_out_of_a_resource_is_an_admission_refusal_too() -> None:
    pods = [pod("bert-r0", "Failed", "OutOfnvidia.com/gpu"), pod("bert-r1", "Pending")]
    assert admission_refusal(job(), pods) == (
        "pod bert-r0 was refused by node dgx-0: OutOfnvidia.com/gpu")


def test_a_replica_that_ran_and_failed_is_not_a_refusal() -> None:
    pods = [pod("bert-r0", "Failed", "Error", "exit code 1"), pod("bert-r1", "Running")]
    assert admission_refusal(job(), pods) is None
    patch = phase_from_pods(job(), pods)
    assert (patch["phase"], patch["reason"]) == ("Failed", "ReplicaFailed")
    assert patch["message"] == "pod bert-r0: exit code 1"


def test_a_pinned_dra_replica_whose_claims_the_scheduler_cannot_allocate_is_refused() -> None:
    stuck = pod("bert-r1", "Pending")
    message = "0/9 nodes are available: 1 cannot allocate all claims, 8 node(s) didn't match"
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                      "reason": "Unschedulable", "message": message}]
    pods = [pod("bert-r0", "Running"), stuck]
    assert admission_refusal(job(), pods) == (
        f"pod bert-r1 cannot get its devices on node dgx-1: {message}")
    stuck["status"]["conditions"][0]["message"] = "0/9 nodes are available: 9 Insufficient cpu"
    assert admission_refusal(job(), pods) is None


def test_pods_outside_the_placement_are_ignored() -> None:
    pods = [pod("other-r0", "Failed", "UnexpectedAdmissionError"), pod("bert-r0", "Running"),
            pod("bert-r1", "Running")]
    assert admission_refusal(job(), pods) is None


def test_all_running_then_all_succeeded() -> None:
    running = phase_from_pods(job(), [pod("bert-r0", "Running"), pod("bert-r1", "Running")])
    assert running["phase"] == "Running"
    done = phase_from_pods(job(), [pod("bert-r0", "Succeeded"), pod("bert-r1", "Succeeded")])
    assert (done["phase"], done["succeeded"]) == ("Succeeded", 2)


def test_a_missing_replica_fails_the_job() -> None:
    patch = phase_from_pods(job(), [pod("bert-r0", "Running")])
    assert (patch["phase"], patch["reason"]) == ("Failed", "ReplicaDeleted")
    assert patch["message"] == "pod bert-r1: was deleted"
