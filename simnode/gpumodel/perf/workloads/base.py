"""What a workload hands the model: the operators of one step and how steps combine.

Why a plan rather than a time: a workload knows its architecture (layers,
shapes, bytes moved, gradient size, how its framework synchronises gradients)
but nothing about hardware speed. The model turns the plan into time on an
engine and fabric. Keeping the two apart is what makes every prediction come
from first principles: no workload may contain a measured result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gpumodel.perf.collectives import Collective
from gpumodel.perf.engine import Engine, Precision
from gpumodel.perf.errors import PerfError
from gpumodel.perf.roofline import Op

# Integer parameters are sizes a CUDA library takes as 32-bit ints (GEMM dimensions);
# other numbers (bytes, GB) stay below a petabyte.
MAX_DIMENSION = 2**31 - 1
MAX_PARAMETER = 1e15

GradSync = Literal["none", "overlapped", "after-backward"]
PlanKind = Literal["training", "inference", "gemm", "stream", "collective"]
ParamValue = float | int | str


@dataclass(frozen=True, slots=True)
class CommCall:
    """A collective on the critical path of every micro-step (tensor parallelism, a benchmark)."""

    kind: Collective
    bytes: float
    gpus_per_node: int
    nodes: int
    count: float = 1.0


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a workload may read to build its plan."""

    engine: Engine
    precision: Precision
    batch: int | None
    seq_len: int | None
    gpus_per_node: int
    nodes: int
    framework: str
    fuses: bool
    """The framework is an inference engine that builds the fused graph."""
    sparse: bool
    params: Mapping[str, ParamValue]
    read: set[str] = field(default_factory=set)
    """The parameter names the workload asked for: any other given is unknown to it."""

    def unknown(self) -> list[str]:
        """Parameters given that the workload never asked for (typos, other workloads')."""
        return sorted(set(self.params) - self.read)

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def number(self, name: str, default: float, minimum: float = 0.0,
               maximum: float = MAX_PARAMETER) -> float:
        """A numeric parameter; PerfError unless it is finite and within [minimum, maximum]."""
        self.read.add(name)
        value = self.params.get(name, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PerfError(f"parameter {name}={value!r} is not a number") from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise PerfError(f"parameter {name}={value!r} must be a finite number in "
                            f"{minimum:.15g}..{maximum:.15g}")
        return number

    def integer(self, name: str, default: int, minimum: int = 1,
                maximum: int = MAX_DIMENSION) -> int:
        """An integer parameter (a GEMM dimension, a layer count) within [minimum, maximum]."""
        value = self.number(name, default, minimum=minimum, maximum=maximum)
        if value != int(value):
            raise PerfError(f"parameter {name}={value:g} must be an integer in "
                            f"{minimum}..{maximum}")
        return int(value)

    def text(self, name: str, default: str) -> str:
        self.read.add(name)
        return str(self.params.get(name, default))


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One micro-step on one device, plus how micro-steps make a training step.

    ``samples`` is the micro-batch of one data-parallel replica. Gradients of
    ``grad_bytes`` are all-reduced among the ``data_parallel`` replicas (GPUs
    per node, nodes) once per
    ``accumulation_steps`` micro-steps, either overlapped with backward (DDP
    buckets) or after backward. ``optimizer_ops`` run once per optimizer step.
    """

    kind: PlanKind
    ops: tuple[Op, ...]
    samples: float = 1.0
    optimizer_ops: tuple[Op, ...] = ()
    grad_bytes: float = 0.0
    grad_sync: GradSync = "none"
    accumulation_steps: int = 1
    data_parallel: tuple[int, int] = (1, 1)
    comm: tuple[CommCall, ...] = ()
    pipeline_stages: int = 1
    micro_batches: int = 1
    input_bytes_per_sample: float = 0.0
    dataset_gb: float = 0.0
    work_flops: float = 0.0
    work_bytes: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


Builder = Callable[[Context], StepPlan]
