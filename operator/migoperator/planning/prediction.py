"""How long a DGXJob's replicas run, from the performance model (``gpumodel.perf``).

A thin adapter: the operator validates a job's workload against the model's
catalog and predicts each replica's run time (steps x predicted step time) for
the placement it chose, so the prediction reflects how many nodes the gang
spans. Job parameters that the model takes as fields (``batch``, ``seq_len``,
``framework``, ``sparse``, ``epoch``) are lifted out of ``parameters``; the
rest go to the workload as its own parameters. The model raises
``PerfError`` for anything it cannot predict; here that becomes an
:class:`~migoperator.errors.InvalidJobError` with the model's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumodel.perf import WORKLOADS, PerfError, predict_job
from migoperator.errors import InvalidJobError
from migoperator.models import MAX_RUN_S, DGXJobSpec

GPUS_PER_NODE = 8
_FIELDS = {"batch": int, "seq_len": int, "seqLen": int, "framework": str, "epoch": int}


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float
    """Run time of one replica in simulated seconds."""
    step_s: float | None
    source: str
    """``performance model`` or ``spec.durationSeconds``."""


def known_workloads() -> tuple[str, ...]:
    return tuple(sorted(WORKLOADS))


def _fields(spec: DGXJobSpec) -> dict[str, object]:
    fields: dict[str, object] = {}
    params: dict[str, float | int | str] = {}
    for key, value in spec.parameters.items():
        if key in _FIELDS:
            name = "seq_len" if key == "seqLen" else key
            fields[name] = _FIELDS[key](value)
        elif key == "sparse":
            fields["sparse"] = str(value).lower() in ("1", "true", "yes")
        else:
            params[key] = value
    fields["params"] = params
    return fields


def layout(spec: DGXJobSpec, nodes: int | None = None) -> tuple[int, int]:
    """(GPUs per node, nodes) of the gang; compact when the nodes are not known yet."""
    total = spec.replicas * spec.per_replica
    if spec.mig_profile is not None:
        return 1, 1  # MIG replicas cannot talk to each other: each runs alone
    if nodes is None:
        nodes = -(-total // GPUS_PER_NODE)
    return max(1, total // max(nodes, 1)), max(nodes, 1)


def estimate(spec: DGXJobSpec, gpu_device: str, nodes: int | None = None) -> Estimate:
    """The replica run time for ``spec`` on ``gpu_device`` GPUs spread over ``nodes`` nodes."""
    if spec.workload not in WORKLOADS:
        raise InvalidJobError(f"unknown workload {spec.workload!r}; known: "
                              f"{', '.join(known_workloads())}", "UnknownWorkload")
    gpus_per_node, node_count = layout(spec, nodes)
    try:
        prediction = predict_job(spec.workload, gpu_device, gpus_per_node=gpus_per_node,
                                 nodes=node_count, mig_profile=spec.mig_profile,
                                 precision=spec.precision, **_fields(spec))
    except (PerfError, ValueError, TypeError) as err:
        raise InvalidJobError(f"the performance model cannot run {spec.workload!r}: "
                              f"{err}", "InvalidWorkload") from err
    step_s = prediction.step_time_s
    if spec.duration_seconds is not None:
        return Estimate(spec.duration_seconds, step_s, "spec.durationSeconds")
    if step_s * spec.steps > MAX_RUN_S:
        raise InvalidJobError(f"spec.steps: {spec.steps} steps x {step_s:.4g} s predicted is "
                              f"more than a year ({MAX_RUN_S:.0f} s)", "InvalidWorkload")
    return Estimate(step_s * spec.steps, step_s, "performance model")


def human(seconds: float) -> str:
    """``42.0s``, ``12m30s``, ``3h05m``: the Predicted column."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
