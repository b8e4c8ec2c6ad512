"""The performance model's constants: the few fitted ones and the sourced ones.

Why a file of its own: a reader must be able to see every number the model did
not derive from the hardware specs, where it came from and which published rows
it was fitted on (``catalog/perf-constants.yaml``). The model reads them through
:func:`constants`; the fitting helpers here produce new values from single-GPU
rows only, so a multi-GPU row can never leak into a constant.

``dgxsim validate validation/published.csv --fit`` re-fits them and prints the values.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["sourced", "assumed", "fitted"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Scalar(_Frozen):
    """One constant with its provenance."""

    value: float
    kind: Kind
    source: str
    fitted_on: tuple[str, ...] = ()


class Table(_Frozen):
    """A constant keyed by a hardware property (NVLink generation, hop kind, device)."""

    values: dict[str, float]
    kind: Kind
    source: str
    fitted_on: tuple[str, ...] = ()


class Framework(_Frozen):
    """A software stack described by what it does, not by a speed factor.

    An inference engine (``fuses``) builds the fused graph of a model and times
    every candidate kernel (``kernels: autotuned``); an eager framework runs the
    unfused graph, takes the library's heuristic kernel choice and launches each
    kernel from a host thread (``host_us_per_kernel``), and its training loop
    costs host time once per step (``host_ms_per_step``).
    """

    fuses: bool = False
    kernels: Literal["autotuned", "heuristic"] = "heuristic"
    host_us_per_kernel: float = Field(default=0.0, ge=0)
    host_ms_per_step: float = Field(default=0.0, ge=0)
    source: str = ""

    @property
    def eager(self) -> bool:
        return self.host_us_per_kernel > 0


class GemmKernels(_Frozen):
    """The menu of GEMM kernels a library chooses from: thread-block tiles and K splits."""

    tiles: tuple[tuple[int, int], ...] = Field(min_length=1)
    split_k: tuple[int, ...] = Field(min_length=1)
    source: str


class PerfConstants(_Frozen):
    """Every constant of the performance model (``catalog/perf-constants.yaml``)."""

    version: Literal["v1"]
    scalars: dict[str, Scalar]
    tables: dict[str, Table]
    frameworks: dict[str, Framework]
    gemm_kernels: GemmKernels

    # Identity semantics: the model caches on the constants object, and a dict field
    # would make the value-based hash of a frozen model fail.
    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def scalar(self, name: str) -> float:
        return self.scalars[name].value

    def table(self, name: str, key: str, default: float | None = None) -> float:
        values = self.tables[name].values
        if key in values:
            return values[key]
        if default is None:
            raise KeyError(f"constant table {name} has no entry {key!r}")
        return default

    def by_architecture(self, name: str, architecture: str) -> float:
        """A table keyed by GPU architecture, with its ``default`` entry for the others."""
        return self.table(name, architecture, default=self.table(name, "default"))

    def framework(self, name: str) -> Framework:
        return self.frameworks[name]

    def tensor_efficiency(self, architecture: str, framework: str) -> float:
        """Share of the tensor-core peak large GEMMs reach under ``framework`` on ``architecture``.

        The best kernel's share is a property of the architecture (and its
        library); a framework that takes the library's heuristic pick instead of
        timing the candidates reaches a fixed share of it.
        """
        best = self.by_architecture("tensor_core_efficiency", architecture)
        if self.frameworks[framework].kernels == "heuristic":
            return best * self.scalar("heuristic_kernel_share")
        return best

    def fitted_names(self) -> tuple[str, ...]:
        """Names of the fitted constants, one per fitted number."""
        names = [n for n, s in self.scalars.items() if s.kind == "fitted"]
        for name, table in self.tables.items():
            if table.kind == "fitted":
                names.extend(f"{name}[{key}]" for key in table.values)
        return tuple(names)

    def fitted_rows(self) -> tuple[str, ...]:
        """Every published row some fitted constant was fitted on."""
        rows: set[str] = set()
        for group in (self.scalars.values(), self.tables.values()):
            for entry in group:
                if entry.kind == "fitted":
                    rows.update(entry.fitted_on)
        return tuple(sorted(rows))

    def with_values(self, updates: dict[str, float]) -> PerfConstants:
        """A copy with some fitted values replaced (``name`` or ``table[key]``)."""
        scalars = dict(self.scalars)
        tables = {n: t.model_copy(update={"values": dict(t.values)})
                  for n, t in self.tables.items()}
        for name, value in updates.items():
            if "[" in name:
                table, key = name[:-1].split("[", 1)
                tables[table].values[key] = value
            else:
                scalars[name] = scalars[name].model_copy(update={"value": value})
        return self.model_copy(update={"scalars": scalars, "tables": tables})


@cache
def constants() -> PerfConstants:
    """The constants in ``catalog/perf-constants.yaml``, parsed on first use."""
    text = resources.files("gpumodel").joinpath("catalog/perf-constants.yaml").read_text()
    return PerfConstants.model_validate(yaml.safe_load(text))
