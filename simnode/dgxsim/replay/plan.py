"""From trace rows to the pods a replay creates: when, for how long, asking for what.

Time: the trace's clock runs ``speed`` times faster than the cluster's
simulated clock, for arrivals and run times alike, so the shape of the load is
kept (``speed`` 1 replays the trace's seconds as simulated seconds). Arrivals
count from the trace's first creation; a pod runs for its traced duration,
deletion minus scheduled time (or creation time for a pod the traced cluster
never scheduled), passed to the node agent as ``dgxsim.io/duration``.

Resources, for a cluster of the MIG mixed strategy:

* ``num_gpu`` >= 2, or 1 with ``gpu_milli`` 1000: ``nvidia.com/gpu: num_gpu``.
* ``num_gpu`` 1 with ``gpu_milli`` < 1000 (a GPU-sharing pod): one MIG device
  of the *smallest profile of the cluster's GPU whose compute share covers
  gpu_milli*, compute share being compute slices / 7. On an A100-40GB:
  up to 1/7 (142 milli) 1g.5gb, up to 2/7 (285) 2g.10gb, up to 3/7 (428)
  3g.20gb, up to 4/7 (571) 4g.20gb, above 7g.40gb. The trace's share is of
  compute time, and a MIG instance is the only way to guarantee a pod a share
  of an A100's compute, so the rule rounds up (never gives less than asked);
  of the profiles with that compute size it takes the least memory, as the
  trace does not say how much the pod needs.
* ``num_gpu`` 0 (CPU-only): skipped, counted in the report. Replay is about GPU
  allocation; a DGX node's 256 CPU threads are not the resource in question.

``cpu_milli`` and ``memory_mib`` become the container's requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dgxsim.replay.trace import MILLI_PER_GPU, TraceLine
from gpumodel.mig import ProfileTable
from gpumodel.vocabulary import GPU_RESOURCE, mig_resource

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class MigRule:
    """The gpu_milli -> MIG profile rule for one GPU kind: (compute slices, profile) by size."""

    total_slices: int
    sizes: tuple[tuple[int, str], ...]

    @classmethod
    def of(cls, table: ProfileTable) -> MigRule:
        names = table.base_profile_names()
        sizes = tuple(sorted((table.get(n).compute_slices, n) for n in names))
        return cls(total_slices=table.compute_slices, sizes=sizes)

    def slices_needed(self, gpu_milli: int) -> int:
        """Compute slices covering ``gpu_milli`` thousandths of a GPU (rounded up, exact)."""
        return -(-gpu_milli * self.total_slices // MILLI_PER_GPU)

    def profile_for(self, gpu_milli: int) -> str:
        """The smallest profile whose compute share covers ``gpu_milli`` (1 to 999)."""
        if not 0 < gpu_milli < MILLI_PER_GPU:
            raise ValueError(f"gpu_milli {gpu_milli} is not a fraction of a GPU")
        needed = self.slices_needed(gpu_milli)
        return next(name for slices, name in self.sizes if slices >= needed)

    def slices_of(self, profile: str) -> int:
        return next(slices for slices, name in self.sizes if name == profile)


class PlannedPod(BaseModel):
    """One pod of the replay."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """The Kubernetes name (the trace's, lower-cased to a DNS label)."""
    line: int = Field(ge=2)
    submit_s: float = Field(ge=0)
    """Simulated seconds after the replay's start."""
    duration_s: float = Field(gt=0)
    """Simulated run time."""
    resource: str | None
    """The GPU resource asked for; None for a CPU-only pod, which is skipped."""
    count: int = Field(ge=0)
    gpu_share: float = Field(ge=0)
    """GPUs' worth of compute held while it runs (a 3g MIG device: 3/7)."""
    gpu_milli: int
    cpu_milli: int
    memory_mib: int
    trace_phase: str

    @property
    def skipped(self) -> bool:
        return self.resource is None


def pod_name(trace_name: str) -> str:
    """A DNS-1123 label from a trace name (``openb-pod-0017`` stays as it is)."""
    name = _NOT_DNS.sub("-", trace_name.lower()).strip("-")[:63].strip("-")
    if not name:
        raise ValueError(f"trace name {trace_name!r} has no letter or digit to name a pod by")
    return name


def plan_pods(lines: tuple[TraceLine, ...], rule: MigRule, speed: float) -> list[PlannedPod]:
    """The replay's pods in arrival order (ties in trace order)."""
    if not lines:
        return []
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    t0 = min(tl.row.creation_time for tl in lines)
    pods = [_plan(tl, rule, t0, speed) for tl in lines]
    names = [p.name for p in pods]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"trace names map to the same pod name: {', '.join(clashes)}")
    return sorted(pods, key=lambda p: (p.submit_s, p.line))


def _plan(tl: TraceLine, rule: MigRule, t0: float, speed: float) -> PlannedPod:
    row = tl.row
    resource, count, share = _request(row.num_gpu, row.gpu_milli, rule)
    return PlannedPod(
        name=pod_name(row.name), line=tl.line, submit_s=(row.creation_time - t0) / speed,
        duration_s=row.duration_s / speed, resource=resource, count=count, gpu_share=share,
        gpu_milli=row.gpu_milli, cpu_milli=row.cpu_milli, memory_mib=row.memory_mib,
        trace_phase=row.pod_phase)


def _request(num_gpu: int, gpu_milli: int, rule: MigRule) -> tuple[str | None, int, float]:
    if num_gpu == 0:
        return None, 0, 0.0
    if num_gpu == 1 and gpu_milli < MILLI_PER_GPU:
        profile = rule.profile_for(gpu_milli)
        return mig_resource(profile), 1, rule.slices_of(profile) / rule.total_slices
    return GPU_RESOURCE, num_gpu, float(num_gpu)
