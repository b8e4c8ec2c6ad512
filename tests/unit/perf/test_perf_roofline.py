"""Hand-computed checks of the roofline, wave quantization and engine shares."""

from __future__ import annotations

import pytest

from gpumodel.gpus import device
from gpumodel.perf.calibration import constants
from gpumodel.perf.engine import engine, precision
from gpumodel.perf.errors import PerfError
from gpumodel.perf.roofline import elementwise, gemm, gemm_utilization, op_time


def test_full_waves_use_the_whole_gpu() -> None:
    # 6912 x 16384 in 128x128 tiles = 54 x 128 = 6912 tiles = 64 waves of 108 SMs exactly
    assert gemm_utilization(6912, 16384, 2048, 1, 108, constants()) == pytest.approx(1.0)


def test_partial_last_wave_costs_a_whole_wave() -> None:
    # 8192^2 -> 64 x 64 = 4096 tiles; 38 waves of 108 = 4104 slots
    assert gemm_utilization(8192, 8192, 8192, 1, 108, constants()) == pytest.approx(4096 / 4104)


def test_small_gemm_splits_k_to_fill_the_sms() -> None:
    # 128 x 1024: 8 tiles; split-K by min(108 // 8, 1024 // 256) = 4 -> 32 of 108 SMs busy
    assert gemm_utilization(128, 1024, 1024, 1, 108, constants()) == pytest.approx(32 / 108)


def test_tile_padding_is_wasted() -> None:
    # n = 64 fills half of a 128-wide tile; 8 tiles, split-K by 14 // 8 = 1 -> 8 of 14 SMs
    util = gemm_utilization(1024, 64, 1024, 1, 14, constants())
    assert util == pytest.approx(0.5 * 8 / 14)


def test_compute_bound_gemm_time_by_hand() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    op = gemm("g", 6912, 16384, 2048, 2.0)
    t = op_time(op, eng, "fp16", False, 0.8, c)
    expected = 2 * 6912 * 16384 * 2048 / (312e12 * 0.8)
    assert t.memory_s == 0.0
    assert t.compute_s == pytest.approx(expected)
    assert t.overhead_s == pytest.approx(c.scalar("kernel_overhead_us") * 1e-6)


def test_memory_bound_kernel_time_by_hand() -> None:
    c = constants()
    eng = engine("v100-16gb", None, c)
    op = elementwise("e", 1e9, 2.0)  # 2 GB read + 2 GB write, far larger than L2
    t = op_time(op, eng, "fp16", False, 0.8, c)
    assert t.compute_s == 0.0
    assert t.memory_s == pytest.approx(4e9 / (900e9 * c.scalar("hbm_efficiency")))


def test_l2_resident_inputs_cost_no_hbm_reads() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    small = elementwise("e", 1e6, 2.0)  # 4 MB working set fits in 40 MB of L2
    t = op_time(small, eng, "fp16", False, 0.8, c)
    assert t.memory_s == pytest.approx(2e6 / (1555e9 * c.scalar("hbm_efficiency")))


def test_sparsity_doubles_only_weight_gemms() -> None:
    c = constants()
    eng = engine("a100-40gb", None, c)
    weights = gemm("w", 8192, 8192, 8192, 1.0, sparse_ok=True)
    activations = gemm("a", 8192, 8192, 8192, 1.0)
    dense = op_time(weights, eng, "int8", False, 0.8, c).compute_s
    assert op_time(weights, eng, "int8", True, 0.8, c).compute_s == pytest.approx(dense / 2)
    assert op_time(activations, eng, "int8", True, 0.8, c).compute_s == pytest.approx(dense)


def test_simt_math_ignores_the_framework_factor() -> None:
    c = constants()
    eng = engine("v100-16gb", None, c)
    op = gemm("g", 8192, 8192, 8192, 4.0)
    t = op_time(op, eng, "fp32", False, 0.1, c)
    util = gemm_utilization(8192, 8192, 8192, 1, 80, c)
    expected = op.flops / (15.7e12 * c.scalar("simt_efficiency") * util)
    assert t.compute_s == pytest.approx(expected)


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
