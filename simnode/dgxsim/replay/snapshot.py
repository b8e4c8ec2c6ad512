"""What the cluster holds at one instant, from the Kubernetes objects alone.

A sample is computed from the scheduler's point of view (Node allocatable and
the requests of pods bound to nodes), not from the node agent's inventory:
what a pending pod can use is what the scheduler would give it.

* **GPU allocation ratio**: GPUs' worth of compute held by pods bound to DGX
  nodes and not finished, over the cluster's GPUs. A whole GPU counts 1, a MIG
  device its compute slices over the GPU's (a 3g.20gb: 3/7).
* **MIG fragmentation**: free MIG slices that no pending request can use.
  Per MIG resource, the free devices (allocatable minus held) beyond the
  pending pods asking for that profile are stranded; their compute slices
  are summed. A pending whole-GPU request can use no MIG device. With no GPU
  request pending, free capacity is idle rather than fragmented, and counts 0.
* **Pending**: pods asking for GPUs that no node holds yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.mig import MigProfile
from gpumodel.vocabulary import GPU_RESOURCE, MIG_RESOURCE_PREFIX, NODE_LABEL, is_gpu_resource

JSON = dict[str, Any]
FINISHED_PHASES = ("Succeeded", "Failed")


class Sample(BaseModel):
    """The cluster at one instant of the replay (a row of ``samples.csv``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    t_s: float
    """Simulated seconds since the replay started."""
    total_gpus: int = Field(ge=0)
    allocated_gpus: float = Field(ge=0)
    allocation_ratio: float = Field(ge=0)
    free_mig_slices: int = Field(ge=0)
    fragmented_slices: int = Field(ge=0)
    pending: int = Field(ge=0)
    running: int = Field(ge=0)


def gpu_requests(pod: JSON) -> Counter[str]:
    """The GPU resources a pod asks for (limits, as extended resources are given)."""
    held: Counter[str] = Counter()
    for container in pod.get("spec", {}).get("containers", []):
        resources = container.get("resources") or {}
        asked = resources.get("limits") or resources.get("requests") or {}
        for name, value in asked.items():
            if is_gpu_resource(name):
                held[name] += int(value)
    return held


def is_active(pod: JSON) -> bool:
    """Not finished: holds (or waits for) its devices."""
    return pod.get("status", {}).get("phase") not in FINISHED_PHASES


def node_of(pod: JSON) -> str | None:
    name = pod.get("spec", {}).get("nodeName")
    return str(name) if name else None


def gpu_share(requests: Counter[str], slices_per_gpu: int) -> float:
    """GPUs' worth of compute of a set of GPU requests."""
    share = 0.0
    for name, count in requests.items():
        if name == GPU_RESOURCE:
            share += count
        elif name.startswith(MIG_RESOURCE_PREFIX):
            profile = MigProfile.parse(name.removeprefix(MIG_RESOURCE_PREFIX))
            share += count * profile.gpu_slices / slices_per_gpu
    return share


def mig_slices(resource: str) -> int:
    return MigProfile.parse(resource.removeprefix(MIG_RESOURCE_PREFIX)).gpu_slices


def dgx_nodes(nodes: Iterable[JSON]) -> list[JSON]:
    return [n for n in nodes if (n["metadata"].get("labels") or {}).get(NODE_LABEL) == "true"]


def free_mig_devices(nodes: list[JSON], pods: list[JSON]) -> Counter[str]:
    """Free MIG devices per resource over the nodes: allocatable minus what bound pods hold."""
    names = {n["metadata"]["name"] for n in nodes}
    held: Counter[str] = Counter()
    for pod in pods:
        if is_active(pod) and node_of(pod) in names:
            held.update(gpu_requests(pod))
    free: Counter[str] = Counter()
    for node in nodes:
        for name, value in (node.get("status", {}).get("allocatable") or {}).items():
            if name.startswith(MIG_RESOURCE_PREFIX):
                free[name] += int(value)
    free.subtract(held)
    return Counter({name: n for name, n in free.items() if n > 0})


def fragmented_slices(free: Counter[str], pending: Counter[str]) -> int:
    """Free MIG slices beyond what pending requests of the same profile can take; 0 when
    no GPU request is pending."""
    if not pending:
        return 0
    return sum(max(0, n - pending.get(name, 0)) * mig_slices(name) for name, n in free.items())


def pending_requests(pods: list[JSON]) -> tuple[int, Counter[str]]:
    """Pods waiting for GPUs (unbound, not finished) and the devices they ask for."""
    waiting = [p for p in pods if is_active(p) and node_of(p) is None and gpu_requests(p)]
    asked: Counter[str] = Counter()
    for pod in waiting:
        asked.update(gpu_requests(pod))
    return len(waiting), asked


def take_sample(t_s: float, nodes: list[JSON], pods: list[JSON], gpus_per_node: int,
                slices_per_gpu: int) -> Sample:
    """One sample of the cluster (every namespace: demand is demand, whoever sent it)."""
    dgx = dgx_nodes(nodes)
    names = {n["metadata"]["name"] for n in dgx}
    bound = [p for p in pods if is_active(p) and node_of(p) in names and gpu_requests(p)]
    allocated = sum(gpu_share(gpu_requests(p), slices_per_gpu) for p in bound)
    total = len(dgx) * gpus_per_node
    free = free_mig_devices(dgx, pods)
    pending, asked = pending_requests(pods)
    return Sample(
        t_s=t_s, total_gpus=total, allocated_gpus=allocated,
        allocation_ratio=allocated / total if total else 0.0,
        free_mig_slices=sum(n * mig_slices(name) for name, n in free.items()),
        fragmented_slices=fragmented_slices(free, asked), pending=pending, running=len(bound))
