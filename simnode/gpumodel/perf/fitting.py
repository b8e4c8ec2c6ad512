"""Fitting the model's free constants on single-GPU published rows.

Why its own module, and why so plain: the fit must be reproducible by anyone
from the published rows and this file, without a numerical library. Each fitted
constant names the rows it is fitted on (``catalog/perf-constants.yaml``); the
fit minimises the sum of squared log errors over those rows by cyclic
golden-section search, one constant at a time, in log space. Multi-GPU rows are
refused outright, so a scaling result can never be fitted into a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.errors import PerfError
from gpumodel.perf.validation import PublishedRow, evaluate_row

_GOLDEN = (math.sqrt(5) - 1) / 2
LOSS_POWER = 2.0
BOUNDS = (0.2, 5.0)  # each constant may move from a fifth to five times its start


def fit_rows(rows: Sequence[PublishedRow], c: PerfConstants) -> tuple[PublishedRow, ...]:
    """The rows the constants are fitted on; PerfError if one of them spans several GPUs."""
    wanted = set(c.fitted_rows())
    chosen = tuple(r for r in rows if r.id in wanted)
    for row in chosen:
        one_gpu_per_node = row.gpus_per_node == 1 and row.workload == "ib-link"
        if row.gpus_per_node * row.nodes != 1 and not one_gpu_per_node:
            raise PerfError(f"row {row.id} spans {row.gpus_per_node * row.nodes} GPUs; "
                            "constants are fitted on single-GPU rows only")
    return chosen


def loss(rows: Sequence[PublishedRow], c: PerfConstants) -> float:
    """Sum of squared log errors of ``rows`` under ``c``."""
    total = 0.0
    for row in rows:
        result = evaluate_row(row, c)
        total += abs(math.log(result.predicted / result.published)) ** LOSS_POWER
    return total


def _golden(f: Callable[[float], float], lo: float, hi: float, tol: float = 1e-4) -> float:
    a, b = lo, hi
    x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    while b - a > tol:
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - _GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + _GOLDEN * (b - a)
            f2 = f(x2)
    return (a + b) / 2


def current_value(c: PerfConstants, name: str) -> float:
    """The value of a fitted constant by its fitting name (``framework[x]``, ``table[key]``)."""
    if name.startswith("framework["):
        return c.framework(name[len("framework["):-1])
    if "[" in name:
        table, key = name[:-1].split("[", 1)
        return c.table(table, key)
    return c.scalar(name)


def fit(rows: Sequence[PublishedRow], c: PerfConstants, rounds: int = 4) -> dict[str, float]:
    """Fitted values of every fitted constant on its rows (a dict ready for ``with_values``)."""
    chosen = fit_rows(rows, c)
    values = {name: current_value(c, name) for name in c.fitted_names()}
    for _ in range(rounds):
        for name in list(values):
            start = values.get(name, 1.0)
            upper = math.log(min(1.0, start * BOUNDS[1])) if _bounded(name) else \
                math.log(start * BOUNDS[1])

            def objective(log_x: float, name: str = name) -> float:
                trial = c.with_values({**values, name: math.exp(log_x)})
                return loss(chosen, trial)

            values[name] = math.exp(_golden(objective, math.log(start * BOUNDS[0]), upper))
    return values


def _bounded(name: str) -> bool:
    """Efficiencies and fractions cannot exceed 1."""
    return name.startswith("framework[") or name.endswith(("efficiency", "fraction]"))
