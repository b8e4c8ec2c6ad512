"""Hand-computed checks of the roofline, the GEMM tiling choice and engine shares."""

from __future__ import annotations

import pytest

from gpumodel.gpus import device
from gpumodel.perf.calibration import constants
from gpumodel.perf.engine import engine, precision
from gpumodel.perf.errors import PerfError
from gpumodel.perf.roofline import elementwise, gemm, gemm_machine, op_time
from gpumodel.perf.tiling import (
    GemmMachine,
    Tiling,
    best_tiling,
    candidate_time,
    candidates,
    feed_share,
)


def _machine(device: str = "a100-40gb", dtype: str = "fp16", efficiency: float = 0.8
             ) -> GemmMachine:
    c = constants()
    return gemm_machine(engine(device, None, c), dtype, False, efficiency, c)  # type: ignore[arg-type]


def test_full_waves_by_hand() -> None:
    # 6912 x 16384 in 256x128 tiles = 27 x 128 = 3456 blocks = 32 waves of 108 SMs exactly
    c = constants()
    mach = _machine()
    t = candidate_time(6912, 16384, 2048, 1, Tiling(256, 128, 1), mach, c)
    block = 2 * 256 * 128 * 2048 / (312e12 * 0.8 / 108) + c.scalar("gemm_block_latency_us") * 1e-6
    assert t == pytest.approx(32 * block)


def test_the_library_picks_the_fastest_candidate() -> None:
    c = constants()
    mach = _machine()
    best = best_tiling(8192, 8192, 8192, 1, mach, c)
    assert all(best.time_s <= candidate_time(8192, 8192, 8192, 1, t, mach, c)
               for t in candidates(c))
    assert best.tiling.split_k == 1  # 4096+ tiles fill the GPU without splitting K


def test_a_small_deep_gemm_splits_k() -> None:
    # 128 x 1024 output is 8-16 blocks for 108 SMs: splitting the 8192-deep K fills them
    choice = best_tiling(128, 1024, 8192, 1, _machine(), constants())
    assert choice.tiling.split_k > 1


def test_small_tiles_cannot_feed_tensor_cores() -> None:
    knee = constants().scalar("gemm_feed_intensity")
    assert feed_share(128, 128, knee, tensor=True) == 1.0
    assert feed_share(64, 64, knee, tensor=True) == pytest.approx(32 / knee)
    assert feed_share(64, 64, knee, tensor=False) == 1.0


def test_compute_bound_gemm_time_by_hand() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    op = gemm("g", 6912, 16384, 2048, 2.0)
    t = op_time(op, eng, "fp16", False, 0.8, c)
    assert t.memory_s == 0.0
    assert t.compute_s == pytest.approx(best_tiling(6912, 16384, 2048, 1, _machine(), c).time_s)
    assert t.compute_s >= 2 * 6912 * 16384 * 2048 / (312e12 * 0.8)
    assert t.overhead_s == pytest.approx(c.scalar("kernel_overhead_us") * 1e-6)


def test_memory_bound_kernel_time_by_hand() -> None:
    c = constants()
    eng = engine("v100-16gb", None, c)
    op = elementwise("e", 1e9, 2.0)  # 2 GB read + 2 GB write, far larger than L2
    t = op_time(op, eng, "fp16", False, 0.8, c)
    assert t.compute_s == 0.0
    assert t.memory_s == pytest.approx(4e9 / (900e9 * c.by_architecture("hbm_efficiency",
                                                                          "volta")))


def test_l2_resident_inputs_cost_no_hbm_reads() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    small = elementwise("e", 1e6, 2.0)  # 4 MB working set fits in 40 MB of L2
    t = op_time(small, eng, "fp16", False, 0.8, c)
    assert t.memory_s == pytest.approx(2e6 / (1555e9 * c.by_architecture("hbm_efficiency",
                                                                           "ampere")))


def test_sparsity_doubles_only_weight_gemms() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    weights = gemm("w", 8192, 8192, 8192, 1.0, sparse_ok=True)
    activations = gemm("a", 8192, 8192, 8192, 1.0)
    dense = op_time(weights, eng, "int8", False, 0.8, c).compute_s
    sparse = op_time(weights, eng, "int8", True, 0.8, c).compute_s
    assert dense / 2 < sparse < dense * 0.51  # the MACs halve, a block's fixed latency does not
    assert op_time(activations, eng, "int8", True, 0.8, c).compute_s == pytest.approx(dense)


def test_simt_math_ignores_the_framework_factor() -> None:
    c = constants()
    eng = engine("v100-16gb", None, c)
    op = gemm("g", 8192, 8192, 8192, 4.0)
    assert op_time(op, eng, "fp32", False, 0.1, c).compute_s == pytest.approx(
        op_time(op, eng, "fp32", False, 0.9, c).compute_s)
    simt = gemm_machine(eng, "fp32", False, c.scalar("simt_efficiency"), c)
    assert op_time(op, eng, "fp32", False, 0.1, c).compute_s == pytest.approx(
        best_tiling(8192, 8192, 8192, 1, simt, c).time_s)


def test_mig_slice_shares() -> None:
    c = constants()
    full = engine("a100-40gb", None, c)
    one = engine("a100-40gb", "1g.5gb", c)
    three = engine("a100-40gb", "3g.20gb", c)
    assert one.sms == 14 and three.sms == 42
    assert one.peak_tflops("fp16") == pytest.approx(312 * 14 / 108)
    assert one.hbm_gb_per_s == pytest.approx(full.hbm_gb_per_s / 8)
    assert three.hbm_gb_per_s == pytest.approx(full.hbm_gb_per_s / 2)
    assert one.l2_cache_mib == pytest.approx(5.0)
    ci = engine("a100-40gb", "1c.3g.20gb", c)  # a compute instance shares its GI's memory
    assert ci.sms == 14 and ci.hbm_gb_per_s == three.hbm_gb_per_s


def test_power_limited_board_runs_below_boost() -> None:
    c = constants()
    t4 = engine("t4", None, c)
    assert t4.peak_tflops("fp16") == pytest.approx(65 * c.table("sustained_clock_fraction", "t4"))
    assert engine("a100-40gb", None, c).clock_fraction == 1.0


@pytest.mark.parametrize(("gpu", "dtype"), [("v100-16gb", "tf32"), ("t4", "bf16")])
def test_missing_math_is_refused(gpu: str, dtype: str) -> None:
    with pytest.raises(PerfError, match=dtype):
        precision(dtype, device(gpu))


@pytest.mark.parametrize(("gpu", "profile"), [("v100-16gb", "1g.5gb"), ("a100-40gb", "1g.10gbx"),
                                              ("a100-40gb", "2g.5gb")])
def test_bad_mig_requests_are_refused(gpu: str, profile: str) -> None:
    with pytest.raises(PerfError):
        engine(gpu, profile, constants())
