"""Micro-benchmarks: one GEMM, one streaming kernel, one collective, one IB link.

Why they are workloads too: the published figures for a cuBLAS GEMM, an
elementwise kernel or ``all_reduce_perf`` measure one term of the model each, so
they check the roofline and the fabric in isolation, with the same code path as
full models.
"""

from __future__ import annotations

from gpumodel.perf.collectives import Collective
from gpumodel.perf.roofline import Op, elementwise, gemm
from gpumodel.perf.workloads.base import Builder, CommCall, Context, StepPlan

DEFAULT_GEMM_SIZE = 8192
DEFAULT_STREAM_ELEMENTS = 4 * 2**20
DEFAULT_COLLECTIVE_BYTES = 4 * 2**30  # the largest size of `all_reduce_perf -b 8 -e 4G`


def build_gemm(ctx: Context) -> StepPlan:
    """``m x n x k`` GEMM in the requested precision (default 8192 cubed); metric TFLOPS."""
    m = ctx.integer("m", DEFAULT_GEMM_SIZE)
    n = ctx.integer("n", m)
    k = ctx.integer("k", n)
    op = gemm("gemm", m, n, k, ctx.precision.activation_bytes, sparse_ok=True)
    return StepPlan(kind="gemm", ops=(op,), work_flops=op.flops)


def build_stream(ctx: Context) -> StepPlan:
    """An elementwise ``y = a * x`` kernel (one read, one write); metric GB/s moved."""
    default_bytes = DEFAULT_STREAM_ELEMENTS * ctx.precision.activation_bytes * 2
    total_bytes = ctx.number("bytes", default_bytes, minimum=1)
    op = Op(name="stream", flops=0.0, bytes=total_bytes, math=False, reuse_bytes=total_bytes / 2)
    return StepPlan(kind="stream", ops=(op,), work_bytes=total_bytes)


def collective_builder(kind: Collective) -> Builder:
    """A builder for ``kind`` over all GPUs of the request (``bytes`` param, default 4 GiB)."""

    def build(ctx: Context) -> StepPlan:
        size = ctx.number("bytes", DEFAULT_COLLECTIVE_BYTES, minimum=1)
        call = CommCall(kind=kind, bytes=size, gpus_per_node=ctx.gpus_per_node,
                        nodes=ctx.nodes)
        return StepPlan(kind="collective", ops=(), comm=(call,), work_bytes=size)

    build.__doc__ = f"NCCL {kind} of ``bytes`` over every GPU of the request."
    return build


def build_ib_link(ctx: Context) -> StepPlan:
    """One HDR link between two nodes: an all-reduce between one GPU on each (busbw = link)."""
    size = ctx.number("bytes", DEFAULT_COLLECTIVE_BYTES, minimum=1)
    nodes = max(ctx.nodes, 2)
    call = CommCall(kind="allreduce", bytes=size, gpus_per_node=1, nodes=nodes)
    return StepPlan(kind="collective", ops=(), comm=(call,), work_bytes=size,
                    notes=("one GPU per node, so the NCCL ring crosses the IB link",))


def build_copy(ctx: Context) -> StepPlan:
    """A device-to-device copy of ``bytes`` (default 1 GiB): one read and one write per byte."""
    size = ctx.number("bytes", 2**30, minimum=1)
    op = elementwise("copy", size, 1.0)
    return StepPlan(kind="stream", ops=(op,), work_bytes=2 * size)
