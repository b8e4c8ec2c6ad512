"""Physics-direction tests: change one input of a published row, check the prediction moves right.

The model is not a table of answers: a row's prediction must respond to batch,
sequence length, GPU count, MIG profile and precision as the hardware would.
"""

from __future__ import annotations

import pytest

from gpumodel.perf import PerfError, predict_job

TRAINING = [("bert-large-pretrain", "tf32", 54), ("bert-large-pretrain", "fp16", 64),
            ("resnet50-train", "fp16", 256), ("resnet50-train", "tf32", 256)]


@pytest.mark.parametrize(("workload", "prec", "batch"), TRAINING)
def test_more_gpus_never_slower_per_job_at_large_batch(workload: str, prec: str,
                                                       batch: int) -> None:
    rates = [predict_job(workload, "a100-40gb", gpus_per_node=g, nodes=n, precision=prec,
                         batch=batch).samples_per_s
             for g, n in ((1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 8))]
    assert rates == sorted(rates)
    assert rates[3] <= 8 * rates[0]  # and never super-linear


@pytest.mark.parametrize(("workload", "prec", "batch"), [
    ("bert-large-inference", "int8", 1), ("bert-large-inference", "fp16", 128),
    ("resnet50-inference", "int8", 64), ("bert-large-squad-inference", "fp16", 8)])
@pytest.mark.parametrize("profile", ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"])
def test_a_slice_is_never_faster_than_the_full_gpu(workload: str, prec: str, batch: int,
                                                   profile: str) -> None:
    full = predict_job(workload, "a100-40gb", precision=prec, batch=batch)
    part = predict_job(workload, "a100-40gb", mig_profile=profile, precision=prec, batch=batch)
    assert part.latency_s >= full.latency_s


def test_bigger_slices_are_faster() -> None:
    latencies = [predict_job("bert-large-inference", "a100-40gb", mig_profile=p,
                             precision="int8", batch=32).latency_s
                 for p in ("1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb")]
    assert latencies == sorted(latencies, reverse=True)


@pytest.mark.parametrize("gpu", ["a100-40gb", "t4", "h100-80gb"])
@pytest.mark.parametrize("batch", [1, 8, 128])
def test_int8_never_slower_than_fp16_on_tensor_core_work(gpu: str, batch: int) -> None:
    fp16 = predict_job("bert-large-inference", gpu, precision="fp16", batch=batch)
    int8 = predict_job("bert-large-inference", gpu, precision="int8", batch=batch)
    assert int8.latency_s <= fp16.latency_s
    gemm16 = predict_job("gemm", gpu, precision="fp16")
    gemm8 = predict_job("gemm", gpu, precision="int8")
    assert gemm8.tflops is not None and gemm16.tflops is not None
    assert gemm8.tflops >= gemm16.tflops


def test_seven_small_slices_outrun_one_gpu_on_small_batch_inference() -> None:
    full = predict_job("bert-large-inference", "a100-40gb", precision="int8", batch=1)
    seven = predict_job("bert-large-inference", "a100-40gb", mig_profile="1g.5gb",
                        gpus_per_node=7, precision="int8", batch=1)
    assert seven.samples_per_s > 1.5 * full.samples_per_s


@pytest.mark.parametrize(("workload", "prec", "batch"), [
    ("bert-large-inference", "fp16", 256), ("gemm", "fp16", None),
    ("resnet50-inference", "int8", 256)])
def test_one_slice_alone_is_about_a_seventh_on_large_batch_work(workload: str, prec: str,
                                                                batch: int | None) -> None:
    full = predict_job(workload, "a100-40gb", precision=prec, batch=batch)
    one = predict_job(workload, "a100-40gb", mig_profile="1g.5gb", precision=prec, batch=batch)
    share = full.latency_s / one.latency_s
    assert 1 / 9 <= share <= 1 / 6


def test_longer_sequences_cost_more_per_sequence() -> None:
    rates = [predict_job("bert-large-pretrain", "a100-40gb", precision="fp16", batch=16,
                         seq_len=s).samples_per_s for s in (64, 128, 256, 512)]
    assert rates == sorted(rates, reverse=True)
    # at equal tokens per step, longer sequences cost more: attention grows with s^2
    short = predict_job("bert-large-pretrain", "a100-40gb", precision="fp16", batch=32,
                        seq_len=128)
    long = predict_job("bert-large-pretrain", "a100-40gb", precision="fp16", batch=8,
                       seq_len=512)
    assert long.samples_per_s * 512 < short.samples_per_s * 128


def test_larger_batches_never_lower_throughput() -> None:
    for workload in ("bert-large-inference", "resnet50-inference"):
        rates = [predict_job(workload, "a100-40gb", precision="fp16", batch=b).samples_per_s
                 for b in (1, 2, 8, 32, 128)]
        assert rates == sorted(rates)


def test_newer_gpus_are_faster() -> None:
    order = ["t4", "v100-32gb", "a100-40gb", "h100-80gb"]
    rates = [predict_job("bert-large-inference", g, precision="fp16", batch=64).samples_per_s
             for g in order]
    assert rates == sorted(rates)


def test_first_epoch_reads_network_storage() -> None:
    params = {"storage_gb_per_s": 0.5}
    first = predict_job("resnet50-train", "a100-40gb", gpus_per_node=8, precision="fp16",
                        epoch=1, params=params)
    later = predict_job("resnet50-train", "a100-40gb", gpus_per_node=8, precision="fp16",
                        epoch=2, params=params)
    assert first.io_source == "network" and later.io_source == "nvme-cache"
    assert first.breakdown.io_exposed_s > 0 == later.breakdown.io_exposed_s
    assert first.samples_per_s < later.samples_per_s


def test_gradient_allreduce_overlaps_backward_in_ddp() -> None:
    p = predict_job("resnet50-train", "a100-40gb", gpus_per_node=8, nodes=4, precision="fp16")
    assert p.breakdown.communication_overlapped_s > 0
    assert p.breakdown.communication_exposed_s < p.breakdown.communication_overlapped_s


def test_tensor_parallelism_beyond_a_node_is_refused_and_inside_costs_comm() -> None:
    with pytest.raises(PerfError):
        predict_job("gpt-train", "a100-80gb", gpus_per_node=8, nodes=2, precision="bf16",
                    params={"tp": 16})
    tp = predict_job("gpt-train", "a100-80gb", gpus_per_node=8, precision="bf16",
                     params={"tp": 8})
    pp = predict_job("gpt-train", "a100-80gb", gpus_per_node=8, precision="bf16",
                     params={"tp": 2, "pp": 4})
    assert tp.breakdown.communication_exposed_s > 0
    assert pp.breakdown.pipeline_bubble_s > 0


def test_training_across_mig_slices_is_refused() -> None:
    with pytest.raises(PerfError, match="MIG"):
        predict_job("resnet50-train", "a100-40gb", mig_profile="3g.20gb", gpus_per_node=2,
                    precision="fp16")
