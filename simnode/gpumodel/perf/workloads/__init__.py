"""The workload catalog: each name maps to a builder of its operator graph.

Why a registry of builders: the CLI, ``validate`` and the operator name a
workload by string, and each builder derives its FLOPs and bytes from the
model architecture; none of them contains a measured result.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumodel.perf.workloads import bert, gpt, micro, resnet
from gpumodel.perf.workloads.base import Builder, CommCall, Context, StepPlan


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    """A workload: its builder, the framework it runs under by default, one line about it."""

    build: Builder
    default_framework: str
    description: str


WORKLOADS: dict[str, WorkloadEntry] = {
    "gemm": WorkloadEntry(micro.build_gemm, "cublas", "one GEMM m x n x k (params m, n, k)"),
    "stream": WorkloadEntry(micro.build_stream, "pytorch", "elementwise y = a*x (param bytes)"),
    "copy": WorkloadEntry(micro.build_copy, "pytorch", "device-to-device copy (param bytes)"),
    "allreduce": WorkloadEntry(micro.collective_builder("allreduce"), "nccl",
                               "NCCL all-reduce (param bytes)"),
    "allgather": WorkloadEntry(micro.collective_builder("allgather"), "nccl",
                               "NCCL all-gather (param bytes)"),
    "reducescatter": WorkloadEntry(micro.collective_builder("reducescatter"), "nccl",
                                   "NCCL reduce-scatter (param bytes)"),
    "alltoall": WorkloadEntry(micro.collective_builder("alltoall"), "nccl",
                              "NCCL all-to-all (param bytes)"),
    "ib-link": WorkloadEntry(micro.build_ib_link, "nccl", "one HDR link between two nodes"),
    "bert-large-pretrain": WorkloadEntry(bert.build_pretrain, "pytorch-20.06",
                                         "BERT-Large phase-1 pre-training (seq 128)"),
    "bert-large-squad-finetune": WorkloadEntry(bert.build_squad_finetune, "pytorch-20.06",
                                               "BERT-Large SQuAD fine-tuning (seq 384)"),
    "bert-large-squad-inference": WorkloadEntry(bert.build_squad_inference, "pytorch-20.06",
                                                "BERT-Large SQuAD inference (seq 384)"),
    "bert-large-inference": WorkloadEntry(bert.build_trt_inference, "tensorrt",
                                          "BERT-Large TensorRT fused inference (seq 128)"),
    "resnet50-train": WorkloadEntry(resnet.build_train, "pytorch-20.06",
                                    "ResNet-50 v1.5 training, 224x224"),
    "resnet50-inference": WorkloadEntry(resnet.build_inference, "tensorrt",
                                        "ResNet-50 v1.5 inference, 224x224"),
    "gpt-train": WorkloadEntry(gpt.build_train, "pytorch",
                               "GPT training with tensor/pipeline/data parallelism"),
}

__all__ = ["WORKLOADS", "CommCall", "Context", "StepPlan", "WorkloadEntry"]
