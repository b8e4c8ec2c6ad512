"""Two replays of one trace side by side: what a MIG policy changes.

Reads the reports two ``dgxsim replay`` runs wrote (``summary.json`` and
``samples.csv``) and writes ``compare.csv`` (one row per measure, one column
per replay) and ``compare.png`` (allocation over time, mean allocation and
mean wait). Waits are of pods that started; a policy that leaves pods
unschedulable shows it in the ``unschedulable`` row, as a low mean wait over
fewer pods is not a better result.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dgxsim.replay.report import Summary, read_samples, read_summary

COMPARE_CSV = "compare.csv"
MEASURES = ("pods", "succeeded", "unschedulable", "failed", "skipped", "mean_wait_s",
            "p90_wait_s", "mean_completion_s", "mean_allocation_ratio",
            "peak_allocation_ratio", "mean_fragmented_slices", "mean_pending", "makespan_s")


def run_name(summary: Summary) -> str:
    """``static all-balanced``, ``dynamic``: how a replay is named in the comparison."""
    return f"{summary.policy} {summary.mig_config}" if summary.policy == "static" \
        else summary.policy


def measures(summary: Summary) -> dict[str, float]:
    """The compared numbers of one replay (a missing wait counts as 0: no pod started)."""
    values = summary.model_dump()
    out = {m: float(values[m] or 0.0) for m in MEASURES if m in values}
    for outcome in ("succeeded", "unschedulable", "failed", "skipped"):
        out[outcome] = float(summary.outcomes.get(outcome, 0))
    return out


def compare_rows(summaries: list[Summary]) -> list[list[str]]:
    """The header (measure, one name per replay), then one row per measure."""
    table = [measures(s) for s in summaries]
    rows = [["measure", *(run_name(s) for s in summaries)]]
    rows += [[m, *(f"{t[m]:g}" for t in table)] for m in MEASURES]
    return rows


def write_compare(reports: list[Path], out_dir: Path, plt: object | None) -> list[Path]:
    """compare.csv, and compare.png when ``plt`` (matplotlib.pyplot) is given."""
    summaries = [read_summary(r) for r in reports]
    traces = {s.trace for s in summaries}
    if len(traces) > 1:
        raise ValueError(f"the reports replay different traces: {', '.join(sorted(traces))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / COMPARE_CSV
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(compare_rows(summaries))
    written = [path]
    if plt is not None:
        from dgxsim.replay.plots import COMPARE_PNG, draw_compare

        runs = [(run_name(s), read_samples(r), measures(s))
                for s, r in zip(summaries, reports, strict=True)]
        written.append(draw_compare(plt, runs, out_dir / COMPARE_PNG))
    return written
