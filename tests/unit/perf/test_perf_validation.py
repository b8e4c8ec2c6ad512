"""The acceptance figures: every published row predicted, MAPE <= 5%, no row worse than 10%."""

from __future__ import annotations

import filecmp

import pytest
from perf_rows import COMMITTED_CSV, SHARED_CSV, load_rows

from gpumodel.perf.calibration import constants
from gpumodel.perf.validation import PublishedRow, validate

MAPE_LIMIT_PCT = 5.0
ROW_LIMIT_PCT = 10.0
SCALING_LIMIT_PCT = 10.0


def test_committed_copy_matches_the_shared_file_where_present() -> None:
    assert COMMITTED_CSV.is_file()
    paths = [COMMITTED_CSV] + ([SHARED_CSV] if SHARED_CSV.is_file() else [])
    for path in paths:
        assert filecmp.cmp(COMMITTED_CSV, path, shallow=False), f"{path} differs"


def test_every_row_is_predicted_within_the_limits(published_rows: list[PublishedRow]) -> None:
    report = validate(published_rows)
    assert not report.unpredictable
    assert len(report.rows) == len(published_rows) >= 30
    assert report.mape <= MAPE_LIMIT_PCT
    worst = {r.id: round(r.error_pct, 1) for r in report.rows
             if abs(r.error_pct) > ROW_LIMIT_PCT}
    assert not worst


def test_shared_file_validates_too() -> None:
    path = SHARED_CSV if SHARED_CSV.is_file() else COMMITTED_CSV
    assert validate(load_rows(path)).mape <= MAPE_LIMIT_PCT


def test_constants_are_fitted_on_single_gpu_rows_only(published_rows: list[PublishedRow]) -> None:
    c = constants()
    by_id = {r.id: r for r in published_rows}
    fitted = c.fitted_rows()
    assert fitted and set(fitted) <= set(by_id)
    for row_id in fitted:
        row = by_id[row_id]
        assert row.gpus_per_node == 1, f"{row_id} has {row.gpus_per_node} GPUs per node"
    assert len(c.fitted_names()) == 8


@pytest.mark.parametrize(("eight", "one"), [("P01", "P03"), ("P02", "P04"), ("P09", "P11"),
                                            ("P10", "P12")])
def test_scaling_from_one_to_eight_gpus_comes_from_the_model(
        published_rows: list[PublishedRow], eight: str, one: str) -> None:
    by_id = {r.id: r for r in published_rows}
    report = {r.id: r for r in validate([by_id[eight], by_id[one]]).rows}
    predicted = report[eight].predicted / report[one].predicted
    published = by_id[eight].value / by_id[one].value
    assert abs(predicted / published - 1) * 100 <= SCALING_LIMIT_PCT
    assert predicted <= 8.0


def test_a_bad_row_is_reported_not_fatal(published_rows: list[PublishedRow]) -> None:
    bad = published_rows[0].model_copy(update={"id": "X1", "gpu": "a200"})
    report = validate([bad, published_rows[1]])
    assert [u.id for u in report.unpredictable] == ["X1"]
    assert "a200" in report.unpredictable[0].reason
    assert len(report.rows) == 1
