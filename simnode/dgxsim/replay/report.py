"""The replay's report: one row per pod, one per sample, and a summary, as files.

Per pod (``pods.csv``): when it was created, started and finished on the
replay's simulated clock (seconds since the replay began), hence its wait
(started - created), run (finished - started) and completion
(finished - created) times, and how it ended. The node agent stamps the start
and finish on the cluster's simulated clock to the millisecond
(``dgxsim.io/sim-started-s``, ``dgxsim.io/sim-finished-s``), and the replay
stamps creations on the same clock, so the waits are exact, not wall time
read off one-second Kubernetes timestamps.

Every pod of the trace ends in exactly one outcome: ``succeeded``;
``failed`` (with the pod's reason, or the API's refusal to create it);
``unschedulable`` (still pending when the replay ended, with the message of
its ``PodScheduled`` condition, which is the scheduler's reason);
``skipped`` (CPU-only, see :mod:`.plan`); or ``unfinished`` (bound but not
done when the replay was stopped).

Over time (``samples.csv``): see :mod:`.snapshot`. Time averages weight each
sample by the time until the next one, so uneven sampling does not bias them.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from dgxsim.replay.plan import PlannedPod
from dgxsim.replay.snapshot import Sample, node_of
from gpumodel.vocabulary import SIM_FINISHED_ANNOTATION, SIM_STARTED_ANNOTATION

JSON = dict[str, Any]
Outcome = Literal["succeeded", "failed", "unschedulable", "skipped", "unfinished"]
PODS_CSV = "pods.csv"
SAMPLES_CSV = "samples.csv"
SUMMARY_JSON = "summary.json"


class PodOutcome(BaseModel):
    """How one pod of the trace fared (a row of ``pods.csv``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    line: int
    request: str
    """``nvidia.com/mig-3g.20gb x1``, ``nvidia.com/gpu x4``, or ``cpu-only``."""
    gpu_share: float
    trace_phase: str
    submit_s: float
    created_s: float | None
    started_s: float | None
    finished_s: float | None
    wait_s: float | None
    run_s: float | None
    completion_s: float | None
    outcome: Outcome
    reason: str
    node: str | None


class Summary(BaseModel):
    """The replay in a few numbers (``summary.json``), what ``compare`` puts side by side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["v1"] = "v1"
    trace: str
    policy: str
    mig_config: str | None
    speed: float = Field(gt=0)
    time_scale: float = Field(gt=0)
    pods: int
    outcomes: dict[str, int]
    mean_wait_s: float | None
    p90_wait_s: float | None
    mean_completion_s: float | None
    mean_allocation_ratio: float
    peak_allocation_ratio: float
    mean_fragmented_slices: float
    mean_pending: float
    makespan_s: float | None


def _annotation_s(pod: JSON, key: str) -> float | None:
    value = (pod.get("metadata", {}).get("annotations") or {}).get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _request_text(planned: PlannedPod) -> str:
    return f"{planned.resource} x{planned.count}" if planned.resource else "cpu-only"


def _scheduler_reason(pod: JSON) -> str:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".strip()
    return "never scheduled (no PodScheduled condition)"


def _ending(pod: JSON) -> tuple[Outcome, str]:
    status = pod.get("status", {})
    phase = status.get("phase")
    if phase == "Succeeded":
        return "succeeded", ""
    if phase == "Failed":
        return "failed", f"{status.get('reason', 'Failed')}: {status.get('message', '')}".strip()
    if node_of(pod) is None:
        return "unschedulable", _scheduler_reason(pod)
    return "unfinished", f"{phase} on {node_of(pod)} when the replay ended"


def _minus(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def outcome_of(planned: PlannedPod, pod: JSON | None, created_s: float | None,
               origin_s: float, create_error: str | None = None) -> PodOutcome:
    """One pod's row: ``pod`` as last read (None if never created), ``created_s`` on the
    replay clock, ``origin_s`` the cluster clock's reading when the replay began."""
    base = {"name": planned.name, "line": planned.line, "request": _request_text(planned),
            "gpu_share": round(planned.gpu_share, 4), "trace_phase": planned.trace_phase,
            "submit_s": round(planned.submit_s, 3), "created_s": created_s}
    if planned.skipped:
        return PodOutcome(**base, started_s=None, finished_s=None, wait_s=None, run_s=None,
                          completion_s=None, outcome="skipped",
                          reason="CPU-only pod: not replayed", node=None)
    if pod is None:
        return PodOutcome(**base, started_s=None, finished_s=None, wait_s=None, run_s=None,
                          completion_s=None, outcome="failed",
                          reason=create_error or "never created", node=None)
    started = _minus(_annotation_s(pod, SIM_STARTED_ANNOTATION), origin_s)
    finished = _minus(_annotation_s(pod, SIM_FINISHED_ANNOTATION), origin_s)
    outcome, reason = _ending(pod)
    return PodOutcome(**base, started_s=started, finished_s=finished,
                      wait_s=_minus(started, created_s), run_s=_minus(finished, started),
                      completion_s=_minus(finished, created_s), outcome=outcome,
                      reason=reason, node=node_of(pod))


def time_mean(samples: Sequence[Sample], field: str) -> float:
    """The time-weighted mean of a sample field: each value holds until the next sample."""
    if not samples:
        return 0.0
    if len(samples) == 1:
        return float(getattr(samples[0], field))
    span = samples[-1].t_s - samples[0].t_s
    if span <= 0:
        return statistics.fmean(float(getattr(s, field)) for s in samples)
    weighted = sum(float(getattr(a, field)) * (b.t_s - a.t_s)
                   for a, b in pairwise(samples))
    return weighted / span


def active_span(samples: Sequence[Sample], end_s: float | None) -> Sequence[Sample]:
    """The samples up to ``end_s`` and the first one at or after it (all without an end)."""
    if end_s is None:
        return samples
    upto = [s for s in samples if s.t_s < end_s]
    after = [s for s in samples if s.t_s >= end_s][:1]
    return upto + after


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(outcomes: Sequence[PodOutcome], samples: Sequence[Sample], **about: Any
              ) -> Summary:
    """The summary; ``about`` gives trace, policy, mig_config, speed and time_scale.

    Time averages cover the replay's active span, up to the last finish: the
    quiet wait before waiting pods are declared unschedulable is not load."""
    waits = [o.wait_s for o in outcomes if o.wait_s is not None]
    completions = [o.completion_s for o in outcomes if o.completion_s is not None]
    finishes = [o.finished_s for o in outcomes if o.finished_s is not None]
    samples = active_span(samples, max(finishes) if finishes else None)
    return Summary(
        **about, pods=len(outcomes), outcomes=dict(Counter(o.outcome for o in outcomes)),
        mean_wait_s=round(statistics.fmean(waits), 3) if waits else None,
        p90_wait_s=_percentile(waits, 0.9),
        mean_completion_s=round(statistics.fmean(completions), 3) if completions else None,
        mean_allocation_ratio=round(time_mean(samples, "allocation_ratio"), 4),
        peak_allocation_ratio=round(max((s.allocation_ratio for s in samples), default=0.0), 4),
        mean_fragmented_slices=round(time_mean(samples, "fragmented_slices"), 3),
        mean_pending=round(time_mean(samples, "pending"), 3),
        makespan_s=max(finishes) if finishes else None)


def write_rows(path: Path, rows: Sequence[BaseModel], model: type[BaseModel]) -> Path:
    """A CSV with the model's fields as header (empty cells for None)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        fields = list(model.model_fields)
        writer.writerow(fields)
        for row in rows:
            values = row.model_dump()
            writer.writerow(["" if values[f] is None else values[f] for f in fields])
    return path


def write_report(out_dir: Path, outcomes: Sequence[PodOutcome], samples: Sequence[Sample],
                 summary: Summary) -> list[Path]:
    """pods.csv, samples.csv and summary.json in ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_rows(out_dir / PODS_CSV, outcomes, PodOutcome),
               write_rows(out_dir / SAMPLES_CSV, samples, Sample)]
    (out_dir / SUMMARY_JSON).write_text(summary.model_dump_json(indent=2) + "\n")
    return [*written, out_dir / SUMMARY_JSON]


def read_samples(out_dir: Path) -> list[Sample]:
    with (out_dir / SAMPLES_CSV).open(newline="", encoding="utf-8") as f:
        return [Sample.model_validate(row) for row in csv.DictReader(f)]


def read_outcomes(out_dir: Path) -> list[PodOutcome]:
    """``pods.csv`` back as rows (an empty cell of a field that may be None is None)."""
    optional = {name for name, info in PodOutcome.model_fields.items()
                if type(None) in get_args(info.annotation)}
    with (out_dir / PODS_CSV).open(newline="", encoding="utf-8") as f:
        return [PodOutcome.model_validate(
                    {k: None if k in optional and v == "" else v for k, v in row.items()})
                for row in csv.DictReader(f)]


def read_summary(out_dir: Path) -> Summary:
    return Summary.model_validate_json((out_dir / SUMMARY_JSON).read_text())
