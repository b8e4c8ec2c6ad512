"""The DGX A100 white paper's headline claims, recomputed from the specs and the model.

Why: a claim such as "6x faster BERT training than DGX-1" is a prediction the
model must be able to make from the same hardware facts and workload graphs it
uses everywhere else. Peak and bandwidth claims come straight from
``gpus.yaml`` / ``systems.yaml``; throughput claims from :func:`predict`. Each
claim carries the white paper's figure, ours, and whether ours supports it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from gpumodel.gpus import device
from gpumodel.perf.model import predict_job
from gpumodel.systems import system

NODE = "dgx-a100-320gb"
DGX1 = "dgx-1-v100-16gb"


class Claim(BaseModel):
    """One claim: what the white paper says, what the model computes, and if they agree."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    statement: str
    claimed: float
    computed: float
    unit: str
    holds: bool
    detail: str


def _within(computed: float, claimed: float, tolerance: float) -> bool:
    return abs(computed - claimed) <= tolerance * claimed


def bert_training_speedup() -> Claim:
    # The micro-batches of NVIDIA's recipe for each system (its README: TF32 54 on A100 40GB,
    # FP32 8 on V100 16GB), which the white paper's figures were measured with.
    a100 = predict_job("bert-large-pretrain", "a100-40gb", gpus_per_node=8, precision="tf32",
                       batch=54)
    dgx1 = predict_job("bert-large-pretrain", "v100-16gb", gpus_per_node=8, precision="fp32",
                       batch=8)
    ratio = a100.samples_per_s / dgx1.samples_per_s
    return Claim(name="bert-training", unit="x", claimed=1823 / 308, computed=ratio,
                 statement="BERT-Large pre-training: DGX A100 (TF32) about 6x DGX-1 (FP32)",
                 holds=_within(ratio, 6.0, 0.15),
                 detail=f"DGX A100 {a100.samples_per_s:,.0f} seq/s vs DGX-1 "
                        f"{dgx1.samples_per_s:,.0f} seq/s (seq 128)")


def int8_sparse_peak() -> Claim:
    node = system(NODE)
    gpu_tops = node.gpu_spec.peak("int8", sparse=True)
    node_tops = gpu_tops * node.gpu_count
    cpu_tops = device("xeon-8280x2").peak("int8")
    return Claim(name="int8-peak", unit="x", claimed=172, computed=node_tops / cpu_tops,
                 statement="about 10 PetaOPS INT8 (2:4 sparse) per DGX A100, 172x a 2x "
                           "Xeon 8280 server (58 TOPS)",
                 holds=_within(node_tops, 10_000, 0.05) and _within(node_tops / cpu_tops,
                                                                  172, 0.02),
                 detail=f"{node.gpu_count} x {gpu_tops:,.0f} TOPS = {node_tops / 1000:.2f} "
                        f"PetaOPS vs {cpu_tops:.0f} TOPS")


def mig_inference() -> Claim:
    mig = predict_job("bert-large-inference", "a100-40gb", mig_profile="1g.5gb",
                      gpus_per_node=7, precision="int8", sparse=True, batch=94)
    v100 = predict_job("bert-large-inference", "v100-16gb", precision="fp16", batch=256)
    t4 = predict_job("bert-large-inference", "t4", precision="int8", batch=256)
    ratio = mig.samples_per_s / v100.samples_per_s
    return Claim(name="mig-inference", unit="x", claimed=7.0, computed=ratio,
                 statement="BERT-Large inference (seq 128): one A100 as seven 1g.5gb slices "
                           "(INT8, 2:4 sparse, batch 94) up to 7x one V100 (FP16, batch 256); "
                           "a T4 (INT8, batch 256) below the V100",
                 holds=ratio >= 5.0 and t4.samples_per_s < v100.samples_per_s,
                 detail=f"7x1g.5gb {mig.samples_per_s:,.0f} seq/s, V100 "
                        f"{v100.samples_per_s:,.0f}, T4 {t4.samples_per_s:,.0f}")


def nvlink_bandwidth() -> Claim:
    node = system(NODE)
    link = node.gpu_spec.nvlink
    per_gpu = link.gb_per_s_bidirectional if link else 0.0
    total = per_gpu * node.gpu_count
    return Claim(name="nvlink", unit="GB/s", claimed=4800, computed=total,
                 statement="NVLink 600 GB/s per GPU and 4.8 TB/s per node (bidirectional)",
                 holds=per_gpu == 600 and total == 4800,
                 detail=f"{link.links if link else 0} links x 25 GB/s x 2 directions = "
                        f"{per_gpu:.0f} GB/s per GPU, x {node.gpu_count} = {total:,.0f} GB/s")


def compute_network() -> Claim:
    node = system(NODE)
    bidirectional = node.compute_network_gbit_per_s * 2
    nics = len(node.nics_with_role("compute"))
    return Claim(name="compute-network", unit="Gb/s", claimed=3200, computed=bidirectional,
                 statement="3.2 Tb/s of compute network per node",
                 holds=bidirectional == 3200,
                 detail=f"{nics} x {node.nics_with_role('compute')[0].gbit_per_s} Gb/s x 2 "
                        "directions")


def ai_petaflops() -> Claim:
    node = system(NODE)
    sparse = node.gpu_spec.peak("fp16", sparse=True) * node.gpu_count / 1000
    return Claim(name="ai-petaflops", unit="PFLOPS", claimed=5.0, computed=sparse,
                 statement="5 PetaFLOPS of AI per node (FP16 with 2:4 sparsity)",
                 holds=_within(sparse, 5.0, 0.01),
                 detail=f"{node.gpu_count} x {node.gpu_spec.peak('fp16', True):.0f} TFLOPS; "
                        f"dense {node.gpu_spec.peak('fp16') * node.gpu_count / 1000:.2f} PFLOPS")


def white_paper_claims() -> tuple[Claim, ...]:
    """Every claim of the DGX A100 white paper the model reproduces."""
    return (bert_training_speedup(), int8_sparse_peak(), mig_inference(), nvlink_bandwidth(),
            compute_network(), ai_petaflops())
