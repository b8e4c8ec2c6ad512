"""Per-operator roofline: how long one kernel takes on one engine.

Why per operator rather than per model: a step mixes tensor-core GEMMs that are
compute bound, elementwise kernels that are HBM bound and, at small batch,
kernels too small to fill the GPU. Summing ``max(compute, memory) + overhead``
over the operators of a step captures all three, and a MIG slice or a smaller
batch changes exactly the terms physics says it should.

Size-dependent efficiency comes from the grid, not from a curve: a GEMM is cut
into thread-block tiles spread in waves over the SMs, with the tile shape and
split-K chosen per problem as the library does (:mod:`gpumodel.perf.tiling`).
That is why a small batch leaves most of a full A100 idle while a 14-SM slice
stays busy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gpumodel.gpus import Dtype
from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.engine import Engine
from gpumodel.perf.tiling import GemmMachine, best_tiling

Phase = Literal["forward", "backward", "optimizer", "other"]

# Dtypes computed on CUDA cores (or CPU vector units) rather than tensor cores.
SIMT_DTYPES = frozenset({"fp32", "fp64"})


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel (or ``count`` identical kernels) of a step on one device.

    ``flops`` and ``bytes`` are per kernel. A GEMM carries its shape
    (``m`` x ``n`` x ``k``, ``batch`` independent problems) for the tiling choice;
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


def gemm_machine(eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
                 c: PerfConstants) -> GemmMachine:
    """What :mod:`gpumodel.perf.tiling` needs to choose a GEMM's tiling on ``eng``."""
    tensor = dtype not in SIMT_DTYPES
    rate = eng.peak_tflops(dtype, sparse) * 1e12 * efficiency
    partial = eng.hbm_bytes_per_s(c)
    return GemmMachine(sms=eng.sms, flops_per_s=rate, tensor=tensor,
                       partial_bytes_per_s=partial)


def math_time(op: Op, eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
              c: PerfConstants) -> float:
    """Seconds of math of one ``op`` kernel: the best tiling for a GEMM, else its FLOPs at rate.

    ``efficiency`` is the kernel library's share of the tensor-core peak; math on
    CUDA cores (or a CPU) runs at the SIMT efficiency instead.
    """
    if dtype in SIMT_DTYPES or eng.kind == "cpu":
        efficiency = c.scalar("simt_efficiency")
    use_sparse = sparse and op.sparse_ok and eng.supports_sparse(dtype)
    if op.m and eng.kind == "gpu":
        mach = gemm_machine(eng, dtype, use_sparse, efficiency, c)
        # An op may do more (two chained GEMMs in fused attention) or less (Winograd)
        # math than its tiled shape: scale the tiled time by the ratio.
        shape_flops = 2.0 * op.m * op.n * op.k * op.batch
        tiled_s = best_tiling(op.m, op.n, op.k, op.batch, mach, c).time_s
        return tiled_s * (op.flops / shape_flops)
    return op.flops / (eng.peak_tflops(dtype, use_sparse) * 1e12 * efficiency)


def op_time(op: Op, eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
            c: PerfConstants) -> OpTime:
    """Roofline time of ``op``: ``count * (max(math, memory) + kernel overhead)`` on the GPU."""
    bandwidth = eng.hbm_bytes_per_s(c)
    hbm_bytes = op.bytes
    if op.reuse_bytes and op.bytes <= eng.l2_cache_mib * 2**20:
        hbm_bytes -= op.reuse_bytes  # its inputs were just written and are still in L2
    memory_s = hbm_bytes / bandwidth
    compute_s = math_time(op, eng, dtype, sparse, efficiency, c) if op.flops and op.math \
        else 0.0
    overhead_s = c.scalar("kernel_overhead_us") * 1e-6 * op.count
    if compute_s >= memory_s:
        return OpTime(compute_s * op.count, 0.0, overhead_s)
    return OpTime(0.0, memory_s * op.count, overhead_s)


def step_time(ops: tuple[Op, ...], eng: Engine, dtype: Dtype, sparse: bool, efficiency: float,
              c: PerfConstants, host_s_per_kernel: float = 0.0,
              host_s_fixed: float = 0.0) -> StepTime:
    """Sum of :func:`op_time` over ``ops``, waiting for the host where it launches too slowly.

    An eager framework's host thread spends ``host_s_per_kernel`` launching each
    kernel into CUDA's asynchronous queue (and ``host_s_fixed`` once per pass),
    so the host runs ahead while kernels are long and the GPU idles when they
    are short: the pass takes the longer of the GPU's busy time and the host's
    time (the excess counts as overhead).
    """
    total = StepTime()
    for op in ops:
        total.add(op, op_time(op, eng, dtype, sparse, efficiency, c))
    host_s = host_s_per_kernel * sum(op.count for op in ops) + host_s_fixed
    if host_s > total.total_s:
        total.overhead_s += host_s - total.total_s
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
