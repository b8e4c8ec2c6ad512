"""``dgxsim jobs``: every DGXJob and batch Job of the local cluster in one table.

For each job: where it ran (nodes and devices), what the performance model
predicted (simulated time) and how long it took, in wall time and in
simulated time. The node agent records on each pod when it started and
finished on the simulated clock (to the millisecond), so a job's simulated run
time is exact: from its pods' earliest start to their latest finish. Where a
pod lacks those records, the table falls back to wall time (Kubernetes
timestamps, whole seconds) times the time scale ``dgxsim up`` recorded, marked
``~``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, add_state_dir, state_dir_of
from gpumodel.vocabulary import (
    JOB_LABEL,
    PREDICTED_DURATION_ANNOTATION,
    SIM_FINISHED_ANNOTATION,
    SIM_STARTED_ANNOTATION,
)

if TYPE_CHECKING:
    from kubewire import KubeClient

JSON = dict[str, Any]
BATCH_JOB_LABEL = "job-name"
"""The label the Job controller puts on a Job's pods."""


def register(sub: Any) -> None:
    p = sub.add_parser("jobs", help="table of DGXJobs and Jobs: placement, predicted, elapsed")
    add_state_dir(p)
    p.add_argument("--namespace", "-n", default="default")
    p.set_defaults(func=cmd_jobs)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s" if seconds != int(seconds) else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _annotation_s(pod: JSON, key: str) -> float | None:
    value = (pod["metadata"].get("annotations") or {}).get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def simulated_run_s(pods: list[JSON]) -> float | None:
    """From the pods' earliest simulated start to their latest simulated finish, once
    every pod that started has finished; None without such records."""
    runs = [(start, _annotation_s(p, SIM_FINISHED_ANNOTATION)) for p in pods
            if (start := _annotation_s(p, SIM_STARTED_ANNOTATION)) is not None]
    finishes = [finish for _, finish in runs if finish is not None]
    if not runs or len(finishes) < len(runs):
        return None
    return max(finishes) - min(start for start, _ in runs)


def _ran(pods: list[JSON], wall: float | None, scale: float) -> str:
    """The simulated run time: exact from the pods' records, else ``~`` wall x scale."""
    exact = simulated_run_s(pods)
    if exact is not None:
        return _duration(exact)
    return "~" + _duration(wall * scale) if wall is not None else "-"


def _pods_labelled(pods: list[JSON], label: str, value: str) -> list[JSON]:
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(label) == value]


def _dgxjob_row(job: JSON, pods: list[JSON], scale: float) -> list[str]:
    status = job.get("status") or {}
    wall = _seconds(status.get("startTime"), status.get("completionTime"))
    mine = _pods_labelled(pods, JOB_LABEL, job["metadata"]["name"])
    return [job["metadata"]["name"], "DGXJob", status.get("phase", "Pending"),
            f"{status.get('gpus', '-')} on {status.get('nodes', '-')}",
            status.get("predicted", "-"), _duration(wall), _ran(mine, wall, scale)]


def _job_row(job: JSON, pods: list[JSON], scale: float) -> list[str]:
    name = job["metadata"]["name"]
    mine = _pods_labelled(pods, BATCH_JOB_LABEL, name)
    nodes = sorted({p["spec"].get("nodeName") or "-" for p in mine})
    predicted = [s for p in mine
                 if (s := _annotation_s(p, PREDICTED_DURATION_ANNOTATION)) is not None]
    status = job.get("status") or {}
    done = any(c["type"] == "Complete" and c["status"] == "True"
               for c in status.get("conditions", []))
    wall = _seconds(status.get("startTime"), status.get("completionTime"))
    phase = "Succeeded" if done else ("Failed" if status.get("failed") else "Running")
    return [name, "Job", phase, f"{len(mine)} pods on {','.join(nodes)}",
            _duration(max(predicted)) if predicted else "-", _duration(wall),
            _ran(mine, wall, scale)]


def rows(dgxjobs: list[JSON], jobs: list[JSON], pods: list[JSON], scale: float
         ) -> list[list[str]]:
    """One row per DGXJob, then one per Job: name, kind, phase, placement, predicted,
    wall run time, simulated run time."""
    return ([_dgxjob_row(job, pods, scale) for job in dgxjobs]
            + [_job_row(job, pods, scale) for job in jobs])


def recorded_time_scale(state_dir: Path) -> float:
    """The time scale ``dgxsim up`` recorded for the cluster (1 when it recorded none)."""
    from dgxsim.clusterfile import ClusterFileError, load_settings

    try:
        settings = load_settings(state_dir)
    except ClusterFileError as err:
        raise CommandError(str(err)) from err
    return settings.time_scale if settings is not None else 1.0


async def _read(kube: KubeClient, namespace: str) -> tuple[list[JSON], list[JSON], list[JSON]]:
    from kubewire import CustomResource, NotFoundError
    from migoperator.models import GROUP, PLURAL, VERSION

    try:
        dgxjobs = (await kube.list_custom_objects(CustomResource(GROUP, VERSION, PLURAL),
                                                  namespace)).items
    except NotFoundError:  # the DGXJob CRD is not installed (dgxsim up --no-operator)
        dgxjobs = []
    jobs = (await kube.list_batch_jobs(namespace)).items
    pods = (await kube.list_pods(namespace=namespace)).items
    return dgxjobs, jobs, pods


def cmd_jobs(args: argparse.Namespace) -> int:
    from dgxsim.kubeapi import read_cluster
    from localkube import ControlPlane

    plane = ControlPlane(state_dir_of(args))
    if plane.running() is None:
        raise CommandError(f"no cluster running in {plane.state_dir}")
    scale = recorded_time_scale(plane.state_dir)
    dgxjobs, jobs, pods = read_cluster(plane.kubeconfig, lambda kube: _read(kube, args.namespace))
    table = rows(dgxjobs, jobs, pods, scale)
    header = ["NAME", "KIND", "PHASE", "PLACEMENT", "PREDICTED", "RAN (WALL)",
              f"RAN (SIM, x{scale:g})"]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0
