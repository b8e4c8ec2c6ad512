"""Per-operator roofline: how long one kernel takes on one engine.

Why per operator rather than per model: a step mixes tensor-core GEMMs that are
compute bound, elementwise kernels that are HBM bound and, at small batch,
kernels too small to fill the GPU. Summing ``max(compute, memory) + overhead``
over the operators of a step captures all three, and a MIG slice or a smaller
batch changes exactly the terms physics says it should.

Size-dependent efficiency comes from the grid, not from a curve: a GEMM is cut
into 128x128 output tiles, spread in waves over the SMs (split along K when
there are fewer tiles than SMs), and the last, partly filled wave costs a whole
wave. That is why a small batch leaves most of a full A100 idle while a 14-SM
slice stays busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from gpumodel.gpus import Dtype
from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.engine import Engine

Phase = Literal["forward", "backward", "optimizer", "other"]

# Dtypes computed on CUDA cores (or CPU vector units) rather than tensor cores.
SIMT_DTYPES = frozenset({"fp32", "fp64"})


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel (or ``count`` identical kernels) of a step on one device.

    ``flops`` and ``bytes`` are per kernel. A GEMM carries its shape
    (``m`` x ``n`` x ``k``, ``batch`` independent problems) for wave quantization;
    other kernels carry ``m == 0`` and are timed by their bytes. ``sparse_ok``
    marks a GEMM whose weights may be 2:4 sparse (never activation x activation).
    """

    name: str
    flops: float
    bytes: float
    count: float = 1.0
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 1
    phase: Phase = "forward"
    sparse_ok: bool = False
    math: bool = True
    reuse_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class OpTime:
    """Time of all ``count`` kernels of one op, split by what bounds it."""

    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.memory_s + self.overhead_s


@dataclass(slots=True)
class StepTime:
    """Sum of op times, by bound and by phase (mutable accumulator on the hot path)."""

    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    by_phase_s: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0

    @property
    def total_s(self) -> float:
        return self.compute_s + self.memory_s + self.overhead_s

    def add(self, op: Op, t: OpTime) -> None:
        self.compute_s += t.compute_s
        self.memory_s += t.memory_s
        self.overhead_s += t.overhead_s
        self.by_phase_s[op.phase] = self.by_phase_s.get(op.phase, 0.0) + t.total_s
        self.flops += op.flops * op.count


def gemm_utilization(m: int, n: int, k: int, batch: int, sms: int, c: PerfConstants) -> float:
    """Share of the engine's math peak a GEMM's grid can use (tile padding x wave fill)."""
    tile = int(c.scalar("gemm_tile"))
    tiles_m, tiles_n = math.ceil(m / tile), math.ceil(n / tile)
    padding = (m * n) / (tiles_m * tiles_n * tile * tile)
    tiles = tiles_m * tiles_n * batch
    split = 1
    if tiles < sms:
        split = max(1, min(sms // tiles, k // int(c.scalar("split_k_min_depth"))))
    work = tiles * split
    waves = math.ceil(work / sms)
    return padding * work / (waves * sms)


def op_time(op: Op, eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
            c: PerfConstants, dispatch_s: float = 0.0) -> OpTime:
    """Roofline time of ``op``: ``count * (max(compute, memory) + kernel overhead)``.

    ``efficiency`` is the framework's share of the tensor-core peak; math on CUDA
    cores runs at the SIMT efficiency instead, whatever the framework.
    """
    bandwidth = eng.hbm_gb_per_s * 1e9 * c.scalar("hbm_efficiency")
    hbm_bytes = op.bytes
    if op.reuse_bytes and op.bytes <= eng.l2_cache_mib * 2**20:
        hbm_bytes -= op.reuse_bytes  # its inputs were just written and are still in L2
    memory_s = hbm_bytes / bandwidth
    compute_s = 0.0
    if op.flops and op.math:
        if dtype in SIMT_DTYPES or eng.kind == "cpu":
            efficiency = c.scalar("simt_efficiency")
        peak = eng.peak_tflops(dtype, sparse and op.sparse_ok and eng.supports_sparse(dtype))
        utilization = 1.0
        if op.m and eng.kind == "gpu":
            utilization = gemm_utilization(op.m, op.n, op.k, op.batch, eng.sms, c)
        compute_s = op.flops / (peak * 1e12 * efficiency * utilization)
    overhead_s = c.scalar("kernel_overhead_us") * 1e-6
    # An eager framework's host thread needs dispatch_s per kernel; a GPU kernel
    # shorter than that leaves the GPU waiting for the next launch.
    busy_s = max(compute_s, memory_s)
    if busy_s + overhead_s < dispatch_s:
        overhead_s = dispatch_s - busy_s
    if compute_s >= memory_s:
        return OpTime(compute_s * op.count, 0.0, overhead_s * op.count)
    return OpTime(0.0, memory_s * op.count, overhead_s * op.count)


def step_time(ops: tuple[Op, ...], eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
              c: PerfConstants, dispatch_s: float = 0.0) -> StepTime:
    """Sum of :func:`op_time` over ``ops``."""
    total = StepTime()
    for op in ops:
        total.add(op, op_time(op, eng, dtype, sparse, efficiency, c, dispatch_s))
    return total


def gemm(name: str, m: int, n: int, k: int, element_bytes: float, *, batch: int = 1,
         count: float = 1.0, phase: Phase = "forward", sparse_ok: bool = False,
         weight_bytes: float | None = None) -> Op:
    """A GEMM ``C[m,n] = A[m,k] @ B[k,n]`` (``batch`` of them): 2mnk FLOPs, A+B+C bytes."""
    b_bytes = element_bytes if weight_bytes is None else weight_bytes
    traffic = batch * ((m * k + m * n) * element_bytes + k * n * b_bytes)
    return Op(name=name, flops=2.0 * m * n * k * batch, bytes=traffic, count=count,
              m=m, n=n, k=k, batch=batch, phase=phase, sparse_ok=sparse_ok)


def elementwise(name: str, elements: float, element_bytes: float, *, reads: float = 1.0,
                writes: float = 1.0, count: float = 1.0, phase: Phase = "forward") -> Op:
    """A memory-bound kernel touching ``elements`` with ``reads`` + ``writes`` passes."""
    return Op(name=name, flops=0.0, bytes=elements * element_bytes * (reads + writes),
              count=count, phase=phase, math=False, reuse_bytes=elements * element_bytes * reads)
