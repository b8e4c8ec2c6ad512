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
    """The value of a fitted constant by its fitting name (``name`` or ``table[key]``)."""
    if "[" in name:
        table, key = name[:-1].split("[", 1)
        return c.table(table, key)
    return c.scalar(name)


def fit(rows: Sequence[PublishedRow], c: PerfConstants, rounds: int = 6) -> dict[str, float]:
    """Fitted values of every fitted constant on its rows (a dict ready for ``with_values``).

    Each round searches every constant in turn, then along the round's overall
    move (Powell's acceleration): when two constants trade off along a narrow
    valley (two efficiencies of one architecture), one-at-a-time search alone
    creeps along it.
    """
    chosen = fit_rows(rows, c)
    values = {name: current_value(c, name) for name in c.fitted_names()}

    def at(trial: dict[str, float]) -> float:
        return loss(chosen, c.with_values(trial))

    for _ in range(rounds):
        start = dict(values)
        for name in list(values):
            lo, hi = _log_bounds(name, values[name])

            def objective(log_x: float, name: str = name,
                          current: dict[str, float] = values) -> float:
                return at({**current, name: math.exp(log_x)})

            values[name] = math.exp(_golden(objective, lo, hi))
        values = _along_move(start, values, at)
    return values


def _log_bounds(name: str, start: float) -> tuple[float, float]:
    upper = min(1.0, start * BOUNDS[1]) if _bounded(name) else start * BOUNDS[1]
    return math.log(start * BOUNDS[0]), math.log(upper)


def _along_move(before: dict[str, float], after: dict[str, float],
                at: Callable[[dict[str, float]], float]) -> dict[str, float]:
    """The best point on the line through ``before`` and ``after`` (in log space)."""
    move = {n: math.log(after[n] / before[n]) for n in after}
    if not any(move.values()):
        return after

    def point(t: float) -> dict[str, float]:
        out = {n: after[n] * math.exp(t * move[n]) for n in after}
        return {n: min(v, 1.0) if _bounded(n) else v for n, v in out.items()}

    t = _golden(lambda t: at(point(t)), -1.0, 4.0, tol=1e-3)
    best = point(t)
    return best if at(best) < at(after) else after


def _bounded(name: str) -> bool:
    """Efficiencies, shares and fractions cannot exceed 1."""
    return name.split("[", maxsplit=1)[0].endswith(("efficiency", "fraction", "share"))
