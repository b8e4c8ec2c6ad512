"""Properties the model must keep for every input, checked on the model the CLI answers with.

Each property is a physical law a prediction must obey whatever the constants
are: more work never takes less time, a link never carries more than its
bandwidth, more replicas never make each one faster, an inference engine never
loses to an eager framework on the same graph, a smaller slice never beats a
larger one.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpumodel.perf import predict_job
from gpumodel.perf.calibration import constants
from gpumodel.perf.collectives import collective_time, fabric
from gpumodel.perf.nccl import link_gb_per_s

DIMENSIONS = st.integers(min_value=64, max_value=32768)
GEMM_DTYPES = ["fp64", "fp32", "tf32", "fp16", "bf16", "int8", "int4"]
NODE_SHAPES = st.sampled_from([(2, 1), (4, 1), (8, 1), (1, 2), (8, 2), (8, 4), (8, 32)])


def _gemm_s(dtype: str, m: int, n: int, k: int) -> float:
    return predict_job("gemm", "a100-40gb", precision=dtype,
                       params={"m": m, "n": n, "k": k}).step_time_s


@pytest.mark.parametrize("dtype", GEMM_DTYPES)
@settings(max_examples=60, deadline=None)
@given(m=DIMENSIONS, n=DIMENSIONS, k=DIMENSIONS, grow=st.integers(1, 4096),
       axis=st.sampled_from("mnk"))
def test_gemm_time_never_falls_as_a_dimension_grows(dtype: str, m: int, n: int, k: int,
                                                    grow: int, axis: str) -> None:
    dims = {"m": m, "n": n, "k": k}
    bigger = dict(dims, **{axis: min(32768, dims[axis] + grow)})
    assert _gemm_s(dtype, **bigger) >= _gemm_s(dtype, **dims)


@pytest.mark.parametrize("dtype", ["fp16", "tf32", "fp32", "int8"])
def test_gemm_time_is_monotone_along_the_whole_square_sweep(dtype: str) -> None:
    times = [_gemm_s(dtype, s, s, s) for s in range(64, 32769, 64)]
    assert times == sorted(times)


@settings(max_examples=80, deadline=None)
@given(size=st.floats(1, 2**34), grow=st.floats(1, 2**30), shape=NODE_SHAPES,
       kind=st.sampled_from(["allreduce", "allgather", "reducescatter"]))
def test_collective_time_never_falls_with_bytes_nor_beats_the_link(
        size: float, grow: float, shape: tuple[int, int], kind: str) -> None:
    c = constants()
    g, n = shape
    small = collective_time(kind, size, g, n, "a100-40gb", c)  # type: ignore[arg-type]
    large = collective_time(kind, size + grow, g, n, "a100-40gb", c)  # type: ignore[arg-type]
    assert large.time_s >= small.time_s
    link = link_gb_per_s(fabric("a100-40gb", c), g, n)
    assert small.busbw_gb_per_s <= link and large.busbw_gb_per_s <= link


@pytest.mark.parametrize(("workload", "prec", "batch", "gpu"), [
    ("bert-large-pretrain", "tf32", 54, "a100-40gb"), ("bert-large-pretrain", "fp16", 64,
                                                       "a100-40gb"),
    ("bert-large-pretrain", "fp32", 8, "v100-16gb"), ("bert-large-pretrain", "fp16", 16,
                                                      "v100-32gb"),
    ("bert-large-squad-finetune", "fp16", 32, "a100-40gb"),
    ("resnet50-train", "fp16", 256, "a100-40gb"), ("resnet50-train", "tf32", 256, "a100-40gb"),
    ("resnet50-train", "fp16", 256, "v100-16gb"), ("gpt-train", "bf16", 1, "a100-80gb")])
def test_per_gpu_throughput_never_rises_with_gpu_count(workload: str, prec: str, batch: int,
                                                        gpu: str) -> None:
    per_gpu = []
    for g, n in ((1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 4), (8, 32)):
        p = predict_job(workload, gpu, gpus_per_node=g, nodes=n, precision=prec, batch=batch)
        per_gpu.append(p.samples_per_s / p.gpus)
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(per_gpu))


def test_bert_scaling_to_eight_gpus_loses_a_few_percent() -> None:
    for prec, batch in (("tf32", 54), ("fp16", 64)):
        one = predict_job("bert-large-pretrain", "a100-40gb", precision=prec, batch=batch)
        eight = predict_job("bert-large-pretrain", "a100-40gb", gpus_per_node=8,
                            precision=prec, batch=batch)
        assert 0.95 <= eight.samples_per_s / (8 * one.samples_per_s) <= 0.985


INFERENCE = ["bert-large-inference", "bert-large-squad-inference", "resnet50-inference"]
EAGER = ["pytorch", "pytorch-20.06", "tensorflow-20.06", "mxnet-20.06"]


@pytest.mark.parametrize("workload", INFERENCE)
@pytest.mark.parametrize("eager", EAGER)
@settings(max_examples=12, deadline=None)
@given(batch=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256]),
       prec=st.sampled_from(["fp16", "int8", "fp32"]),
       gpu=st.sampled_from(["a100-40gb", "v100-16gb", "t4"]))
def test_tensorrt_never_slower_than_an_eager_framework(workload: str, eager: str, batch: int,
                                                       prec: str, gpu: str) -> None:
    trt = predict_job(workload, gpu, precision=prec, batch=batch, framework="tensorrt")
    other = predict_job(workload, gpu, precision=prec, batch=batch, framework=eager)
    assert trt.latency_s <= other.latency_s


PROFILES = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", None]


@pytest.mark.parametrize(("workload", "prec"), [
    ("bert-large-inference", "int8"), ("bert-large-inference", "fp16"),
    ("resnet50-inference", "int8"), ("bert-large-squad-inference", "fp16"), ("gemm", "fp16"),
    ("resnet50-train", "fp16")])
@pytest.mark.parametrize("batch", [1, 8, 64])
def test_a_mig_profile_is_never_faster_than_a_larger_one(workload: str, prec: str,
                                                         batch: int) -> None:
    latencies = [predict_job(workload, "a100-40gb", mig_profile=p, precision=prec,
                             batch=batch).latency_s for p in PROFILES]
    assert latencies == sorted(latencies, reverse=True)
