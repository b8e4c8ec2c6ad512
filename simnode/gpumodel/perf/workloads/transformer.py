"""Transformer encoder/decoder layers as explicit operator graphs.

Why two styles: the same layer costs very different time depending on how the
framework runs it. *Eager* is PyTorch as NVIDIA's 2020 BERT recipe runs it:
separate Q, K and V projections, attention through two batched GEMMs with the
scale, mask, softmax and dropout as separate kernels, layout copies for the
heads, fused bias+GELU and LayerNorm (apex). *Fused* is TensorRT's BERT: one QKV
GEMM, one fused multi-head-attention kernel, GELU in the GEMM epilogue and a
fused skip+LayerNorm. Backward is derived from forward: every GEMM becomes its
data-gradient and weight-gradient GEMMs, every elementwise kernel one kernel that
reads one more tensor (the saved input or mask) than forward did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpumodel.perf.roofline import Op, elementwise, gemm


@dataclass(frozen=True, slots=True)
class TransformerShape:
    """Sizes of a transformer; ``tokens = batch * seq``."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    seq: int
    batch: int
    vocab: int

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def attention_elements(self) -> int:
        return self.batch * self.heads * self.seq * self.seq

    @property
    def layer_params(self) -> int:
        h = self.hidden
        return 4 * h * h + 2 * h * self.ffn + 4 * h + self.ffn + h + 4 * h


MASK_BYTES = 1.0  # dropout keeps a byte mask per element


def eager_layer(x: TransformerShape, a: float, tp: int = 1) -> list[Op]:
    """Forward kernels of one layer as PyTorch eager runs it (``tp``-way tensor parallel)."""
    t, h, s, d = x.tokens, x.hidden, x.seq, x.head_dim
    heads = x.heads // tp
    att = x.batch * heads * s * s
    h_tp, ffn_tp = h // tp, x.ffn // tp
    ops = [
        gemm("q_proj", t, h_tp, h, a, sparse_ok=True),
        gemm("k_proj", t, h_tp, h, a, sparse_ok=True),
        gemm("v_proj", t, h_tp, h, a, sparse_ok=True),
        elementwise("head_layout_qkv", t * h_tp, a, count=3),
        gemm("attn_scores", s, s, d, a, batch=x.batch * heads),
        elementwise("attn_scale", att, a),
        elementwise("attn_mask", att, a),
        elementwise("softmax", att, a),
        Op(name="attn_dropout", flops=0.0, bytes=att * (2 * a + MASK_BYTES), math=False),
        gemm("attn_context", s, d, s, a, batch=x.batch * heads),
        elementwise("head_layout_ctx", t * h_tp, a),
        gemm("attn_out", t, h, h_tp, a, sparse_ok=True),
    ]
    ops += _residual_block(t, h, a)
    ops += [
        gemm("ffn_in", t, ffn_tp, h, a, sparse_ok=True),
        elementwise("bias_gelu", t * ffn_tp, a),
        gemm("ffn_out", t, h, ffn_tp, a, sparse_ok=True),
    ]
    ops += _residual_block(t, h, a)
    return ops


def _residual_block(t: int, h: int, a: float) -> list[Op]:
    """Dropout, residual add and LayerNorm after a projection."""
    return [
        Op(name="dropout", flops=0.0, bytes=t * h * (2 * a + MASK_BYTES), math=False),
        elementwise("residual_add", t * h, a, reads=2),
        elementwise("layernorm", t * h, a),
    ]


def fused_layer(x: TransformerShape, a: float) -> list[Op]:
    """Forward kernels of one layer as TensorRT's BERT runs it (inference only)."""
    t, h, s, d = x.tokens, x.hidden, x.seq, x.head_dim
    mha = Op(name="fused_mha", flops=4.0 * x.attention_elements * d,
             bytes=4 * t * h * a, m=s, n=s, k=d, batch=x.batch * x.heads)
    return [
        gemm("qkv_proj", t, 3 * h, h, a, sparse_ok=True),
        mha,
        gemm("attn_out", t, h, h, a, sparse_ok=True),
        elementwise("skip_layernorm", t * h, a, reads=2),
        gemm("ffn_in_gelu", t, x.ffn, h, a, sparse_ok=True),
        gemm("ffn_out", t, h, x.ffn, a, sparse_ok=True),
        elementwise("skip_layernorm", t * h, a, reads=2),
    ]


_NO_BACKWARD = frozenset({"attn_mask"})


def backward(ops: list[Op]) -> list[Op]:
    """Backward kernels of ``ops``: dgrad + wgrad per GEMM, one kernel per elementwise op."""
    out: list[Op] = []
    for op in ops:
        if op.m:
            out += _gemm_backward(op)
        elif op.name not in _NO_BACKWARD:
            extra = op.bytes / 2  # reads the saved input (or mask) besides the gradient
            out.append(replace(op, name=op.name + "_bwd", bytes=op.bytes + extra,
                               phase="backward"))
    return out


def _gemm_backward(op: Op) -> list[Op]:
    per = op.bytes / op.batch
    dgrad = replace(op, name=op.name + "_dgrad", m=op.m, n=op.k, k=op.n, bytes=per * op.batch,
                    phase="backward", sparse_ok=False)
    wgrad = replace(op, name=op.name + "_wgrad", m=op.n, n=op.k, k=op.m, bytes=per * op.batch,
                    phase="backward", sparse_ok=False)
    return [dgrad, wgrad]


def repeat(ops: list[Op], times: float) -> list[Op]:
    """The same kernels ``times`` times (one per layer) without listing them again."""
    return [replace(op, count=op.count * times) for op in ops]
