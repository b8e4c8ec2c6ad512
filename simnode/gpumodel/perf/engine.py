"""The execution engine a workload runs on: a whole device or one MIG slice of it.

Why a separate notion from :class:`gpumodel.gpus.DeviceSpec`: the model never
runs on a data sheet but on what a process sees. A MIG slice sees its share of
the SMs (and so of every math peak) and its share of the memory slices (and so
of HBM bandwidth, L2 and capacity), with no interference from its neighbours,
as NVIDIA's MIG isolation promises. A power-limited board (the 70 W T4) cannot
hold its boost clock under tensor load; that one fitted fraction scales its math.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from gpumodel.errors import GpuModelError
from gpumodel.gpus import DeviceSpec, Dtype, device
from gpumodel.mig import MigProfile, profile_table
from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.errors import PerfError

PRECISIONS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")

# Bytes of one activation element, and of one gradient element when gradients
# travel in the training precision, per precision.
_ACTIVATION_BYTES = {"fp64": 8.0, "fp32": 4.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0,
                     "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True, slots=True)
class Precision:
    """How a precision maps onto hardware: the math dtype whose peak applies and element sizes."""

    name: str
    math_dtype: Dtype
    activation_bytes: float

    @property
    def is_integer(self) -> bool:
        return self.name in ("int8", "int4")


def precision(name: str, spec: DeviceSpec) -> Precision:
    """The math dtype and element size of ``name`` on ``spec``; PerfError if the device lacks it."""
    if name not in _ACTIVATION_BYTES:
        raise PerfError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    dtype: Dtype = name  # type: ignore[assignment]  # every precision name is a Dtype
    if dtype not in spec.peak_tflops:
        raise PerfError(f"{spec.name} has no {name} math (peaks: "
                        f"{', '.join(sorted(spec.peak_tflops))})")
    return Precision(name=name, math_dtype=dtype, activation_bytes=_ACTIVATION_BYTES[name])


@dataclass(frozen=True, slots=True)
class Engine:
    """What one process can use: SMs, math peaks, memory bandwidth and capacity."""

    device: str
    architecture: str
    mig_profile: str | None
    kind: str
    sms: int
    sm_fraction: float
    memory_fraction: float
    clock_fraction: float
    hbm_gb_per_s: float
    memory_gb: float
    l2_cache_mib: float

    def peak_tflops(self, dtype: Dtype, sparse: bool = False) -> float:
        """Math peak of this engine in TFLOPS (TOPS): device peak x SM share x sustained clock."""
        full = device(self.device).peak(dtype, sparse)
        return full * self.sm_fraction * self.clock_fraction

    def hbm_bytes_per_s(self, c: PerfConstants) -> float:
        """Bandwidth framework kernels reach from HBM (data sheet x the architecture's share)."""
        return self.hbm_gb_per_s * 1e9 * c.by_architecture("hbm_efficiency", self.architecture)

    def supports_sparse(self, dtype: Dtype) -> bool:
        return dtype in device(self.device).sparse_dtypes


def _slice_shares(spec: DeviceSpec, profile_text: str) -> tuple[int, int, float]:
    """(SMs, memory slices, memory GB) of a MIG profile on ``spec`` from the profile table."""
    if spec.mig is None:
        raise PerfError(f"{spec.name} does not support MIG")
    try:
        parsed = MigProfile.parse(profile_text)
        gi = profile_table(spec.name).get(str(parsed.gpu_instance))
    except GpuModelError as err:
        raise PerfError(str(err)) from None
    sms = parsed.compute_slices * spec.mig.sms_per_compute_slice
    return sms, gi.memory_slices, gi.memory_mib * 2**20 / 1e9


@cache
def engine(device_name: str, mig_profile: str | None, constants: PerfConstants) -> Engine:
    """The engine of a whole ``device_name`` or of one ``mig_profile`` slice of it."""
    try:
        spec = device(device_name)
    except KeyError as err:
        raise PerfError(str(err.args[0])) from None
    clock = constants.table("sustained_clock_fraction", spec.name, default=1.0)
    if spec.kind == "cpu":
        return Engine(device=spec.name, architecture=spec.architecture, mig_profile=None,
                      kind="cpu", sms=max(spec.cores, 1),
                      sm_fraction=1.0, memory_fraction=1.0, clock_fraction=clock,
                      hbm_gb_per_s=spec.hbm_gb_per_s, memory_gb=spec.memory_gb,
                      l2_cache_mib=spec.l2_cache_mib)
    if not mig_profile:
        return Engine(device=spec.name, architecture=spec.architecture, mig_profile=None,
                      kind="gpu", sms=spec.sms,
                      sm_fraction=1.0, memory_fraction=1.0, clock_fraction=clock,
                      hbm_gb_per_s=spec.hbm_gb_per_s, memory_gb=spec.memory_gb,
                      l2_cache_mib=spec.l2_cache_mib)
    sms, memory_slices, memory_gb = _slice_shares(spec, mig_profile)
    assert spec.mig is not None
    share = memory_slices / spec.mig.memory_slices
    return Engine(device=spec.name, architecture=spec.architecture, mig_profile=mig_profile,
                  kind="gpu", sms=sms,
                  sm_fraction=sms / spec.sms, memory_fraction=share, clock_fraction=clock,
                  hbm_gb_per_s=spec.hbm_gb_per_s * share, memory_gb=memory_gb,
                  l2_cache_mib=spec.l2_cache_mib * share)


def ceil_div(a: float, b: float) -> int:
    return math.ceil(a / b)
