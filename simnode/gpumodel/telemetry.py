"""What a GPU's counters would read while a workload runs: the model behind dgxsim's DCGM metrics.

dcgm-exporter reads counters the hardware keeps; dgxsim has no hardware, so it
derives them from what it knows about the work: the performance model's
breakdown of one step (how much of it is compute, memory-bound kernels,
communication, host overhead, I/O) gives the share of time the graphics engine,
the tensor pipe and the memory interface are busy and how much data crosses
NVLink; the board's catalog telemetry (idle power, temperatures, clocks) and
its TDP turn that into power, temperature and clocks. The rules, each stated
where it is applied:

* GPU utilisation is the share of time a kernel runs: compute, memory-bound
  kernels, the optimizer and exposed communication (NCCL runs as kernels);
  host overhead, pipeline bubbles and exposed I/O leave the GPU idle.
* The tensor pipe is active during compute when the precision runs on tensor
  cores; the memory interface during memory-bound kernels (lower bounds: DCGM
  would also count the memory traffic of compute-bound kernels).
* NVLink carries the job's collectives for the time they run, at the link's
  per-direction rate, when the job spans more than one GPU.
* Power rises from idle towards the TDP with the engine, tensor and memory
  activity (weights below); temperature follows power linearly between the
  board's idle and full-load temperatures; the SM clock boosts while busy.
* A device held by a pod whose workload dgxsim does not know (a pod with only
  a ``dgxsim.io/duration``) counts as fully busy, pipes unknown (0).

Pure functions of the catalog and the prediction; no I/O.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.gpus import DeviceSpec, TelemetrySpec

TENSOR_PRECISIONS: Final = frozenset({"tf32", "fp16", "bf16", "int8", "int4", "fp64_tc"})
"""Precisions whose math runs on tensor cores (A100 and later; V100 for fp16 only)."""
POWER_WEIGHTS: Final = {"engine": 0.45, "tensor": 0.35, "dram": 0.20}
"""Share of the board's dynamic power (TDP minus idle) drawn by a fully busy graphics
engine, tensor pipe and memory interface; a dense GEMM that keeps all three busy
reaches the TDP, a memory-bound kernel about two thirds of it."""
HELD_FRAMEBUFFER_SHARE: Final = 0.9
"""Share of its memory a running workload holds: frameworks' caching allocators
reserve most of the device at start."""


class Activity(BaseModel):
    """How busy one device (a GPU or a MIG instance) is, as DCGM's profiling counters
    report it: ratios of time in 0..1, bytes per second, and the framebuffer share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: float = Field(default=0.0, ge=0.0, le=1.0)
    tensor: float = Field(default=0.0, ge=0.0, le=1.0)
    dram: float = Field(default=0.0, ge=0.0, le=1.0)
    nvlink_bytes_per_s: float = Field(default=0.0, ge=0.0)
    framebuffer_share: float = Field(default=0.0, ge=0.0, le=1.0)

    @property
    def busy(self) -> bool:
        return self.engine > 0.0


IDLE: Final = Activity()
HELD_UNKNOWN: Final = Activity(engine=1.0, framebuffer_share=HELD_FRAMEBUFFER_SHARE)
"""A device held by a pod whose workload dgxsim cannot time."""


def _ratio(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole)) if whole > 0 else 0.0


def activity_of_step(step_s: float, compute_s: float, memory_s: float, optimizer_s: float,
                     communication_s: float, communication_exposed_s: float, precision: str,
                     link_bytes_per_s: float, gpus: int) -> Activity:
    """The activity of one device of a job from the performance model's step breakdown
    (seconds of one step; ``communication_s`` is exposed plus overlapped)."""
    running = compute_s + memory_s + optimizer_s + communication_exposed_s
    tensor = _ratio(compute_s, step_s) if precision in TENSOR_PRECISIONS else 0.0
    nvlink = link_bytes_per_s * _ratio(communication_s, step_s) if gpus > 1 else 0.0
    return Activity(engine=_ratio(running, step_s), tensor=tensor,
                    dram=_ratio(memory_s, step_s), nvlink_bytes_per_s=nvlink,
                    framebuffer_share=HELD_FRAMEBUFFER_SHARE)


def link_bytes_per_s(spec: DeviceSpec) -> float:
    """One GPU's NVLink rate in one direction (12 x 25 GB/s on an A100)."""
    if spec.nvlink is None:
        return 0.0
    return spec.nvlink.links * spec.nvlink.gb_per_s_per_link_per_direction * 1e9


def gpu_load(parts: list[tuple[Activity, float, float]]) -> Activity:
    """A whole GPU's activity from its devices: (activity, compute share, memory share)
    per MIG instance (1.0, 1.0 for a whole GPU); engine and tensor weigh by compute
    share, the memory interface by memory share."""
    return Activity(
        engine=min(1.0, sum(a.engine * c for a, c, _ in parts)),
        tensor=min(1.0, sum(a.tensor * c for a, c, _ in parts)),
        dram=min(1.0, sum(a.dram * m for a, _, m in parts)),
        nvlink_bytes_per_s=sum(a.nvlink_bytes_per_s for a, _, _ in parts),
        framebuffer_share=min(1.0, sum(a.framebuffer_share * m for a, _, m in parts)))


def power_w(spec: DeviceSpec, load: Activity) -> float:
    """Board power: idle plus the busy units' share of the dynamic range up to the TDP."""
    idle = _telemetry(spec).idle_power_w
    share = (POWER_WEIGHTS["engine"] * load.engine + POWER_WEIGHTS["tensor"] * load.tensor
             + POWER_WEIGHTS["dram"] * load.dram)
    return idle + (spec.tdp_w - idle) * min(1.0, share)


def temperature_c(spec: DeviceSpec, power: float) -> float:
    """GPU temperature, linear in power between idle and the TDP."""
    t = _telemetry(spec)
    share = _ratio(power - t.idle_power_w, spec.tdp_w - t.idle_power_w)
    return t.idle_temp_c + (t.full_load_temp_c - t.idle_temp_c) * share


def sm_clock_mhz(spec: DeviceSpec, load: Activity) -> int:
    """The boost clock while a kernel runs, the idle clock otherwise."""
    return spec.boost_clock_mhz if load.busy else _telemetry(spec).idle_sm_clock_mhz


def _telemetry(spec: DeviceSpec) -> TelemetrySpec:
    if spec.telemetry is None:
        raise ValueError(f"{spec.name}: the catalog has no telemetry for this device")
    return spec.telemetry
