"""BERT-Large (24 layers, hidden 1024, 16 heads, FFN 4096, vocabulary 30528).

Why four workloads: pre-training, SQuAD fine-tuning, SQuAD inference in the
training framework and TensorRT inference are the four ways NVIDIA publishes
BERT-Large, and they differ in what runs (heads, backward, optimizer), how it
runs (eager or fused kernels) and how gradients are synchronised. Every FLOP and
byte comes from the layer shapes; the default micro-batch is the largest power
of two whose activations (Korthikanti et al., 2022: ``s*h*(34 + 5*a*s/h)`` bytes
per layer at 16 bits) and model states fit the engine's memory.

NVIDIA's pre-training recipe (PyTorch 20.06) runs phase 1 at a global batch of
65,536 sequences with gradient accumulation, all-reducing fp16 gradients once
after the last micro-step (``allreduce_post_accumulation_fp16``). SQuAD
fine-tuning uses DDP, whose bucketed all-reduce overlaps backward.
"""

from __future__ import annotations

import math

from gpumodel.perf.errors import PerfError
from gpumodel.perf.roofline import Op, elementwise, gemm
from gpumodel.perf.workloads.base import Context, StepPlan
from gpumodel.perf.workloads.transformer import (
    TransformerShape,
    backward,
    eager_layer,
    fused_layer,
    repeat,
)

LAYERS, HIDDEN, HEADS, FFN, VOCAB, MAX_POSITIONS = 24, 1024, 16, 4096, 30528, 512
PARAM_TENSORS_PER_LAYER = 16
PHASE1_GLOBAL_BATCH = 65536
# Bytes per parameter of mixed-precision / fp32 training with Adam/LAMB:
# weights, gradients, two moments (and an fp32 master copy under mixed precision).
STATE_BYTES_PER_PARAM = 16.0
TOKEN_INPUT_BYTES = 4 * 5  # int32 ids, segment ids, mask, masked positions, labels


def shape(ctx: Context, default_seq: int, batch: int) -> TransformerShape:
    seq = ctx.seq_len or default_seq
    if not 1 <= seq <= MAX_POSITIONS:
        raise PerfError(f"seq_len {seq} outside 1..{MAX_POSITIONS} of BERT-Large")
    return TransformerShape(layers=LAYERS, hidden=HIDDEN, heads=HEADS, ffn=FFN, seq=seq,
                            batch=batch, vocab=VOCAB)


def parameters() -> int:
    x = TransformerShape(LAYERS, HIDDEN, HEADS, FFN, 128, 1, VOCAB)
    embeddings = (VOCAB + MAX_POSITIONS + 2) * HIDDEN + 2 * HIDDEN
    heads = 2 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN + VOCAB + 2 * HIDDEN
    return LAYERS * x.layer_params + embeddings + heads


