"""Errors of the performance model.

A request the model cannot answer (a GPU without the asked dtype, a workload
parameter out of range, a MIG profile on a GPU without MIG) raises
:class:`PerfError` with one sentence that says which input is wrong, so the CLI
can print it and ``validate`` can list the row as unpredictable with the reason.
"""

from __future__ import annotations

from gpumodel.errors import GpuModelError


class PerfError(GpuModelError, ValueError):
    """The performance model cannot predict this request; the message says why."""
