"""How long a GEMM's math takes: the library's choice among tile shapes and split-K.

Why a choice and not one tiling: a fixed 128x128 tiling makes time depend on
how the output happens to divide into waves of thread blocks, so a GEMM that
grows by one tile can need a whole extra wave and run *faster per FLOP* one
step earlier than the next (the sawtooth a fixed tiling produces). cuBLAS and
CUTLASS instead ship kernels for several thread-block tiles and split the K
dimension across blocks when there are too few output tiles to fill the GPU,
and pick one per problem by heuristic or by timing. The model does the same:
the GEMM's math time is the minimum over candidate (tile, split-K) choices.

Why the minimum is monotone: every candidate's cost is non-decreasing in m, n
and k (tiles and waves only grow with m and n, the K slice only with k, the
split-K reduction only with m and n), and the minimum of non-decreasing
functions is non-decreasing. A bigger problem can therefore never take less
time, and achieved TFLOPS are as smooth as the menu of tiles makes them.

Each candidate's cost:

* a thread block computes a ``tm x tn`` tile over a K slice rounded up to the
  K step of the kernel; it runs at the SM's share of the engine's math rate,
  lowered when the tile is too small to feed the tensor cores (operand bytes per
  MAC grow as ``1/tm + 1/tn``), plus a fixed latency (first loads from HBM,
  epilogue stores);
* blocks run in waves of one per SM; the last, partial wave costs a full wave;
* split-K writes ``split`` partial tiles in FP32 and reduces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from gpumodel.perf.calibration import PerfConstants

# Bytes of one FP32 partial-sum element written and read back by split-K.
_PARTIAL_BYTES = 4.0


@dataclass(frozen=True, slots=True)
class Tiling:
    """One kernel choice: thread-block tile ``tile_m`` x ``tile_n``, K split ``split_k`` ways."""

    tile_m: int
    tile_n: int
    split_k: int


@dataclass(frozen=True, slots=True)
class GemmChoice:
    """The chosen tiling and the math time it gives (seconds, without kernel overhead)."""

    tiling: Tiling
    time_s: float


@dataclass(frozen=True, slots=True)
class GemmMachine:
    """What the tiling choice needs to know of an engine and a library (all hashable)."""

    sms: int
    flops_per_s: float
    """Achievable math rate of the whole engine (peak x library efficiency)."""
    tensor: bool
    """Tensor-core math, whose operand feed small tiles cannot sustain."""
    partial_bytes_per_s: float
    """Bandwidth at which split-K partial sums are written and re-read."""


def feed_share(tile_m: int, tile_n: int, knee: float, tensor: bool) -> float:
    """Share of the SM's math rate a tile keeps busy (1 once its operand reuse passes the knee).

    A tile reuses each loaded A element ``tile_n`` times and each B element
    ``tile_m`` times, so it needs ``1/tile_m + 1/tile_n`` operand elements per
    MAC; below the knee intensity the SM's operand feed, not its tensor cores,
    sets the pace. CUDA-core math is too slow for the feed ever to limit it.
    """
    if not tensor:
        return 1.0
    intensity = tile_m * tile_n / (tile_m + tile_n)
    return min(1.0, intensity / knee)


def candidate_time(m: int, n: int, k: int, batch: int, t: Tiling, mach: GemmMachine,
                   c: PerfConstants) -> float:
    """Math time of one candidate tiling; non-decreasing in m, n and k."""
    k_step = int(c.scalar("gemm_k_step"))
    tiles = math.ceil(m / t.tile_m) * math.ceil(n / t.tile_n) * batch
    waves = math.ceil(tiles * t.split_k / mach.sms)
    depth = k_step * max(1, math.ceil(k / (t.split_k * k_step)))
    sm_rate = mach.flops_per_s / mach.sms
    share = feed_share(t.tile_m, t.tile_n, c.scalar("gemm_feed_intensity"), mach.tensor)
    block_s = 2.0 * t.tile_m * t.tile_n * depth / (sm_rate * share)
    block_s += c.scalar("gemm_block_latency_us") * 1e-6
    reduce_s = 0.0
    if t.split_k > 1:  # write split partial tiles, read them back once
        reduce_s = 2.0 * t.split_k * m * n * batch * _PARTIAL_BYTES / mach.partial_bytes_per_s
    return waves * block_s + reduce_s


def candidates(c: PerfConstants) -> tuple[Tiling, ...]:
    """Every (tile, split-K) the library may pick, from ``perf-constants.yaml``."""
    return _candidates(c)


@lru_cache(maxsize=16)
def _candidates(c: PerfConstants) -> tuple[Tiling, ...]:
    menu = c.gemm_kernels
    return tuple(Tiling(tm, tn, s) for tm, tn in menu.tiles for s in menu.split_k)


@lru_cache(maxsize=65536)
def best_tiling(m: int, n: int, k: int, batch: int, mach: GemmMachine,
                c: PerfConstants) -> GemmChoice:
    """The fastest candidate for this problem on this engine (cached: graphs repeat shapes)."""
    best: GemmChoice | None = None
    for t in candidates(c):
        time_s = candidate_time(m, n, k, batch, t, mach, c)
        if best is None or time_s < best.time_s:
            best = GemmChoice(tiling=t, time_s=time_s)
    assert best is not None, "perf-constants.yaml lists no GEMM tiles"
    return best