def default_batch(ctx: Context, seq: int, training: bool, cap: int = 64) -> int:
    """Largest power of two (<= ``cap``) whose activations and states fit in memory.

    Training keeps a third of the free memory in reserve for the caching
    allocator's fragmentation and backward's transient peak (the gradients
    being formed beside the saved activations), and counts the MLM logits with
    their fp32 log-softmax and gradient per sample.
    """
    if ctx.batch:
        return ctx.batch
    a = ctx.precision.activation_bytes
    per_layer = seq * HIDDEN * (34 + 5 * HEADS * seq / HIDDEN) * a / 2
    per_sample = LAYERS * per_layer * (1.0 if training else 0.1)
    states = parameters() * (STATE_BYTES_PER_PARAM if training else a)
    room = 0.9 * ctx.engine.memory_gb * 1e9 - states
    if room < per_sample:
        raise PerfError(f"BERT-Large does not fit in {ctx.engine.memory_gb:.1f} GB")
    if training:
        per_sample += seq * VOCAB * (a + 8)  # logits, fp32 log-softmax and its gradient
        room /= 1.5
    fits = max(1, int(room // per_sample))
    return min(cap, 1 << int(math.log2(fits)))


def _embeddings(x: TransformerShape, a: float) -> list[Op]:
    t, h = x.tokens, x.hidden
    return [
        elementwise("embedding_gather", t * h, a),
        elementwise("embedding_add", t * h, a, reads=2, count=2),
        elementwise("embedding_layernorm", t * h, a),
        Op(name="embedding_dropout", flops=0.0, bytes=t * h * (2 * a + 1), math=False),
    ]


def _pretraining_heads(x: TransformerShape, a: float) -> list[Op]:
    """MLM head over every position (as the 2020 recipe computes it) and the NSP head."""
    t, h, v = x.tokens, x.hidden, x.vocab
    return [
        gemm("mlm_transform", t, h, h, a),
        elementwise("mlm_bias_gelu", t * h, a),
        elementwise("mlm_layernorm", t * h, a),
        gemm("mlm_decoder", t, v, h, a),
        elementwise("mlm_bias", t * v, a),
        Op(name="mlm_log_softmax", flops=0.0, bytes=t * v * (a + 4), math=False),
        gemm("nsp_pooler", x.batch, h, h, a),
    ]


def _loss_backward(x: TransformerShape, a: float) -> list[Op]:
    """Cross-entropy backward in fp32, the cast back, and the tied-embedding gradient."""
    t, h, v = x.tokens, x.hidden, x.vocab
    return [
        Op(name="nll_backward", flops=0.0, bytes=t * v * 4, math=False, phase="backward"),
        Op(name="log_softmax_backward", flops=0.0, bytes=t * v * 12, math=False,
           phase="backward"),
        Op(name="logits_grad_cast", flops=0.0, bytes=t * v * (4 + a), math=False,
           phase="backward"),
        Op(name="embedding_grad", flops=0.0, bytes=v * h * 4 * 3 + t * h * (a + 4),
           math=False, phase="backward"),
    ]


def _grad_accumulate(params: int, a: float) -> Op:
    tensors = LAYERS * PARAM_TENSORS_PER_LAYER + 14
    return Op(name="grad_accumulate", flops=0.0, bytes=params * a * 3 / tensors, count=tensors,
              math=False, phase="backward")


def _optimizer(params: int) -> tuple[Op, ...]:
    """LAMB/Adam over fp32 states: read weight, grad, two moments; write three and a copy."""
    return (Op(name="optimizer", flops=0.0, bytes=params * 40.0, count=1, math=False,
               phase="optimizer"),)


def _training_ops(x: TransformerShape, a: float, pretraining: bool) -> list[Op]:
    layer = eager_layer(x, a)
    forward = _embeddings(x, a) + repeat(layer, x.layers)
    if pretraining:
        forward += _pretraining_heads(x, a)
    else:
        forward.append(gemm("span_head", x.tokens, 2, x.hidden, a))
    back = backward(_embeddings(x, a)) + repeat(backward(layer), x.layers)
    if pretraining:
        back += backward(_pretraining_heads(x, a)) + _loss_backward(x, a)
    return forward + back


def build_pretrain(ctx: Context) -> StepPlan:
    """One micro-step of phase-1 style pre-training (MLM + NSP), fp16/fp32 post-accumulation."""
    seq = ctx.seq_len or 128
    batch = default_batch(ctx, seq, training=True)
    x = shape(ctx, 128, batch)
    a = ctx.precision.activation_bytes
    params = parameters()
    ops = [*_training_ops(x, a, pretraining=True), _grad_accumulate(params, a)]
    global_batch = ctx.integer("global_batch", PHASE1_GLOBAL_BATCH)
    accumulation = max(1, round(global_batch / (batch * ctx.gpus)))
    grad_element_bytes = 2.0 if ctx.precision.name in ("fp16", "bf16") else 4.0
    return StepPlan(kind="training", ops=tuple(ops), samples=batch,
                    optimizer_ops=_optimizer(params), grad_bytes=params * grad_element_bytes,
                    grad_sync="after-backward", accumulation_steps=accumulation,
                    data_parallel=(ctx.gpus_per_node, ctx.nodes),
                    input_bytes_per_sample=seq * TOKEN_INPUT_BYTES,
                    dataset_gb=ctx.number("dataset_gb", 600.0))


def build_squad_finetune(ctx: Context) -> StepPlan:
    """One step of SQuAD fine-tuning (seq 384): span head, DDP all-reduce overlapping backward."""
    seq = ctx.seq_len or 384
    batch = default_batch(ctx, seq, training=True, cap=32)
    x = shape(ctx, 384, batch)
    a = ctx.precision.activation_bytes
    params = parameters()
    return StepPlan(kind="training", ops=tuple(_training_ops(x, a, pretraining=False)),
                    samples=batch, optimizer_ops=_optimizer(params), grad_bytes=params * 4.0,
                    grad_sync="overlapped", data_parallel=(ctx.gpus_per_node, ctx.nodes),
                    input_bytes_per_sample=seq * TOKEN_INPUT_BYTES, dataset_gb=0.5)


def _inference_ops(ctx: Context, x: TransformerShape) -> list[Op]:
    """Forward kernels: TensorRT's fused layers for an inference engine, else the eager ones."""
    a = ctx.precision.activation_bytes
    if ctx.fuses:
        ops = [elementwise("embedding_layernorm", x.tokens * x.hidden, a, reads=3)]
        return ops + repeat(fused_layer(x, a), x.layers)
    return _embeddings(x, a) + repeat(eager_layer(x, a), x.layers)


def build_squad_inference(ctx: Context) -> StepPlan:
    """SQuAD inference (seq 384): eager kernels in a training framework, fused in TensorRT."""
    seq = ctx.seq_len or 384
    batch = default_batch(ctx, seq, training=False, cap=8)
    x = shape(ctx, 384, batch)
    ops = _inference_ops(ctx, x)
    ops.append(gemm("span_head", x.tokens, 2, x.hidden, ctx.precision.activation_bytes))
    return StepPlan(kind="inference", ops=tuple(ops), samples=batch)


def build_trt_inference(ctx: Context) -> StepPlan:
    """BERT-Large encoder inference (seq 128, batch 1 by default), fused under TensorRT."""
    batch = ctx.batch or 1
    x = shape(ctx, 128, batch)
    return StepPlan(kind="inference", ops=tuple(_inference_ops(ctx, x)), samples=batch)
