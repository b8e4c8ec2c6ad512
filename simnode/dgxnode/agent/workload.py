"""How long a pod runs: its ``dgxsim.io/*`` annotations, read strictly.

* ``dgxsim.io/duration``: wall time of the simulated job, ``90``, ``90s``,
  ``2m30s`` or ``1h``; divided by the cluster's time scale.
* ``dgxsim.io/workload``: a JSON object naming a workload of the performance
  model and its parameters (``{"workload": "resnet50-train", "precision":
  "fp16", "batch": 256, "steps": 1000}``); the model predicts the step time on
  the devices the pod was given and the pod runs ``steps`` of them.
* ``dgxsim.io/shutdown-seconds``: how long the simulated process takes to exit
  after SIGTERM (capped by the pod's grace period).

Every number is checked for finiteness and a sane range (a run of at most a
year, steps up to 10^9, batch and sequence up to 2^20, workload parameters as
the performance model bounds them), so ``NaN``, ``1e308`` or ``"inf"`` is
refused at admission rather than run. A pod with neither duration nor workload
runs until it is deleted, like a service. A malformed annotation is an
:class:`AnnotationError` that names the annotation and what is wrong; the
agent reports it on the pod and fails it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgxnode.agent.errors import AnnotationError
from gpumodel.vocabulary import (
    DURATION_ANNOTATION,
    PREDICTED_DURATION_ANNOTATION,
    SHUTDOWN_ANNOTATION,
    WORKLOAD_ANNOTATION,
)

DURATION = DURATION_ANNOTATION
WORKLOAD = WORKLOAD_ANNOTATION
PREDICTED = PREDICTED_DURATION_ANNOTATION
SHUTDOWN = SHUTDOWN_ANNOTATION
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
MAX_RUN_S = 366 * 86400.0
"""The longest simulated run a pod may ask for or be predicted (a year): longer is
a typo or an overflow, and would hold its devices for good."""
MAX_STEPS = 10**9
MAX_SHUTDOWN_S = 86400.0
"""A process that takes longer than a day to exit after SIGTERM is a typo."""
MAX_SIZE = 2**20
"""Batch and sequence length: more than any GPU's memory holds."""


class WorkloadSpec(BaseModel):
    """The ``dgxsim.io/workload`` annotation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: str = Field(min_length=1)
    steps: int = Field(default=100, ge=1, le=MAX_STEPS)
    precision: str = "fp16"
    batch: int | None = Field(default=None, ge=1, le=MAX_SIZE)
    seq_len: int | None = Field(default=None, ge=1, le=MAX_SIZE)
    sparse: bool = False
    framework: str | None = None
    params: dict[str, float | int | str] = {}


class RunPlan(BaseModel):
    """How long one pod runs (simulated seconds, before the time scale) and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: float | None
    reason: str


# devices of the pod (resource -> device IDs) and the spec -> seconds per step
StepPredictor = Callable[[WorkloadSpec, Mapping[str, tuple[str, ...]]], float]


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m30s``, ``1h``, ``500ms`` -> seconds; an error otherwise."""
    stripped = text.strip()
    try:
        value = float(stripped)
    except ValueError:
        parts = _PART.findall(stripped)
        if not parts or "".join(n + u for n, u in parts) != stripped:
            raise AnnotationError(
                f"{DURATION}: {text!r} is not a duration (use seconds like 90, or 90s, "
                "2m30s, 1h)") from None
        value = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not 0 < value <= MAX_RUN_S:
        raise AnnotationError(f"{DURATION}: {text!r} must be a positive duration of at most "
                              f"{MAX_RUN_S:.0f} s (a year)")
    return value


def parse_workload(text: str) -> WorkloadSpec:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{WORKLOAD}: not JSON ({err.msg} at column {err.colno})") from err
    try:
        return WorkloadSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise AnnotationError(f"{WORKLOAD}: {where}: {first['msg']}") from err


def run_plan(annotations: Mapping[str, str], devices: Mapping[str, tuple[str, ...]],
             predictor: StepPredictor | None) -> RunPlan:
    """The pod's run time from its annotations (see the module doc); every ``dgxsim.io``
    annotation is checked here, at admission, so a pod never fails later for one."""
    if SHUTDOWN in annotations:
        parse_shutdown(annotations[SHUTDOWN])
    if DURATION in annotations:
        seconds = parse_duration(annotations[DURATION])
        return RunPlan(duration_s=seconds, reason=f"{DURATION}={annotations[DURATION]}")
    if WORKLOAD in annotations:
        spec = parse_workload(annotations[WORKLOAD])
        if predictor is None:
            raise AnnotationError(f"{WORKLOAD}: this node agent has no performance model")
        step_s = predictor(spec, devices)
        if not 0 < step_s * spec.steps <= MAX_RUN_S:
            raise AnnotationError(
                f"{WORKLOAD}: {spec.steps} steps x {step_s:.4g} s is not a run time between "
                f"0 and {MAX_RUN_S:.0f} s (a year)")
        return RunPlan(duration_s=step_s * spec.steps,
                       reason=f"{spec.workload}: {spec.steps} steps x {step_s:.4g} s predicted")
    return RunPlan(duration_s=None, reason="no dgxsim.io/duration or workload: runs until deleted")


def parse_shutdown(text: str) -> float:
    """``dgxsim.io/shutdown-seconds``: a finite number of seconds, 0 to a day."""
    try:
        wanted = float(text)
    except ValueError:
        raise AnnotationError(f"{SHUTDOWN}: {text!r} is not a number of seconds") from None
    if not (math.isfinite(wanted) and 0 <= wanted <= MAX_SHUTDOWN_S):
        raise AnnotationError(f"{SHUTDOWN}: {text!r} must be a finite number of seconds from "
                              f"0 to {MAX_SHUTDOWN_S:.0f}")
    return wanted


def shutdown_seconds(annotations: Mapping[str, str], grace_s: float) -> float:
    """How long the simulated process takes to exit after SIGTERM, capped by the grace period."""
    if SHUTDOWN not in annotations:
        return 0.0
    return max(0.0, min(parse_shutdown(annotations[SHUTDOWN]), grace_s))
