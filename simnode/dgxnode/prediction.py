"""From a pod's ``dgxsim.io/workload`` and the devices it got, to a step time.

The node knows what the performance model needs and the pod does not say: the
GPU kind, how many whole GPUs or which MIG profile the pod was given. A pod of
a multi-node job names its node count in ``params`` (``{"nodes": 4}``) so the
communication term covers the whole job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dgxnode.agent.errors import AnnotationError
from dgxnode.agent.workload import WORKLOAD, StepPredictor, WorkloadSpec
from gpumodel.gpus import device
from gpumodel.perf.errors import PerfError
from gpumodel.perf.model import PerfRequest, predict
from gpumodel.telemetry import HELD_UNKNOWN, Activity, activity_of_step, link_bytes_per_s
from gpumodel.vocabulary import GPU_RESOURCE, mig_profile_of

ActivityEstimator = Callable[[WorkloadSpec, Mapping[str, tuple[str, ...]]], Activity]
"""What a workload keeps busy on the devices it was given."""


def request_for(spec: WorkloadSpec, devices: Mapping[str, tuple[str, ...]], gpu_device: str
                ) -> PerfRequest:
    """The performance-model request for ``spec`` on ``devices`` of a ``gpu_device`` node."""
    whole = len(devices.get(GPU_RESOURCE, ()))
    migs = {profile: ids for r, ids in devices.items()
            if (profile := mig_profile_of(r)) is not None}
    if whole and migs:
        raise AnnotationError(f"{WORKLOAD}: a pod runs on whole GPUs or on one MIG device, "
                              "not both")
    if len(migs) > 1 or any(len(ids) > 1 for ids in migs.values()):
        raise AnnotationError(f"{WORKLOAD}: one MIG device per pod can run a workload")
    params = dict(spec.params)
    nodes = params.pop("nodes", 1)
    if not isinstance(nodes, int) or nodes < 1:
        raise AnnotationError(f"{WORKLOAD}: params.nodes must be a positive integer")
    try:
        return PerfRequest(
            workload=spec.workload, gpu=gpu_device, gpus_per_node=max(1, whole), nodes=nodes,
            mig_profile=next(iter(migs), None), precision=spec.precision, sparse=spec.sparse,
            batch=spec.batch, seq_len=spec.seq_len, framework=spec.framework,
            params=tuple(sorted(params.items())))
    except ValueError as err:
        raise AnnotationError(f"{WORKLOAD}: {err}") from err


def activity_estimator(gpu_device: str) -> ActivityEstimator:
    """What a workload keeps busy on its devices, from the performance model's breakdown
    of one step (:mod:`gpumodel.telemetry`); a workload the model cannot time counts as
    busy with unknown pipes."""
    link = link_bytes_per_s(device(gpu_device))

    def activity(spec: WorkloadSpec, devices: Mapping[str, tuple[str, ...]]) -> Activity:
        try:
            p = predict(request_for(spec, devices, gpu_device))
        except (PerfError, AnnotationError):
            return HELD_UNKNOWN
        b = p.breakdown
        return activity_of_step(
            p.step_time_s, b.compute_s, b.memory_s, b.optimizer_s,
            b.communication_exposed_s + b.communication_overlapped_s,
            b.communication_exposed_s, spec.precision, link, p.request.gpus_per_node)

    return activity


def predictor_for(gpu_device: str) -> StepPredictor:
    """A :data:`StepPredictor` for nodes whose GPUs are ``gpu_device``."""

    def step_time_s(spec: WorkloadSpec, devices: Mapping[str, tuple[str, ...]]) -> float:
        try:
            return predict(request_for(spec, devices, gpu_device)).step_time_s
        except PerfError as err:
            raise AnnotationError(f"{WORKLOAD}: {err}") from err

    return step_time_s
