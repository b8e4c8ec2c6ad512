"""Comparing predictions with published measurements, row by row.

Why in the domain model: the operator, the CLI and the tests all need the same
mapping from a published row (workload, GPU, counts, precision, batch, metric)
to a request, and the same error arithmetic. Reading the CSV file is the CLI's
job; this module takes rows already parsed into :class:`PublishedRow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpumodel.perf.calibration import PerfConstants, constants
from gpumodel.perf.errors import PerfError
from gpumodel.perf.model import PerfRequest, Prediction, predict, predict_with

CSV_COLUMNS = ("id", "workload", "gpu", "gpus_per_node", "nodes", "mig_profile", "precision",
               "sparse", "batch_per_gpu", "seq_len", "framework", "metric", "value", "unit",
               "source")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PublishedRow(_Frozen):
    """One row of a ``published.csv``-format file, with empty cells as ``None``."""

    id: str
    workload: str
    gpu: str
    gpus_per_node: int = Field(ge=1)
    nodes: int = Field(ge=1)
    mig_profile: str | None = None
    precision: str
    sparse: bool = False
    batch_per_gpu: int | None = None
    seq_len: int | None = None
    framework: str | None = None
    metric: str
    value: float = Field(gt=0)
    unit: str = ""
    source: str = ""

    @field_validator("mig_profile", "batch_per_gpu", "seq_len", "framework", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @classmethod
    def from_cells(cls, cells: Mapping[str, str]) -> PublishedRow:
        """Parse one CSV record (every cell a string); unknown columns are ignored."""
        return cls.model_validate({k: v.strip() for k, v in cells.items()
                                   if k in CSV_COLUMNS and v is not None})

    def request(self) -> PerfRequest:
        return PerfRequest(workload=self.workload, gpu=self.gpu,
                           gpus_per_node=self.gpus_per_node, nodes=self.nodes,
                           mig_profile=self.mig_profile, precision=self.precision,
                           sparse=self.sparse, batch=self.batch_per_gpu, seq_len=self.seq_len,
                           framework=self.framework)


class RowResult(_Frozen):
    """A row's prediction and error (``error_pct`` signed: positive means predicted high)."""

    id: str
    workload: str
    gpu: str
    gpus: int
    metric: str
    unit: str
    predicted: float
    published: float
    error_pct: float


class Unpredictable(_Frozen):
    """A row the model could not predict, with the reason."""

    id: str
    reason: str


class ValidationReport(_Frozen):
    """Every row's result, the rows the model could not predict, and the MAPE in percent."""

    rows: tuple[RowResult, ...]
    unpredictable: tuple[Unpredictable, ...]
    mape: float
    worst: RowResult | None


def evaluate_row(row: PublishedRow, c: PerfConstants | None = None) -> RowResult:
    """Predict one row; PerfError when the model cannot."""
    request = row.request()
    prediction: Prediction = predict(request) if c is None else predict_with(request, c)
    value = prediction.metric(row.metric)
    return RowResult(id=row.id, workload=row.workload, gpu=row.gpu,
                     gpus=row.gpus_per_node * row.nodes, metric=row.metric, unit=row.unit,
                     predicted=value, published=row.value,
                     error_pct=100.0 * (value - row.value) / row.value)


def validate(rows: Iterable[PublishedRow], c: PerfConstants | None = None) -> ValidationReport:
    """Predict every row; MAPE over the predictable ones."""
    results: list[RowResult] = []
    failed: list[Unpredictable] = []
    for row in rows:
        try:
            results.append(evaluate_row(row, c))
        except (PerfError, KeyError, ValueError) as err:
            failed.append(Unpredictable(id=row.id, reason=str(err)))
    mape = sum(abs(r.error_pct) for r in results) / len(results) if results else 0.0
    worst = max(results, key=lambda r: abs(r.error_pct), default=None)
    return ValidationReport(rows=tuple(results), unpredictable=tuple(failed), mape=mape,
                            worst=worst)


def default_constants() -> PerfConstants:
    return constants()
