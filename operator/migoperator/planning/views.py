"""What the planners see of the cluster: nodes, their GPUs and pending requests.

Why views: the planners must be pure and fast, so they never read Kubernetes
objects. These functions turn a Node (its labels, allocatable and the
``dgxsim.io/inventory`` annotation the node agent publishes) and the pods
bound to it into a :class:`NodeView`, and unbound pods into
:class:`Request` values, once per reconcile. Everything the node agent knows
about a GPU's instances comes from the inventory; what kube-scheduler
believes (allocatable minus the requests of bound pods) comes from the API.
A node whose bound pods hold more than the inventory shows is *unsettled*
(the agent has not admitted them yet) and the partitioner leaves it alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from gpumodel.errors import GpuModelError
from gpumodel.inventory import NodeInventory, held_devices
from gpumodel.mig import ProfileTable, profile_table
from gpumodel.systems import system
from gpumodel.vocabulary import (
    INVENTORY_ANNOTATION,
    JOB_LABEL,
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_POLICY,
    mig_profile_of,
)
from migoperator.models import DGXJobSpec
from migoperator.planning.slices import Instance

JSON = dict[str, Any]
DEVICE_PREFIX = "nvidia.com/"
TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU: MIG mode, health, and its GPU instances with their busy flags."""

    index: int
    mig_enabled: bool
    healthy: bool = True
    whole_busy: bool = False
    """A whole (non-MIG) GPU held by a pod."""
    instances: tuple[Instance, ...] = ()
    split: bool = False
    """Some GI is split into several compute instances (the partitioner leaves it alone)."""
    mode_pending: bool = False

    @property
    def busy(self) -> bool:
        return self.whole_busy or any(i.busy for i in self.instances)

    @property
    def free_whole(self) -> bool:
        return not self.mig_enabled and not self.whole_busy and self.healthy


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    device: str
    """The GPU kind (``a100-40gb``)."""
    gpus: tuple[GpuView, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True
    schedulable: bool = True
    allocatable: Mapping[str, int] = field(default_factory=dict)
    requested: Mapping[str, int] = field(default_factory=dict)
    """Devices asked for by non-terminal pods bound to the node."""
    unsettled: bool = False
    leaf: str | None = None

    @property
    def dynamic(self) -> bool:
        return self.labels.get(MIG_POLICY) == "dynamic"

    @property
    def mig_config(self) -> str | None:
        return self.labels.get(MIG_CONFIG)

    @property
    def mig_config_state(self) -> str | None:
        return self.labels.get(MIG_CONFIG_STATE)

    def free(self, resource: str) -> int:
        """What kube-scheduler would still fit: allocatable minus bound requests."""
        return max(0, self.allocatable.get(resource, 0) - self.requested.get(resource, 0))

    def table(self) -> ProfileTable | None:
        try:
            return profile_table(self.device)
        except (GpuModelError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class Request:
    """Devices one pending pod (or one DGXJob gang) waits for."""

    key: str
    resource: str
    count: int
    since: float
    """When it started waiting (seconds since the epoch)."""
    selector: tuple[tuple[str, str], ...] = ()
    divisible: bool = False
    """May be served by devices on several nodes (a DGXJob gang, not a pod)."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.selector)

    @property
    def profile(self) -> str | None:
        return mig_profile_of(self.resource)


def quantity(text: object) -> int:
    """An extended-resource quantity (always whole: ``"2"``)."""
    try:
        return int(str(text))
    except ValueError:
        return 0


def timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_devices(pod: JSON) -> dict[str, int]:
    """``nvidia.com/*`` devices a pod asks for, summed over its containers."""
    total: Counter[str] = Counter()
    for container in pod.get("spec", {}).get("containers", []):
        resources = container.get("resources") or {}
        asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        for name, value in asked.items():
            if name.startswith(DEVICE_PREFIX):
                total[name] += quantity(value)
    return dict(total)


def is_active(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") not in TERMINAL


def parse_inventory(node: JSON) -> NodeInventory | None:
    text = (node.get("metadata", {}).get("annotations") or {}).get(INVENTORY_ANNOTATION)
    if not text:
        return None
    try:
        return NodeInventory.model_validate_json(text)
    except ValidationError:
        return None


def _gpu_views(inventory: NodeInventory, table: ProfileTable | None,
               held: Mapping[str, str]) -> tuple[GpuView, ...]:
    views = []
    for gpu in inventory.gpus:
        devices = [d for d in inventory.devices if d.gpu_index == gpu.index]
        whole = [d for d in devices if d.kind == "gpu"]
        migs = [d for d in devices if d.kind == "mig" and d.mig is not None]
        by_gi: dict[int, list[Any]] = {}
        for d in migs:
            assert d.mig is not None
            by_gi.setdefault(d.mig.gi_id, []).append(d)
        instances, split = [], False
        for gi_id, cis in sorted(by_gi.items()):
            place = cis[0].mig
            name = (table.get_by_id(place.gi_profile_id).name if table is not None
                    else str(cis[0].profile))
            split = split or len(cis) > 1 or any(c.profile != name for c in cis)
            instances.append(Instance(name, place.memory_start, place.memory_slices,
                                      busy=any(c.id in held for c in cis), gi_id=gi_id))
        healthy = all(d.health == "Healthy" for d in devices)
        views.append(GpuView(
            index=gpu.index, mig_enabled=gpu.mig_mode == "Enabled", healthy=healthy,
            whole_busy=any(d.id in held for d in whole) and gpu.mig_mode != "Enabled",
            instances=tuple(instances), split=split,
            mode_pending=gpu.mig_mode != gpu.mig_mode_pending))
    return tuple(views)


def _ready(node: JSON) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def node_view(node: JSON, bound_pods: Iterable[JSON], leaf_label: str) -> NodeView:
    """The view of one Node object and the active pods bound to it."""
    meta = node.get("metadata", {})
    labels = dict(meta.get("labels") or {})
    inventory = parse_inventory(node)
    device = ""
    if inventory is not None:
        try:
            device = system(inventory.kind).gpu
        except KeyError:
            device = ""
    table = None
    if device:
        try:
            table = profile_table(device)
        except (GpuModelError, KeyError):
            table = None
    pods = list(bound_pods)
    held = held_devices(inventory, pods)
    gpus = _gpu_views(inventory, table, held) if inventory is not None else ()
    requested: Counter[str] = Counter()
    for pod in pods:
        if is_active(pod):
            requested.update(pod_devices(pod))
    owned = Counter(d.resource for d in (inventory.devices if inventory else ())
                    if d.id in held)
    allocatable = {k: quantity(v) for k, v in
                   ((node.get("status") or {}).get("allocatable") or {}).items()
                   if k.startswith(DEVICE_PREFIX)}
    return NodeView(
        name=str(meta.get("name", "")), device=device, gpus=gpus, labels=labels,
        ready=_ready(node), schedulable=_schedulable(node),
        allocatable=allocatable, requested=dict(requested),
        unsettled=any(n > owned.get(r, 0) for r, n in requested.items()),
        leaf=labels.get(leaf_label))


def _schedulable(node: JSON) -> bool:
    """Not cordoned and without a taint that keeps new pods off (``NoSchedule`` or
    ``NoExecute``: an untrusted node's, for one); the operator's pods tolerate none."""
    spec = node.get("spec") or {}
    return not spec.get("unschedulable") and not any(
        t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or [])


def pending_pod_request(pod: JSON) -> Request | None:
    """The request of an unbound, waiting pod that asks for NVIDIA devices, else None.

    Pods of DGXJobs are left out: their jobs' demand is counted from the jobs.
    """
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    if spec.get("nodeName") or meta.get("deletionTimestamp") or not is_active(pod):
        return None
    if JOB_LABEL in (meta.get("labels") or {}):
        return None
    devices = pod_devices(pod)
    if len(devices) != 1:
        return None
    ((resource, count),) = devices.items()
    if count <= 0:
        return None
    selector = tuple(sorted((spec.get("nodeSelector") or {}).items()))
    return Request(key=f"{meta.get('namespace')}/{meta.get('name')}", resource=resource,
                   count=count, since=timestamp(meta.get("creationTimestamp")),
                   selector=selector)


def group_pods_by_node(pods: Iterable[JSON]) -> dict[str, list[JSON]]:
    grouped: dict[str, list[JSON]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            grouped.setdefault(node, []).append(pod)
    return grouped



def job_spec(job: JSON) -> DGXJobSpec | None:
    """The job's spec if it is valid, else None."""
    try:
        return DGXJobSpec.model_validate(job.get("spec") or {})
    except ValidationError:
        return None


def job_phase(job: JSON) -> str | None:
    return (job.get("status") or {}).get("phase")


def job_admitted(job: JSON) -> bool:
    """Validated by the operator (it writes ``status.gpus`` when it admits a job)."""
    return bool((job.get("status") or {}).get("gpus"))


def job_request(job: JSON) -> Request | None:
    """The devices an admitted, waiting DGXJob needs on device-plugin nodes (a gang may
    span nodes); None for a job that claims through DRA."""
    spec = job_spec(job)
    if spec is None or job_phase(job) != "Pending" or not job_admitted(job):
        return None
    if spec.allocation == "DRA":
        return None  # DRA nodes are not partitioned by labels: the scheduler picks slots
    meta = job.get("metadata", {})
    return Request(key=f"job:{meta.get('namespace')}/{meta.get('name')}",
                   resource=spec.resource, count=spec.replicas * spec.per_replica,
                   since=timestamp(meta.get("creationTimestamp")),
                   selector=tuple(sorted(spec.node_selector.items())), divisible=True)
