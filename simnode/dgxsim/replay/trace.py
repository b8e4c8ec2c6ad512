"""Reading a pod trace in the Alibaba GPU cluster trace's pod-list format.

The format is cluster-trace-gpu-v2023's ``openb_pod_list_*.csv``: a header
and one row per pod with the columns of :data:`TRACE_COLUMNS`. Units follow
that trace: ``cpu_milli`` in thousandths of a CPU, ``memory_mib`` in MiB,
``num_gpu`` whole GPUs (0 to 8), ``gpu_milli`` the share of one GPU a
GPU-sharing pod asks for (thousandths, meaningful when ``num_gpu`` is 1; 1000
otherwise, 0 for CPU-only pods), ``gpu_spec`` the GPU models allowed,
``|``-separated (empty: any), times in seconds. ``scheduled_time`` is empty
for a pod that was never scheduled.

A replay that silently dropped rows would answer a different question than the
one asked, so a malformed trace is refused as a whole, every bad cell named by
file, line and column (:class:`TraceError`); ``skip_bad_rows`` instead skips
such rows and counts them (a header with unknown or missing columns is always
refused: no row of it can be read).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

TRACE_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
                 "pod_phase", "creation_time", "deletion_time", "scheduled_time")
MILLI_PER_GPU = 1000
MAX_GPUS_PER_POD = 8
SHOWN_ISSUES = 20
"""How many bad cells a refused trace lists (the count covers all of them)."""


class RowRuleError(ValueError):
    """A rule across cells of one row, naming the column to blame."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


class TraceRow(BaseModel):
    """One pod of the trace, as the trace recorded it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    cpu_milli: int = Field(ge=0)
    memory_mib: int = Field(ge=0)
    num_gpu: int = Field(ge=0, le=MAX_GPUS_PER_POD)
    gpu_milli: int = Field(ge=0, le=MILLI_PER_GPU)
    gpu_spec: str = ""
    """GPU models the pod may run on, ``|``-separated; empty: any (not enforced by replay)."""
    qos: str
    pod_phase: Literal["Succeeded", "Running", "Pending", "Failed"]
    """How the pod ended in the traced cluster (kept in the report, not replayed)."""
    creation_time: float = Field(ge=0)
    deletion_time: float = Field(ge=0)
    scheduled_time: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TraceRow:
        if self.num_gpu == 0 and self.gpu_milli != 0:
            raise RowRuleError("gpu_milli", "must be 0 when num_gpu is 0")
        if self.num_gpu == 1 and self.gpu_milli == 0:
            raise RowRuleError("gpu_milli", "must be 1 to 1000 when num_gpu is 1")
        if self.num_gpu > 1 and self.gpu_milli != MILLI_PER_GPU:
            raise RowRuleError("gpu_milli", "must be 1000 when num_gpu is more than 1")
        if self.scheduled_time is not None and self.scheduled_time < self.creation_time:
            raise RowRuleError("scheduled_time", "is before creation_time")
        if self.deletion_time <= self.start_time:
            raise RowRuleError("deletion_time", "must be after scheduled_time (or creation_time "
                                                "when never scheduled)")
        return self

    @property
    def start_time(self) -> float:
        """When the pod started in the trace: scheduled, else (never scheduled) created."""
        return self.scheduled_time if self.scheduled_time is not None else self.creation_time

    @property
    def duration_s(self) -> float:
        """The traced run time: deletion minus start."""
        return self.deletion_time - self.start_time


@dataclass(frozen=True, slots=True)
class TraceIssue:
    """One bad cell (or row, or header) of a trace file."""

    path: str
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return f"{where}: column {self.column}: {self.message}" if self.column else \
            f"{where}: {self.message}"


class TraceError(ValueError):
    """A trace that cannot be replayed; ``issues`` lists every bad cell."""

    def __init__(self, issues: list[TraceIssue]) -> None:
        shown = "\n  ".join(str(i) for i in issues[:SHOWN_ISSUES])
        more = len(issues) - SHOWN_ISSUES
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(issues)} problem(s) in the trace:\n  {shown}{tail}")
        self.issues = issues


@dataclass(frozen=True, slots=True)
class TraceLine:
    """A valid row and the file line it came from (1 is the header)."""

    line: int
    row: TraceRow


@dataclass(frozen=True, slots=True)
class Trace:
    """The valid rows of a trace and the issues of the rows skipped."""

    path: str
    lines: tuple[TraceLine, ...]
    skipped: tuple[TraceIssue, ...]

    @property
    def skipped_rows(self) -> int:
        """How many rows were skipped (a row may have several issues)."""
        return len({issue.line for issue in self.skipped})


def load_trace(path: Path, *, skip_bad_rows: bool = False) -> Trace:
    """Read ``path``; see :func:`parse_trace`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError([TraceIssue(str(path), 0, None, f"cannot read: {err}")]) from err
    return parse_trace(text, str(path), skip_bad_rows=skip_bad_rows)


def parse_trace(text: str, path: str, *, skip_bad_rows: bool = False) -> Trace:
    """The rows of a trace; a TraceError for a bad header, or for bad rows unless skipped."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    _check_header(header, path)
    issues: list[TraceIssue] = []
    lines: list[TraceLine] = []
    seen: set[str] = set()
    for number, cells in enumerate(reader, start=2):
        if not cells:
            continue  # a blank line
        row, row_issues = _read_row(cells, number, path, seen)
        if row is None:
            issues.extend(row_issues)
            continue
        seen.add(row.name)
        lines.append(TraceLine(number, row))
    if issues and not skip_bad_rows:
        raise TraceError(issues)
    return Trace(path, tuple(lines), tuple(issues))


def _check_header(header: list[str] | None, path: str) -> None:
    if header is None:
        raise TraceError([TraceIssue(path, 1, None, "empty file: no header")])
    names = [h.strip() for h in header]
    issues = [TraceIssue(path, 1, n, "unknown column") for n in names if n not in TRACE_COLUMNS]
    issues += [TraceIssue(path, 1, n, "missing column") for n in TRACE_COLUMNS if n not in names]
    if len(set(names)) != len(names):
        issues.append(TraceIssue(path, 1, None, "a column appears twice"))
    if not issues and names != list(TRACE_COLUMNS):
        issues.append(TraceIssue(path, 1, None, f"columns must be in the order "
                                                f"{','.join(TRACE_COLUMNS)}"))
    if issues:
        raise TraceError(issues)


def _cells(cells: list[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = dict(zip(TRACE_COLUMNS, (c.strip() for c in cells),
                                             strict=True))
    if values["scheduled_time"] == "":
        values["scheduled_time"] = None  # never scheduled
    return values


def _read_row(cells: list[str], line: int, path: str, seen: set[str]
              ) -> tuple[TraceRow | None, list[TraceIssue]]:
    if len(cells) != len(TRACE_COLUMNS):
        return None, [TraceIssue(path, line, None, f"{len(cells)} fields, the header has "
                                                   f"{len(TRACE_COLUMNS)}")]
    try:
        row = TraceRow.model_validate(_cells(cells))
    except ValidationError as err:
        return None, [_issue(e, line, path) for e in err.errors()]
    if row.name in seen:
        return None, [TraceIssue(path, line, "name", f"{row.name!r} appears twice")]
    return row, []


def _issue(error: ErrorDetails, line: int, path: str) -> TraceIssue:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RowRuleError):
        return TraceIssue(path, line, cause.column, str(cause))
    column = str(error["loc"][0]) if error["loc"] else None
    return TraceIssue(path, line, column, f"{error['msg']} (got {error['input']!r})")
