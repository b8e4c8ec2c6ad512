"""The fit: single-GPU rows only, and the committed constants are what it produces."""

from __future__ import annotations

import pytest

from gpumodel.perf.calibration import constants
from gpumodel.perf.errors import PerfError
from gpumodel.perf.fitting import current_value, fit, fit_rows, loss
from gpumodel.perf.validation import PublishedRow


def test_multi_gpu_rows_cannot_be_fitted_on(published_rows: list[PublishedRow]) -> None:
    c = constants()
    eight = next(r for r in published_rows if r.gpus_per_node == 8)
    sneaky = eight.model_copy(update={"id": c.fitted_rows()[0]})
    with pytest.raises(PerfError, match="single-GPU"):
        fit_rows([sneaky], c)


def test_committed_constants_are_a_minimum_of_the_fit(published_rows: list[PublishedRow]) -> None:
    c = constants()
    rows = fit_rows(published_rows, c)
    refit = fit(published_rows, c, rounds=1)
    for name, value in refit.items():
        assert value == pytest.approx(current_value(c, name), rel=0.05), name
    assert loss(rows, c.with_values(refit)) <= loss(rows, c) * 1.02


def test_with_values_does_not_touch_the_original() -> None:
    c = constants()
    before = c.scalar("kernel_overhead_us")
    changed = c.with_values({"kernel_overhead_us": 0.5, "hbm_efficiency[volta]": 0.5,
                             "sustained_clock_fraction[t4]": 0.9})
    assert changed.scalar("kernel_overhead_us") == 0.5
    assert changed.by_architecture("hbm_efficiency", "volta") == 0.5
    assert changed.table("sustained_clock_fraction", "t4") == 0.9
    assert c.scalar("kernel_overhead_us") == before
    assert c.table("sustained_clock_fraction", "t4") != 0.9
