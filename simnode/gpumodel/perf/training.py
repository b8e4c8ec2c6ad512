"""A training step from its micro-steps: gradient synchronisation, optimizer, stragglers.

Why these terms and nothing fitted: going from one GPU to many adds work and
waiting that a single GPU never sees, and each has a physical cause with its
own size, so the scaling of a data-parallel job comes out of the model:

* **gradient all-reduce**: DDP all-reduces gradients in buckets (25 MB) as
  backward produces them, one bucket after another on NCCL's stream; a bucket
  cannot start before backward has filled it, so the last bucket's all-reduce
  (and any backlog) is exposed after backward ends (:func:`bucket_tail`).
  Recipes that all-reduce once after backward expose all of it.
* **optimizer step**: it runs after the all-reduce, once per optimizer step.
* **stragglers**: a synchronous step waits for the slowest replica. GPUs of one
  SKU differ in sustained speed (manufacturing variability under power
  management), so ``N`` replicas run at the expected slowest of ``N`` draws,
  ``1 + sigma * E[max of N standard normals]`` times a typical GPU's step
  (:func:`straggler_factor`); a single-GPU measurement is a typical GPU.
* **host**: an eager framework's per-step host work overlaps the GPU through
  CUDA's launch queue and costs time only where the host is the slower side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.collectives import collective_time
from gpumodel.perf.workloads import StepPlan


@dataclass(frozen=True, slots=True)
class GradientSync:
    """Seconds of the gradient all-reduce of one optimizer step: exposed and hidden."""

    exposed_s: float
    overlapped_s: float


@cache
def expected_max_normal(n: int) -> float:
    """E[max of n standard normal draws] (Blom's approximation; 0 for one draw)."""
    if n <= 1:
        return 0.0
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25))


def straggler_factor(replicas: int, c: PerfConstants) -> float:
    """How much longer a synchronous step of ``replicas`` GPUs takes than one typical GPU's."""
    return 1.0 + c.scalar("straggler_sigma") * expected_max_normal(replicas)


def bucket_tail(buckets: int, bucket_s: float, backward_s: float) -> float:
    """Seconds the bucketed all-reduce runs past the end of backward.

    Bucket ``i`` is full when backward has produced ``(i + 1) / buckets`` of the
    gradients (backward produces them at an even rate) and starts when it is
    full and the previous bucket is done.
    """
    done = 0.0
    for i in range(buckets):
        ready = backward_s * (i + 1) / buckets
        done = max(done, ready) + bucket_s
    return max(0.0, done - backward_s)


def gradient_sync(plan: StepPlan, backward_s: float, device_name: str,
                  c: PerfConstants) -> GradientSync:
    """The gradient all-reduce of one optimizer step, split into exposed and overlapped time."""
    g, n = plan.data_parallel
    if plan.grad_sync == "none" or g * n <= 1 or plan.grad_bytes <= 0:
        return GradientSync(0.0, 0.0)
    if plan.grad_sync == "after-backward":
        full = collective_time("allreduce", plan.grad_bytes, g, n, device_name, c).time_s
        return GradientSync(full, 0.0)
    bucket_bytes = min(plan.grad_bytes, c.scalar("ddp_bucket_mb") * 1e6)
    buckets = math.ceil(plan.grad_bytes / bucket_bytes)
    bucket_s = collective_time("allreduce", plan.grad_bytes / buckets, g, n, device_name,
                               c).time_s
    exposed = bucket_tail(buckets, bucket_s, backward_s)
    return GradientSync(exposed, buckets * bucket_s - exposed)
