"""``dgxsim jobs``: every DGXJob and batch Job of the local cluster in one table.

For each job: where it ran (nodes and devices), what the performance model
predicted (simulated time) and how long it took (wall time, and simulated time
at the node agent's time scale), so a run of the demo ends with the figures
that matter at a glance.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, add_state_dir, state_dir_of
from gpumodel.vocabulary import PREDICTED_DURATION_ANNOTATION

if TYPE_CHECKING:
    from localkube import ControlPlane

JSON = dict[str, Any]


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
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def time_scale(plane: ControlPlane) -> float:
    """The node agent's time scale, from the command line it was started with."""
    state = plane.load_state()
    for record in state.processes if state else []:
        if record.name == "node-agent" and "--time-scale" in record.argv:
            return float(record.argv[record.argv.index("--time-scale") + 1])
    return 1.0


def rows(dgxjobs: list[JSON], jobs: list[JSON], pods: list[JSON], scale: float
         ) -> list[list[str]]:
    table = []
    for job in dgxjobs:
        status = job.get("status") or {}
        wall = _seconds(status.get("startTime"), status.get("completionTime"))
        table.append([
            job["metadata"]["name"], "DGXJob", status.get("phase", "Pending"),
            f"{status.get('gpus', '-')} on {status.get('nodes', '-')}",
            status.get("predicted", "-"), _duration(wall),
            _duration(wall * scale if wall is not None else None)])
    for job in jobs:
        name = job["metadata"]["name"]
        mine = [p for p in pods if p["metadata"].get("labels", {}).get("job-name") == name]
        nodes = sorted({p["spec"].get("nodeName") or "-" for p in mine})
        predicted = [float(value) for p in mine if (value := p["metadata"].get(
            "annotations", {}).get(PREDICTED_DURATION_ANNOTATION)) is not None]
        status = job.get("status") or {}
        done = any(c["type"] == "Complete" and c["status"] == "True"
                   for c in status.get("conditions", []))
        wall = _seconds(status.get("startTime"), status.get("completionTime"))
        table.append([
            name, "Job", "Succeeded" if done else ("Failed" if status.get("failed") else
                                                    "Running"),
            f"{len(mine)} pods on {','.join(nodes)}",
            _duration(max(predicted)) if predicted else "-", _duration(wall),
            _duration(wall * scale if wall is not None else None)])
    return table


def cmd_jobs(args: argparse.Namespace) -> int:
    from localkube import ControlPlane

    plane = ControlPlane(state_dir_of(args))
    if plane.running() is None:
        raise CommandError(f"no cluster running in {plane.state_dir}")
    ns = args.namespace
    with plane._client(plane.pki) as client:
        dgx = plane.api_get(client, f"/apis/dgxsim.io/v1/namespaces/{ns}/dgxjobs") or {}
        jobs = plane.api_get(client, f"/apis/batch/v1/namespaces/{ns}/jobs") or {}
        pods = plane.api_get(client, f"/api/v1/namespaces/{ns}/pods") or {}
    scale = time_scale(plane)
    table = rows(list(dgx.get("items", [])), list(jobs.get("items", [])),  # type: ignore[call-overload]
                 list(pods.get("items", [])), scale)  # type: ignore[call-overload]
    header = ["NAME", "KIND", "PHASE", "PLACEMENT", "PREDICTED", "RAN (WALL)",
              f"RAN (x{scale:g})"]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0
