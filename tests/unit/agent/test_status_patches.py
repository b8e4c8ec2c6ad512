"""A pod's status patches carry what changes, as the kubelet's do: the scheduler's
``PodScheduled`` and what the running status set stay as they are."""

from __future__ import annotations

from typing import Any

from dgxnode.agent.objects import running_status, terminated_status

JSON = dict[str, Any]
SCHEDULED = {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}


def _pod(conditions: list[JSON]) -> JSON:
    return {"metadata": {"uid": "u1", "name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "main", "image": "pause"}]},
            "status": {"phase": "Pending", "conditions": conditions}}


def _types(patch: JSON) -> list[str]:
    return [c["type"] for c in patch["status"]["conditions"]]


def test_starting_leaves_the_schedulers_condition_alone() -> None:
    patch = running_status(_pod([SCHEDULED]), "2026-01-01T00:00:05Z")
    assert "PodScheduled" not in _types(patch)
    assert patch["status"]["phase"] == "Running" and patch["status"]["podIP"]
    assert {"Ready", "ContainersReady", "Initialized"} <= set(_types(patch))


def test_a_pod_bound_without_the_scheduler_gets_its_scheduled_condition() -> None:
    assert "PodScheduled" in _types(running_status(_pod([]), "2026-01-01T00:00:05Z"))


def test_ending_sends_the_phase_readiness_and_container_states_only() -> None:
    patch = terminated_status(_pod([SCHEDULED]), "2026-01-01T00:00:05Z", 0, "Completed")
    status = patch["status"]
    assert set(status) == {"phase", "conditions", "containerStatuses"}
    assert status["phase"] == "Succeeded"
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "Ready": ("False", "PodCompleted"), "ContainersReady": ("False", "PodCompleted")}
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["startedAt"] == "2026-01-01T00:00:05Z"
    failed = terminated_status(_pod([SCHEDULED]), "2026-01-01T00:00:05Z", 1, "Error")
    assert failed["status"]["phase"] == "Failed"
    assert {c["reason"] for c in failed["status"]["conditions"]} == {"PodFailed"}
