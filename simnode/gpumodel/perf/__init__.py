"""The performance model: how long a workload takes on DGX hardware, from first principles.

Public entry points: :func:`predict` (a :class:`PerfRequest` in, a
:class:`Prediction` out, cached and pure) and :func:`predict_job` (the same with
keyword arguments). See ``docs/performance-model.md`` for the physics, every
constant and the validation against published measurements.
"""

from gpumodel.perf.errors import PerfError
from gpumodel.perf.model import Breakdown, PerfRequest, Prediction, predict, predict_job
from gpumodel.perf.workloads import WORKLOADS

__all__ = ["WORKLOADS", "Breakdown", "PerfError", "PerfRequest", "Prediction", "predict",
           "predict_job"]
