"""The DGXJob resource: its spec and status as pydantic models.

The models are the single source of the resource's shape. The CRD's OpenAPI
schema is generated from them (:mod:`migoperator.crd`), so the API server
rejects what the models reject wherever a schema can say it (negative
replicas, more than 8 GPUs per replica, a malformed MIG profile), and the
operator validates the rest (is the workload in the performance model's
catalog, does the profile exist on the nodes' GPUs) before marking a job
Failed with the reason. Field names are the resource's camelCase names.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpumodel.vocabulary import GPU_DEVICE_CLASS, GPU_RESOURCE, MIG_DEVICE_CLASS, mig_resource

GROUP = "dgxsim.io"
VERSION = "v1"
KIND = "DGXJob"
PLURAL = "dgxjobs"
SINGULAR = "dgxjob"
SHORT_NAMES = ("dgxj",)
MAX_GPUS_PER_REPLICA = 8
MAX_STEPS = 10**9
MAX_RUN_S = 366 * 86400.0
"""The longest run a job may ask for or be predicted (a year): longer is a typo or an
overflow, and would hold its GPUs for good; the node agent refuses such pods too."""
MAX_PARAMETERS = 32
MIG_PROFILE_PATTERN = r"^([1-7]c\.)?[1-7]g\.[1-9][0-9]*gb(\+me)?$"
"""The grammar of a MIG device profile (``1g.5gb``, ``1c.3g.20gb``, ``1g.5gb+me``)."""

Allocation = Literal["DevicePlugin", "DRA"]
Phase = Literal["Pending", "Placing", "Scheduled", "Running", "Succeeded", "Failed"]
PRECISIONS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")
Precision = Literal["fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              use_attribute_docstrings=True)


class DGXJobSpec(_Model):
    """What to run and on how much: a workload of the performance model's catalog."""

    workload: str = Field(min_length=1, max_length=63)
    """A workload of the performance model's catalog (``resnet50-train``, ``gemm``)."""
    parameters: dict[str, float | int | str] = Field(default_factory=dict,
                                                     max_length=MAX_PARAMETERS)
    """Workload parameters (``batch``, ``seq_len``, model sizes) as the catalog names them."""
    steps: int = Field(default=100, ge=1, le=MAX_STEPS)
    """Training or inference steps to run; the run time is steps x predicted step time."""
    replicas: int = Field(default=1, ge=1, le=1024)
    """Pods of the gang; all are placed at once or none."""
    gpus_per_replica: int = Field(default=1, ge=1, le=MAX_GPUS_PER_REPLICA,
                                  alias="gpusPerReplica")
    """Whole GPUs per replica (one DGX A100 has 8); must be 1 with ``migProfile``."""
    mig_profile: str | None = Field(default=None, alias="migProfile", max_length=32,
                                    pattern=MIG_PROFILE_PATTERN)
    """Give each replica one MIG device of this profile (``nvidia.com/mig-<profile>``)."""
    precision: Precision = "fp16"
    """Math precision of the workload."""
    priority: int = Field(default=0, ge=-1000, le=1000)
    """Higher places first; equal priorities go in creation order."""
    queue: str | None = Field(default=None, max_length=63)
    """Optional queue name, recorded on the pods as the label ``dgxsim.io/queue``."""
    duration_seconds: float | None = Field(default=None, gt=0, le=MAX_RUN_S,
                                           alias="durationSeconds", allow_inf_nan=False)
    """Run time to use instead of the performance model's prediction."""
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    """Only nodes with all these labels are considered."""
    allocation: Allocation = "DevicePlugin"
    """How replicas get their devices. ``DevicePlugin``: the extended resource
    (``nvidia.com/gpu``, ``nvidia.com/mig-<profile>``) on device-plugin nodes, pods bound
    by the operator. ``DRA``: a ResourceClaimTemplate named like the job (class
    ``gpu.nvidia.com`` with ``gpusPerReplica`` devices, or ``mig.nvidia.com`` with the
    ``migProfile`` selector), one claim per replica, on DRA nodes only; the operator pins
    each pod to its node and kube-scheduler allocates the claim there."""

    @field_validator("parameters")
    @classmethod
    def _finite_parameters(cls, value: dict[str, float | int | str]
                           ) -> dict[str, float | int | str]:
        bad = [k for k, v in value.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"parameter {bad[0]} must be a finite number")
        return value

    @model_validator(mode="after")
    def _one_mig_device_per_replica(self) -> DGXJobSpec:
        if self.mig_profile is not None and self.gpus_per_replica != 1:
            raise ValueError("a replica gets one MIG device (NVIDIA's plugin allows one per "
                             "container); set gpusPerReplica to 1 with migProfile")
        return self

    @property
    def resource(self) -> str:
        """The extended resource each replica asks for."""
        if self.mig_profile is not None:
            return mig_resource(self.mig_profile)
        return GPU_RESOURCE

    @property
    def devices(self) -> str:
        """What each replica asks for, as messages name it: the extended resource, or the
        DRA device class (and profile)."""
        if self.allocation == "DevicePlugin":
            return self.resource
        if self.mig_profile is not None:
            return f"{MIG_DEVICE_CLASS} {self.mig_profile}"
        return GPU_DEVICE_CLASS

    @property
    def per_replica(self) -> int:
        return 1 if self.mig_profile is not None else self.gpus_per_replica

    def gpus_text(self) -> str:
        """``2x8`` for whole GPUs, ``14x 1g.5gb`` for MIG devices (the GPUs column)."""
        if self.mig_profile is not None:
            return f"{self.replicas}x {self.mig_profile}"
        return f"{self.replicas}x{self.gpus_per_replica}"


class ReplicaPlacement(_Model):
    replica: int = Field(ge=0)
    node: str
    pod: str


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")


class DGXJobStatus(_Model):
    """Where the job is: phase, placement, prediction and conditions."""

    phase: Phase = "Pending"
    reason: str | None = None
    """Why the job is in its phase (``Unschedulable``, ``UnknownWorkload``...)."""
    message: str | None = None
    gpus: str | None = None
    """The job's devices in short form (``2x8``, ``14x 1g.5gb``)."""
    nodes: str | None = None
    """Comma-separated nodes the replicas run on."""
    placement: tuple[ReplicaPlacement, ...] = ()
    """One entry per replica once placed; recorded before any pod is bound."""
    predicted_seconds: float | None = Field(default=None, alias="predictedSeconds")
    """Run time of one replica as the performance model predicts it (simulated seconds)."""
    predicted: str | None = None
    """``predictedSeconds`` for people (``1h02m``)."""
    prediction_source: str | None = Field(default=None, alias="predictionSource")
    start_time: str | None = Field(default=None, alias="startTime")
    completion_time: str | None = Field(default=None, alias="completionTime")
    succeeded: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    requeues: int = Field(default=0, ge=0)
    """Times a node refused a replica at admission and the job was placed again."""
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


def job_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def pod_name(job: str, replica: int) -> str:
    """The deterministic name of a replica's pod, so a restart never creates a second one."""
    return f"{job}-r{replica}"
