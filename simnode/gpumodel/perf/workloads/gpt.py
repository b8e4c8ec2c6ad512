"""GPT-style decoder training with tensor, pipeline and data parallelism (Megatron-LM).

Why these three axes: they are how a model larger than one GPU is placed on a
DGX cluster, and each costs something different. Tensor parallelism splits
every layer's GEMMs over ``tp`` GPUs and adds two all-reduces of the
activations per layer forward and two backward, on the critical path, so it
belongs inside a node on NVSwitch. Pipeline parallelism splits the layers into
``pp`` stages and idles each stage for ``pp - 1`` of ``m + pp - 1`` micro-batch
slots (the 1F1B bubble). Data parallelism all-reduces the gradients of each
GPU's shard once per step, after backward (Megatron's default).
"""

from __future__ import annotations

from gpumodel.perf.errors import PerfError
from gpumodel.perf.roofline import Op, gemm
from gpumodel.perf.workloads.base import CommCall, Context, StepPlan
from gpumodel.perf.workloads.transformer import TransformerShape, backward, eager_layer, repeat

VOCAB = 51200  # GPT-2's 50,257 padded to a multiple of 1024 as Megatron does


def build_train(ctx: Context) -> StepPlan:
    """One optimizer step of GPT training; parameters: layers, hidden, heads, tp, pp, dp..."""
    layers = ctx.integer("layers", 24)
    hidden = ctx.integer("hidden", 2048)
    heads = ctx.integer("heads", 16)
    seq = ctx.seq_len or 2048
    micro = ctx.batch or 1
    tp, pp = ctx.integer("tp", 1), ctx.integer("pp", 1)
    if ctx.gpus % (tp * pp):
        raise PerfError(f"{ctx.gpus} GPUs do not divide into tp={tp} x pp={pp}")
    dp = ctx.integer("dp", ctx.gpus // (tp * pp))
    if tp * pp * dp != ctx.gpus:
        raise PerfError(f"tp={tp} x pp={pp} x dp={dp} != {ctx.gpus} GPUs")
    if tp > ctx.gpus_per_node or hidden % tp or heads % tp or layers % pp:
        raise PerfError("tp must fit in a node and divide hidden and heads; pp must divide layers")
    global_batch = ctx.integer("global_batch", micro * dp * max(1, 4 * pp))
    micro_batches = max(1, global_batch // (micro * dp))
    x = TransformerShape(layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden, seq=seq,
                         batch=micro, vocab=VOCAB)
    a = ctx.precision.activation_bytes
    layer = eager_layer(x, a, tp=tp)
    stage_layers = layers // pp
    head = [gemm("lm_head", x.tokens, VOCAB // tp, hidden, a)]
    ops = repeat(layer, stage_layers) + head
    ops += repeat(backward(layer), stage_layers) + backward(head)
    activation_bytes = x.tokens * hidden * a
    comm: tuple[CommCall, ...] = ()
    if tp > 1:
        comm = (CommCall(kind="allreduce", bytes=activation_bytes, gpus_per_node=tp, nodes=1,
                         count=4 * stage_layers),)
    params = layers * x.layer_params + VOCAB * hidden + seq * hidden
    shard = params / (tp * pp)
    dp_local = max(1, ctx.gpus_per_node // (tp * pp))
    dp_layout = (min(dp, dp_local), max(1, dp // dp_local))
    grad_element_bytes = 4.0
    optimizer = (Op(name="adam", flops=0.0, bytes=shard * 40.0, math=False,
                    phase="optimizer"),)
    return StepPlan(kind="training", ops=tuple(ops), samples=micro, optimizer_ops=optimizer,
                    grad_bytes=shard * grad_element_bytes, grad_sync="after-backward",
                    accumulation_steps=micro_batches, data_parallel=dp_layout, comm=comm,
                    pipeline_stages=pp, micro_batches=micro_batches,
                    input_bytes_per_sample=seq * 4.0, dataset_gb=ctx.number("dataset_gb", 800))
