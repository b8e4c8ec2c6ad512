"""ResNet-50 v1.5 at 224x224 as an explicit list of convolutions.

Why every convolution: ResNet-50 training is bound by memory traffic more than
by math (batch-norm and ReLU touch every activation several times, and the
early layers have only 64 channels, which wastes half of a 128-wide tensor-core
tile), so its speed follows HBM bandwidth and activation size, which only a
per-layer graph gets right. Each convolution is an implicit GEMM
(``M = N*H*W``, ``N = C_out``, ``K = C_in*R*S``) followed by batch-norm (+ReLU);
v1.5 puts the stride on the 3x3 convolution. Backward: data and weight
gradients of each convolution, and a batch-norm backward that reads its input
and gradient twice. DDP all-reduces fp32 gradients in 25 MB buckets while
backward runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpumodel.perf.roofline import Op, elementwise, gemm
from gpumodel.perf.workloads.base import Context, StepPlan

IMAGE = 224
CLASSES = 1000
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # width, blocks, first stride
EXPANSION = 4
JPEG_BYTES_PER_IMAGE = 110_000  # ImageNet's mean training JPEG
IMAGENET_GB = 147.0
# cuDNN runs FP32 3x3 stride-1 convolutions on CUDA cores with Winograd F(2x2, 3x3),
# which needs 2.25x fewer multiplications (Lavin and Gray, 2016); tensor-core paths
# use implicit GEMM.
WINOGRAD_3X3_SAVING = 2.25


@dataclass(frozen=True, slots=True)
class Conv:
    """One convolution: input size and channels, output channels, kernel and stride."""

    name: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    size_in: int
    bn_relu: bool = True

    @property
    def size_out(self) -> int:
        return self.size_in // self.stride

    @property
    def params(self) -> int:
        return self.c_in * self.c_out * self.kernel * self.kernel + 2 * self.c_out


def convolutions() -> list[Conv]:
    """The 53 convolutions of ResNet-50 v1.5 in order."""
    convs = [Conv("conv1", 3, 64, 7, 2, IMAGE)]
    size, c_in = IMAGE // 4, 64  # after conv1 (stride 2) and the 3x3 max-pool (stride 2)
    for stage, (width, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            s = stride if block == 0 else 1
            prefix = f"layer{stage}.{block}"
            convs += [
                Conv(f"{prefix}.conv1", c_in, width, 1, 1, size),
                Conv(f"{prefix}.conv2", width, width, 3, s, size),
                Conv(f"{prefix}.conv3", width, width * EXPANSION, 1, 1, size // s, bn_relu=False),
            ]
            if block == 0:
                convs.append(Conv(f"{prefix}.downsample", c_in, width * EXPANSION, 1, s, size,
                                  bn_relu=False))
            size //= s
            c_in = width * EXPANSION
    return convs


def parameters() -> int:
    return sum(c.params for c in convolutions()) + 2048 * CLASSES + CLASSES


def _bwd(op: Op) -> Op:
    return replace(op, phase="backward")


def _transpose(name: str, elements: float, a: float) -> Op:
    return elementwise(name, elements, a)


def _conv_ops(conv: Conv, batch: int, a: float, first: bool, nchw: bool,
              winograd: bool) -> list[Op]:
    """Forward and backward kernels of one convolution with its batch-norm and ReLU.

    PyTorch runs batch-norm (statistics pass, normalise pass) and ReLU as separate
    kernels. With NCHW tensors on tensor cores, cuDNN transposes the input and the
    output to NHWC and back around every convolution, forward and backward.
    """
    m = batch * conv.size_out * conv.size_out
    k = conv.c_in * conv.kernel * conv.kernel
    out_elems = m * conv.c_out
    in_elems = batch * conv.size_in * conv.size_in * conv.c_in
    conv_bytes = (in_elems + out_elems + k * conv.c_out) * a
    flops = 2.0 * m * conv.c_out * k
    if winograd and conv.kernel == 3 and conv.stride == 1:
        flops /= WINOGRAD_3X3_SAVING
    fwd = Op(name=conv.name, flops=flops, bytes=conv_bytes, m=m,
             n=conv.c_out, k=k, sparse_ok=True)
    ops = [fwd, elementwise(conv.name + ".bn", out_elems, a, reads=2)]
    back = [_bwd(elementwise(conv.name + ".bn_bwd", out_elems, a, reads=4))]
    if conv.bn_relu:
        ops.append(elementwise(conv.name + ".relu", out_elems, a))
        back.insert(0, _bwd(elementwise(conv.name + ".relu_bwd", out_elems, a, reads=2)))
    back.append(_bwd(Op(name=conv.name + ".wgrad", flops=fwd.flops, bytes=conv_bytes,
                        m=conv.c_out, n=k, k=m)))
    if not first:  # the image needs no gradient
        back.append(_bwd(Op(name=conv.name + ".dgrad", flops=fwd.flops, bytes=conv_bytes, m=m,
                            n=conv.c_in, k=conv.c_out * conv.kernel * conv.kernel)))
    if nchw:
        ops += [_transpose(conv.name + ".to_nhwc", in_elems, a),
                _transpose(conv.name + ".to_nchw", out_elems, a)]
        back += [_bwd(_transpose(conv.name + ".dy_to_nhwc", out_elems, a)),
                 _bwd(_transpose(conv.name + ".x_to_nhwc", in_elems, a))]
        if not first:
            back.append(_bwd(_transpose(conv.name + ".dx_to_nchw", in_elems, a)))
    return ops + back


def _block_joins(batch: int, a: float) -> list[Op]:
    """Residual add and ReLU at the end of each block, and the gradient sum at its input."""
    ops: list[Op] = []
    for conv in convolutions():
        if conv.bn_relu or conv.name.endswith("downsample"):
            continue
        elems = batch * conv.size_out * conv.size_out * conv.c_out
        ops += [elementwise(conv.name + ".add", elems, a, reads=2),
                elementwise(conv.name + ".add_relu", elems, a),
                _bwd(elementwise(conv.name + ".add_relu_bwd", elems, a, reads=2)),
                _bwd(elementwise(conv.name + ".grad_sum", elems, a, reads=2))]
    return ops


def _stem_and_head(batch: int, a: float, training: bool) -> list[Op]:
    pool_in = batch * (IMAGE // 2) ** 2 * 64
    ops = [
        elementwise("maxpool", pool_in, a, reads=1, writes=0.25),
        elementwise("avgpool", batch * 7 * 7 * 2048, a, reads=1, writes=1 / 49),
        gemm("fc", batch, CLASSES, 2048, a),
    ]
    if training:
        ops += [
            elementwise("maxpool_bwd", pool_in, a, reads=0.5, writes=1, count=1),
            elementwise("avgpool_bwd", batch * 7 * 7 * 2048, a, reads=1 / 49, writes=1),
            gemm("fc_dgrad", batch, 2048, CLASSES, a),
            gemm("fc_wgrad", CLASSES, 2048, batch, a),
        ]
        ops = [_bwd(op) if op.name.endswith(("_bwd", "_dgrad", "_wgrad")) else op
               for op in ops]
    return ops


def training_ops(batch: int, a: float, nchw: bool, winograd: bool = False) -> list[Op]:
    ops: list[Op] = []
    for i, conv in enumerate(convolutions()):
        ops += _conv_ops(conv, batch, a, first=i == 0, nchw=nchw, winograd=winograd)
    return ops + _block_joins(batch, a) + _stem_and_head(batch, a, training=True)


def build_train(ctx: Context) -> StepPlan:
    """One training step (SGD with momentum, DDP)."""
    batch = ctx.batch or 256
    params = parameters()
    # NCHW is PyTorch's default layout; tensor-core convolutions then pay transposes.
    layout = ctx.text("layout", "nchw" if ctx.framework.startswith("pytorch") else "nhwc")
    simt = ctx.precision.math_dtype in ("fp32", "fp64")
    nchw = layout == "nchw" and not simt
    ops = training_ops(batch, ctx.precision.activation_bytes, nchw, winograd=simt)
    optimizer = (Op(name="sgd_momentum", flops=0.0, bytes=params * 4.0 * 5, math=False,
                    phase="optimizer"),)
    return StepPlan(kind="training", ops=tuple(ops),
                    samples=batch, optimizer_ops=optimizer, grad_bytes=params * 4.0,
                    grad_sync="overlapped", data_parallel=(ctx.gpus_per_node, ctx.nodes),
                    input_bytes_per_sample=JPEG_BYTES_PER_IMAGE,
                    dataset_gb=ctx.number("dataset_gb", IMAGENET_GB))


def _fused_inference_ops(batch: int, a: float) -> list[Op]:
    """An inference engine's graph: batch-norm folded into the weights, bias, ReLU and the
    residual add in each convolution's epilogue."""
    ops: list[Op] = []
    for conv in convolutions():
        m = batch * conv.size_out * conv.size_out
        k = conv.c_in * conv.kernel * conv.kernel
        in_elems = batch * conv.size_in * conv.size_in * conv.c_in
        residual = 0 if conv.bn_relu else m * conv.c_out  # conv3 reads the shortcut
        ops.append(Op(name=conv.name, flops=2.0 * m * conv.c_out * k,
                      bytes=(in_elems + m * conv.c_out + residual + k * conv.c_out) * a,
                      m=m, n=conv.c_out, k=k, sparse_ok=True))
    return ops


