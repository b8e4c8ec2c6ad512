"""Every pod the node cannot run ends Failed with the reason, at once, and disturbs nobody.

Table-driven over the classes of bad pods a user can write: device requests the
node can never satisfy (two MIG devices of one profile
in one container, a count that is not a whole number) and ``dgxsim.io/*``
annotations whose numbers are not finite or not sane (``NaN``, ``1e308``,
``"inf"``, a 20-digit hour count, a negative shutdown). Each case runs beside a
pod that already holds a GPU: the bad pod is Failed with the kubelet's reason
and a message naming the problem, gets an event, holds nothing, and the running
pod keeps its device and runs to completion.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_fakes import JSON, eventually, pod

from dgxnode.prediction import predictor_for
from gpumodel.vocabulary import (
    DURATION_ANNOTATION,
    GPU_RESOURCE,
    SHUTDOWN_ANNOTATION,
    WORKLOAD_ANNOTATION,
    mig_resource,
)

ADMISSION = "UnexpectedAdmissionError"
INVALID = "InvalidWorkload"


def asking(name: str, resources: dict[str, str]) -> JSON:
    bad = pod(name)
    bad["spec"]["containers"][0]["resources"] = {"limits": resources}
    return bad


def annotated(name: str, **annotations: str) -> JSON:
    return pod(name, annotations=annotations)


def workload(**spec: Any) -> str:
    return json.dumps({"workload": "gemm", "steps": 10, **spec}).replace('"NaN"', "NaN")


CASES = [
    ("two-mig-devices", asking("bad", {mig_resource("1g.5gb"): "2"}), ADMISSION,
     [mig_resource("1g.5gb"), "one MIG device per container and resource"]),
    ("fractional-count", asking("bad", {GPU_RESOURCE: "500m"}), ADMISSION,
     [f"{GPU_RESOURCE}: 500m", "whole number"]),
    ("param-nan", annotated("bad", **{WORKLOAD_ANNOTATION: workload(params={"m": "NaN"})}),
     INVALID, [WORKLOAD_ANNOTATION, "m=nan", "finite"]),
    ("param-1e308", annotated("bad", **{WORKLOAD_ANNOTATION: workload(params={"m": 1e308})}),
     INVALID, [WORKLOAD_ANNOTATION, "m=1e+308", "finite"]),
    ("param-inf-text", annotated("bad", **{WORKLOAD_ANNOTATION: workload(params={"m": "inf"})}),
     INVALID, [WORKLOAD_ANNOTATION, "m='inf'", "finite"]),
    ("param-unknown", annotated("bad", **{WORKLOAD_ANNOTATION: workload(params={"mm": 64})}),
     INVALID, [WORKLOAD_ANNOTATION, "mm", "not one of gemm's"]),
    ("steps-nan", annotated("bad", **{WORKLOAD_ANNOTATION: workload(steps="NaN")}),
     INVALID, [WORKLOAD_ANNOTATION, "steps"]),
    ("batch-huge", annotated("bad", **{WORKLOAD_ANNOTATION: workload(batch=2**40)}),
     INVALID, [WORKLOAD_ANNOTATION, "batch", "1048576"]),
    ("duration-1e308", annotated("bad", **{DURATION_ANNOTATION: "1e308"}),
     INVALID, [DURATION_ANNOTATION, "1e308", "a year"]),
    ("duration-20-digit-hours", annotated("bad", **{DURATION_ANNOTATION:
                                                    "99999999999999999999h"}),
     INVALID, [DURATION_ANNOTATION, "99999999999999999999h"]),
    ("duration-nan", annotated("bad", **{DURATION_ANNOTATION: "nan"}),
     INVALID, [DURATION_ANNOTATION, "'nan'"]),
    ("shutdown-inf", annotated("bad", **{DURATION_ANNOTATION: "90s",
                                         SHUTDOWN_ANNOTATION: "inf"}),
     INVALID, [SHUTDOWN_ANNOTATION, "'inf'", "finite"]),
    ("shutdown-negative", annotated("bad", **{DURATION_ANNOTATION: "90s",
                                              SHUTDOWN_ANNOTATION: "-5"}),
     INVALID, [SHUTDOWN_ANNOTATION, "'-5'"]),
    ("shutdown-text", annotated("bad", **{DURATION_ANNOTATION: "90s",
                                          SHUTDOWN_ANNOTATION: "soon"}),
     INVALID, [SHUTDOWN_ANNOTATION, "'soon'", "not a number"]),
]


@pytest.mark.parametrize(("bad", "reason", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_a_pod_the_node_cannot_run_fails_with_the_reason_and_disturbs_nobody(
        setup: Any, bad: JSON, reason: str, words: list[str]) -> None:
    controller, kube, clock, sim, devices = setup
    controller.predictor = predictor_for("a100-40gb")
    await controller.on_pod_event("ADDED", pod("running"))
    await eventually(lambda: kube.phase("running") == "Running")
    held = dict(sim.state.allocations)

    await controller.on_pod_event("ADDED", bad)
    await eventually(lambda: kube.phase("bad") == "Failed")
    status = next(s for n, s in kube.statuses if n == "bad")
    assert status["reason"] == reason
    for word in words:
        assert word in status["message"], f"{word!r} not in {status['message']!r}"
    assert any(n == "bad" and r == reason for n, r, _ in kube.events)
    await eventually(lambda: devices.checkpoint.pod("uid-bad") == {})
    assert sim.state.allocations == held, "the running pod keeps its device, nothing else held"

    await controller.on_pod_event("DELETED", bad)  # deleting it reaches nobody else
    await clock.advance(90)
    await eventually(lambda: kube.phase("running") == "Succeeded")
    assert [n for n, s in kube.statuses if s.get("phase") == "Failed"] == ["bad"]


async def test_a_request_of_zero_devices_runs_without_devices_as_the_kubelet_runs_it(
        setup: Any) -> None:
    controller, kube, clock, sim, devices = setup
    await controller.on_pod_event("ADDED", asking("none", {GPU_RESOURCE: "0"}))
    await eventually(lambda: kube.phase("none") == "Running")
    assert sim.state.allocations == {} and devices.checkpoint.pod("uid-none") == {}
    await clock.advance(90)
    await eventually(lambda: kube.phase("none") == "Succeeded")
