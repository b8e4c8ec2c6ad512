"""`dgxsim replay` refuses a bad trace before it needs a cluster, and says when there is no
cluster; `dgxsim replay-compare` refuses a folder that holds no report."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxsim.cli import main
from dgxsim.replay.trace import TRACE_COLUMNS

SAMPLE = Path(__file__).parents[3] / "examples" / "traces" / "sample.csv"


def test_a_malformed_trace_is_refused_with_its_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(",".join(TRACE_COLUMNS) + "\np,1,1,1,460,,LS,Running,0,-4,0\n")
    assert main(["replay", str(trace), "--state-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dgxsim replay: 1 problem(s) in the trace:")
    assert f"{trace}:2: column deletion_time: " in err


def test_a_good_trace_without_a_cluster_says_how_to_start_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(SAMPLE), "--state-dir", str(tmp_path)]) == 1
    assert "no cluster running" in capsys.readouterr().err
    assert main(["replay", str(SAMPLE), "--speed", "-1", "--state-dir", str(tmp_path)]) == 1
    assert "--speed must be positive" in capsys.readouterr().err


def test_compare_refuses_folders_without_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay-compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "out"), "--no-plots"])
    assert code == 1
    assert capsys.readouterr().err.startswith("dgxsim replay-compare: cannot compare: ")
