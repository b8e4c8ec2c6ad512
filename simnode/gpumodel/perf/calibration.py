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
    """A software stack's one efficiency factor: share of the math peak on large operators."""

    efficiency: float = Field(gt=0, le=1)
    eager: bool = False
    """Launches kernels one by one from a host thread (PyTorch eager), paying the dispatch cost."""
    fitted_on: tuple[str, ...] = ()
    note: str = ""


class PerfConstants(_Frozen):
    """Every constant of the performance model (``catalog/perf-constants.yaml``)."""

    version: Literal["v1"]
    scalars: dict[str, Scalar]
    tables: dict[str, Table]
    frameworks: dict[str, Framework]

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

    def framework(self, name: str) -> float:
        return self.frameworks[name].efficiency

    def fitted_names(self) -> tuple[str, ...]:
        """Names of the fitted constants, one per fitted number."""
        names = [n for n, s in self.scalars.items() if s.kind == "fitted"]
        for name, table in self.tables.items():
            if table.kind == "fitted":
                names.extend(f"{name}[{key}]" for key in table.values)
        names.extend(f"framework[{n}]" for n, f in self.frameworks.items() if f.fitted_on)
        return tuple(names)

    def fitted_rows(self) -> tuple[str, ...]:
        """Every published row some fitted constant was fitted on."""
        rows: set[str] = set()
        for group in (self.scalars.values(), self.tables.values(), self.frameworks.values()):
            for entry in group:
                rows.update(entry.fitted_on)
        return tuple(sorted(rows))

    def with_values(self, updates: dict[str, float]) -> PerfConstants:
        """A copy with some fitted values replaced (``name``, ``table[key]``, ``framework[x]``)."""
        scalars = dict(self.scalars)
        tables = {n: t.model_copy(update={"values": dict(t.values)})
                  for n, t in self.tables.items()}
        frameworks = dict(self.frameworks)
        for name, value in updates.items():
            if name.startswith("framework["):
                key = name[len("framework["):-1]
                frameworks[key] = frameworks[key].model_copy(update={"efficiency": value})
            elif "[" in name:
                table, key = name[:-1].split("[", 1)
                tables[table].values[key] = value
            else:
                scalars[name] = scalars[name].model_copy(update={"value": value})
        return self.model_copy(update={"scalars": scalars, "tables": tables,
                                       "frameworks": frameworks})


@cache
def constants() -> PerfConstants:
    """The constants in ``catalog/perf-constants.yaml``, parsed on first use."""
    text = resources.files("gpumodel").joinpath("catalog/perf-constants.yaml").read_text()
    return PerfConstants.model_validate(yaml.safe_load(text))