def _eager_inference_ops(batch: int, a: float, nchw: bool) -> list[Op]:
    """An eager framework's graph: each convolution, then batch-norm, ReLU and the add as kernels
    of their own (and layout transposes around tensor-core convolutions in NCHW)."""
    ops: list[Op] = []
    for conv in convolutions():
        fwd = [op for op in _conv_ops(conv, batch, a, first=True, nchw=nchw, winograd=False)
               if op.phase == "forward"]
        elems = batch * conv.size_out * conv.size_out * conv.c_out
        # eval-mode batch-norm: one normalising pass, no statistics pass
        ops += [elementwise(op.name, elems, a) if op.name.endswith(".bn") else op for op in fwd]
        if not conv.bn_relu and not conv.name.endswith("downsample"):
            ops += [elementwise(conv.name + ".add", elems, a, reads=2),
                    elementwise(conv.name + ".add_relu", elems, a)]
    return ops


def build_inference(ctx: Context) -> StepPlan:
    """Forward only: fused under an inference engine, kernel by kernel in an eager framework."""
    batch = ctx.batch or 256
    a = ctx.precision.activation_bytes
    if ctx.fuses:
        ops = _fused_inference_ops(batch, a)
    else:
        layout = ctx.text("layout", "nchw" if ctx.framework.startswith("pytorch") else "nhwc")
        simt = ctx.precision.math_dtype in ("fp32", "fp64")
        ops = _eager_inference_ops(batch, a, layout == "nchw" and not simt)
    ops += _stem_and_head(batch, a, training=False)
    return StepPlan(kind="inference", ops=tuple(ops), samples=batch)
