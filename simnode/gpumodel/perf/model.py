"""``predict``: how long a workload takes on a set of GPUs, and why.

Why one pure function of hashable inputs: the operator asks for a prediction on
every placement decision and the node agent for every job it runs, usually for
the same few workloads, so :func:`predict` caches on its (frozen) request and a
repeated question costs a dictionary lookup.

A step is assembled from the parts DESIGN.md §6 names: the per-operator
roofline of one micro-step on the engine (a GPU or MIG slice), collectives on
the critical path, the gradient all-reduce (overlapped with backward where the
framework buckets it), the optimizer, the pipeline bubble and data loading that
the loader's prefetch cannot hide.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.gpus import DeviceSpec, device
from gpumodel.perf.calibration import PerfConstants, constants
from gpumodel.perf.collectives import collective_time
from gpumodel.perf.engine import Engine, engine, precision
from gpumodel.perf.errors import PerfError
from gpumodel.perf.fabric import system_for
from gpumodel.perf.roofline import StepTime, step_time
from gpumodel.perf.storage import node_read
from gpumodel.perf.training import gradient_sync, straggler_factor
from gpumodel.perf.workloads import WORKLOADS, Context, StepPlan

ParamValue = float | int | str
MAX_NODES = 10_000
"""Nodes one job spans: the largest DGX clusters are a few thousand nodes."""
MAX_DEVICES_PER_NODE = 8 * 7
"""GPUs or MIG slices of one node (8 A100s of 7 slices); the system's own count is checked
when the request is predicted."""
MAX_BATCH = 2**20
"""Samples per GPU per micro-step: more does not fit in any GPU's memory."""
MAX_SEQ_LEN = 2**20
MAX_EPOCH = 10_000
Metric = Literal["samples_per_s", "latency_ms", "tflops", "bandwidth_GBps", "busbw_GBps"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PerfRequest(_Frozen):
    """What to predict: a workload on ``gpus_per_node`` x ``nodes`` GPUs (or MIG slices)."""

    workload: str
    gpu: str
    gpus_per_node: int = Field(default=1, ge=1, le=MAX_DEVICES_PER_NODE)
    nodes: int = Field(default=1, ge=1, le=MAX_NODES)
    mig_profile: str | None = None
    precision: str = "fp16"
    sparse: bool = False
    batch: int | None = Field(default=None, ge=1, le=MAX_BATCH,
                              description="per GPU (micro-batch)")
    seq_len: int | None = Field(default=None, ge=1, le=MAX_SEQ_LEN)
    framework: str | None = None
    epoch: int = Field(default=2, ge=1, le=MAX_EPOCH, description="1 reads from network storage")
    params: tuple[tuple[str, ParamValue], ...] = ()


class Breakdown(_Frozen):
    """Where one step's time goes, in seconds (exposed terms add up to the step)."""

    compute_s: float
    memory_s: float
    overhead_s: float
    communication_exposed_s: float
    communication_overlapped_s: float
    optimizer_s: float
    pipeline_bubble_s: float
    io_s: float
    io_exposed_s: float


class Prediction(_Frozen):
    """The model's answer for one request.

    ``samples_per_s`` is the whole job's (every GPU or slice of the request);
    ``step_time_s`` one optimizer step (training) or one batch (inference and
    benchmarks); ``latency_s`` one micro-batch on one device. ``tflops`` is the
    achieved rate of the whole job (of one GEMM for ``gemm``).
    """

    request: PerfRequest
    framework: str
    gpus: int
    samples_per_step: float
    step_time_s: float
    latency_s: float
    samples_per_s: float
    tflops: float | None = None
    bandwidth_gb_per_s: float | None = None
    busbw_gb_per_s: float | None = None
    io_source: str = "none"
    breakdown: Breakdown
    notes: tuple[str, ...] = ()

    def metric(self, name: str) -> float:
        """A value by the metric names of ``published.csv``."""
        values = {"samples_per_s": self.samples_per_s, "latency_ms": self.latency_s * 1e3,
                  "tflops": self.tflops, "bandwidth_GBps": self.bandwidth_gb_per_s,
                  "busbw_GBps": self.busbw_gb_per_s}
        if name not in values:
            raise PerfError(f"unknown metric {name!r}; known: {', '.join(values)}")
        value = values[name]
        if value is None:
            raise PerfError(f"{self.request.workload} has no {name} metric")
        return value


@lru_cache(maxsize=8192)
def predict(request: PerfRequest) -> Prediction:
    """Predict ``request`` with the calibrated constants (cached; pure)."""
    return predict_with(request, constants())


def predict_job(workload: str, gpu: str, **fields: object) -> Prediction:
    """Keyword form of :func:`predict`; ``params`` may be a dict."""
    params = fields.pop("params", None)
    if isinstance(params, dict):
        fields["params"] = tuple(sorted(params.items()))
    elif params is not None:
        fields["params"] = params
    return predict(PerfRequest.model_validate({"workload": workload, "gpu": gpu, **fields}))


def predict_with(request: PerfRequest, c: PerfConstants) -> Prediction:
    """Predict ``request`` with explicit constants (used when fitting them)."""
    entry = WORKLOADS.get(request.workload)
    if entry is None:
        raise PerfError(f"unknown workload {request.workload!r}; known: "
                        f"{', '.join(sorted(WORKLOADS))}")
    framework = request.framework or entry.default_framework
    if framework not in c.frameworks:
        raise PerfError(f"unknown framework {framework!r}; known: "
                        f"{', '.join(sorted(c.frameworks))}")
    eng = engine(request.gpu, request.mig_profile, c)
    _check_node_size(request, eng)
    ctx = Context(engine=eng, precision=precision(request.precision, _spec(request.gpu)),
                  batch=request.batch, seq_len=request.seq_len,
                  gpus_per_node=request.gpus_per_node, nodes=request.nodes,
                  framework=framework, fuses=c.framework(framework).fuses,
                  sparse=request.sparse, params=dict(request.params))
    plan = entry.build(ctx)
    if "storage_gb_per_s" in ctx.params:
        ctx.read.add("storage_gb_per_s")
    if ctx.unknown():
        unknown = ctx.unknown()
        hint = ("; a bare YAML key n, y, on or off reads as a boolean: quote it"
                if {"true", "false", "True", "False"} & set(unknown) else "")
        raise PerfError(f"parameter {', '.join(unknown)} is not one of "
                        f"{request.workload}'s (it reads: {', '.join(sorted(ctx.read)) or 'none'})"
                        f"{hint}")
    if request.sparse and not eng.supports_sparse(ctx.precision.math_dtype):
        raise PerfError(f"{request.gpu} has no 2:4 sparse {request.precision} math")
    if request.mig_profile and plan.kind in ("training", "collective") and ctx.gpus > 1:
        raise PerfError("NCCL cannot communicate between MIG instances; use whole GPUs")
    return _assemble(request, framework, ctx, eng, plan, c)


def _check_node_size(request: PerfRequest, eng: Engine) -> None:
    """PerfError when a node is asked for more GPUs (or MIG slices) than its system has."""
    sys_spec = system_for(request.gpu)
    if sys_spec is None:
        return
    spec = _spec(request.gpu)
    per_gpu = spec.mig.compute_slices if request.mig_profile and spec.mig else 1
    most = sys_spec.gpu_count * per_gpu
    if request.gpus_per_node > most:
        what = f"{request.mig_profile} slices" if request.mig_profile else "GPUs"
        raise PerfError(f"gpus_per_node {request.gpus_per_node} exceeds the {most} {what} "
                        f"of one {sys_spec.name}")


def _spec(name: str) -> DeviceSpec:
    try:
        return device(name)
    except KeyError as err:
        raise PerfError(str(err.args[0])) from None


def _assemble(request: PerfRequest, framework: str, ctx: Context, eng: Engine, plan: StepPlan,
              c: PerfConstants) -> Prediction:
    if plan.kind == "collective":
        return _collective(request, framework, ctx, plan, c)
    fw = c.framework(framework)
    efficiency = c.tensor_efficiency(_spec(request.gpu).architecture, framework)
    host_s = fw.host_us_per_kernel * 1e-6
    micro = step_time(plan.ops, eng, ctx.precision.math_dtype, request.sparse, efficiency, c,
                      host_s)
    if plan.kind in ("gemm", "stream", "inference"):
        return _single_pass(request, framework, ctx, plan, micro)
    return _training(request, framework, ctx, eng, plan, micro, c)


def _breakdown(micro: StepTime, scale: float = 1.0, **extra: float) -> Breakdown:
    fields = {"compute_s": micro.compute_s * scale, "memory_s": micro.memory_s * scale,
              "overhead_s": micro.overhead_s * scale, "communication_exposed_s": 0.0,
              "communication_overlapped_s": 0.0, "optimizer_s": 0.0, "pipeline_bubble_s": 0.0,
              "io_s": 0.0, "io_exposed_s": 0.0}
    fields.update(extra)
    return Breakdown.model_validate(fields)


def _single_pass(request: PerfRequest, framework: str, ctx: Context, plan: StepPlan,
                 micro: StepTime) -> Prediction:
    """A kernel benchmark or an inference batch: every GPU (slice) runs its own copy."""
    t = micro.total_s
    return Prediction(
        request=request, framework=framework, gpus=ctx.gpus, samples_per_step=plan.samples,
        step_time_s=t, latency_s=t, samples_per_s=plan.samples * ctx.gpus / t,
        tflops=(plan.work_flops or micro.flops) / t / 1e12 if plan.kind != "stream" else None,
        bandwidth_gb_per_s=plan.work_bytes / t / 1e9 if plan.kind == "stream" else None,
        breakdown=_breakdown(micro), notes=plan.notes)


def _collective(request: PerfRequest, framework: str, ctx: Context, plan: StepPlan,
                c: PerfConstants) -> Prediction:
    times = [collective_time(call.kind, call.bytes, call.gpus_per_node, call.nodes,
                             request.gpu, c) for call in plan.comm]
    t = sum(x.time_s for x in times)
    busbw = times[0].busbw_gb_per_s if times else 0.0
    notes = plan.notes + tuple(f"NCCL {x.choice}" for x in times[:1])
    return Prediction(
        request=request, framework=framework, gpus=ctx.gpus, samples_per_step=1.0,
        step_time_s=t, latency_s=t, samples_per_s=1.0 / t if t else 0.0, busbw_gb_per_s=busbw,
        breakdown=_breakdown(StepTime(), communication_exposed_s=t), notes=notes)


def _training(request: PerfRequest, framework: str, ctx: Context, eng: Engine, plan: StepPlan,
              micro: StepTime, c: PerfConstants) -> Prediction:
    comm_micro = sum(
        collective_time(x.kind, x.bytes, x.gpus_per_node, x.nodes, request.gpu, c).time_s
        * x.count for x in plan.comm)
    micro_s = micro.total_s + comm_micro
    slots = plan.micro_batches + plan.pipeline_stages - 1 if plan.pipeline_stages > 1 \
        else plan.accumulation_steps
    bubble_s = (plan.pipeline_stages - 1) * micro_s if plan.pipeline_stages > 1 else 0.0
    # Only the last micro-step's backward can hide the all-reduce.
    sync = gradient_sync(plan, micro.by_phase_s.get("backward", 0.0), request.gpu, c)
    exposed, overlapped = sync.exposed_s, sync.overlapped_s
    fw = c.framework(framework)
    optimizer = step_time(plan.optimizer_ops, eng, ctx.precision.math_dtype, False, 1.0, c,
                          fw.host_us_per_kernel * 1e-6, fw.host_ms_per_step * 1e-3)
    step_s = slots * micro_s + exposed + optimizer.total_s
    step_s *= straggler_factor(plan.data_parallel[0] * plan.data_parallel[1], c)
    replicas = plan.data_parallel[0] * plan.data_parallel[1]
    samples = plan.samples * plan.accumulation_steps * replicas
    per_node = plan.samples * plan.accumulation_steps * plan.data_parallel[0]
    storage_gb_per_s = ctx.number("storage_gb_per_s", 0.0, minimum=1e-6) \
        if "storage_gb_per_s" in ctx.params else None
    read = node_read(per_node * plan.input_bytes_per_sample, request.gpu, request.epoch,
                     plan.dataset_gb, storage_gb_per_s, c)
    io_exposed = max(0.0, read.time_s - step_s)
    step_s += io_exposed
    steps = plan.accumulation_steps
    breakdown = _breakdown(
        micro, scale=steps, communication_exposed_s=exposed + comm_micro * slots,
        communication_overlapped_s=overlapped, optimizer_s=optimizer.total_s,
        pipeline_bubble_s=bubble_s, io_s=read.time_s, io_exposed_s=io_exposed)
    return Prediction(
        request=request, framework=framework, gpus=ctx.gpus, samples_per_step=samples,
        step_time_s=step_s, latency_s=micro_s, samples_per_s=samples / step_s,
        tflops=micro.flops * steps * ctx.gpus / step_s / 1e12, io_source=read.source,
        breakdown=breakdown, notes=plan.notes)
