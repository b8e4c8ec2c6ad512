"""Reading an Alibaba-format pod trace: good rows, and every kind of bad cell named by line
and column (a table of malformed rows, as mig-parted tests its profile parser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxsim.replay.trace import TRACE_COLUMNS, TraceError, load_trace, parse_trace

HEADER = ",".join(TRACE_COLUMNS)
GOOD = "pod-a,6000,12288,1,460,,LS,Running,9679175,9973826,9679175"


def test_a_row_keeps_the_trace_units_and_an_empty_scheduled_time_means_never_scheduled(
) -> None:
    text = f"{HEADER}\n{GOOD}\npod-b,11908,47104,1,1000,V100M16|V100M32,BE,Pending,100,160,\n"
    trace = parse_trace(text, "t.csv")
    a, b = (line.row for line in trace.lines)
    assert (a.cpu_milli, a.memory_mib, a.num_gpu, a.gpu_milli) == (6000, 12288, 1, 460)
    assert a.duration_s == 9973826 - 9679175
    assert b.scheduled_time is None and b.duration_s == 60  # deletion - creation
    assert b.gpu_spec == "V100M16|V100M32"
    assert [line.line for line in trace.lines] == [2, 3]


BAD_ROWS = [
    ("pod-a,-5,12288,1,460,,LS,Running,0,10,0", "cpu_milli", "greater than or equal to 0"),
    ("pod-a,6000,lots,1,460,,LS,Running,0,10,0", "memory_mib", "valid integer"),
    ("pod-a,6000,12288,9,1000,,LS,Running,0,10,0", "num_gpu", "less than or equal to 8"),
    ("pod-a,6000,12288,1,1200,,LS,Running,0,10,0", "gpu_milli", "less than or equal to 1000"),
    ("pod-a,6000,12288,1,0,,LS,Running,0,10,0", "gpu_milli", "1 to 1000 when num_gpu is 1"),
    ("pod-a,6000,12288,0,500,,LS,Running,0,10,0", "gpu_milli", "0 when num_gpu is 0"),
    ("pod-a,6000,12288,2,500,,LS,Running,0,10,0", "gpu_milli", "1000 when num_gpu is more"),
    ("pod-a,6000,12288,1,460,,LS,Exploded,0,10,0", "pod_phase", "'Succeeded'"),
    ("pod-a,6000,12288,1,460,,LS,Running,-3,10,0", "creation_time", "greater than or equal"),
    ("pod-a,6000,12288,1,460,,LS,Running,soon,10,0", "creation_time", "valid number"),
    ("pod-a,6000,12288,1,460,,LS,Running,5,10,2", "scheduled_time", "before creation_time"),
    ("pod-a,6000,12288,1,460,,LS,Running,5,5,5", "deletion_time", "must be after"),
    ("pod-a,6000,12288,1,460,,LS,Running,5,,5", "deletion_time", "valid number"),
    (",6000,12288,1,460,,LS,Running,0,10,0", "name", "at least 1 character"),
]


@pytest.mark.parametrize(("row", "column", "message"), BAD_ROWS)
def test_a_malformed_row_is_refused_with_file_line_and_column(row: str, column: str,
                                                              message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(f"{HEADER}\n{GOOD}\n{row}\n", "t.csv")
    [issue] = caught.value.issues
    assert (issue.path, issue.line, issue.column) == ("t.csv", 3, column)
    assert message in issue.message
    assert str(issue).startswith(f"t.csv:3: column {column}: ")


def test_a_row_with_the_wrong_number_of_fields_and_a_repeated_name_are_refused() -> None:
    text = f"{HEADER}\n{GOOD}\npod-x,1,2\n{GOOD}\n"
    with pytest.raises(TraceError) as caught:
        parse_trace(text, "t.csv")
    short, again = caught.value.issues
    assert (short.line, short.column) == (3, None) and "3 fields" in short.message
    assert (again.line, again.column) == (4, "name") and "appears twice" in again.message


@pytest.mark.parametrize(("header", "column", "message"), [
    (HEADER + ",gpu_index", "gpu_index", "unknown column"),
    (HEADER.replace(",qos", ""), "qos", "missing column"),
    (HEADER.replace("qos", "QoS"), "QoS", "unknown column"),
])
def test_a_header_with_unknown_or_missing_columns_is_refused(header: str, column: str,
                                                             message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(f"{header}\n", "t.csv", skip_bad_rows=True)
    assert any(i.line == 1 and i.column == column and i.message == message
               for i in caught.value.issues)


def test_columns_out_of_order_and_an_empty_file_are_refused() -> None:
    swapped = HEADER.replace("cpu_milli,memory_mib", "memory_mib,cpu_milli")
    with pytest.raises(TraceError, match="columns must be in the order"):
        parse_trace(f"{swapped}\n", "t.csv")
    with pytest.raises(TraceError, match="no header"):
        parse_trace("", "t.csv")


def test_skip_bad_rows_keeps_the_good_ones_and_counts_rows_not_cells() -> None:
    bad = "pod-b,x,y,1,460,,LS,Running,0,10,0"  # two bad cells, one row
    trace = parse_trace(f"{HEADER}\n{GOOD}\n{bad}\n", "t.csv", skip_bad_rows=True)
    assert [line.row.name for line in trace.lines] == ["pod-a"]
    assert len(trace.skipped) == 2 and trace.skipped_rows == 1


def test_all_issues_are_counted_though_only_the_first_twenty_are_listed() -> None:
    bad = "\n".join(f"pod-{i},x,1,1,460,,LS,Running,0,10,0" for i in range(25))
    with pytest.raises(TraceError) as caught:
        parse_trace(f"{HEADER}\n{bad}\n", "t.csv")
    assert len(caught.value.issues) == 25
    assert str(caught.value).startswith("25 problem(s)")
    assert "and 5 more" in str(caught.value)


def test_the_shipped_sample_is_valid(tmp_path: Path) -> None:
    sample = Path(__file__).parents[3] / "examples" / "traces" / "sample.csv"
    trace = load_trace(sample)
    assert 60 <= len(trace.lines) <= 150 and not trace.skipped
    kinds = {(r.num_gpu > 1, 0 < r.gpu_milli < 1000, r.num_gpu == 0)
             for r in (line.row for line in trace.lines)}
    assert {(True, False, False), (False, True, False), (False, False, False)} <= kinds
