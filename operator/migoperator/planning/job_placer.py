"""Gang placement of DGXJobs: every replica at once, or none.

A DGXJob asks for ``replicas`` pods of ``per_replica`` devices each. The placer
takes the pending jobs in order (priority, then age) and, for each, finds
nodes that can take *all* replicas with the capacity left after the jobs
before it; a job that does not fit takes nothing and waits (lower jobs may
still fit around it: backfill). Where to put a gang, in order of preference:

1. *One leaf switch.* Nodes are grouped by the leaf switch of their compute
   fabric (the node label named in the settings); a gang inside one group
   talks across one switch hop. Only when no group can hold it does it span
   groups.
2. *Whole NVLink domains, fewest nodes.* Replicas are packed onto as few
   nodes as possible, so that as much traffic as possible stays on a node's
   NVSwitch fabric; an 8-GPU replica takes a whole DGX A100.
3. *Tight fit.* The last node of a gang is the one whose free devices the
   remainder fills most exactly, leaving whole nodes free for big gangs.

Capacity is what kube-scheduler would compute (allocatable minus the requests
of bound pods) minus replicas already promised to jobs still being placed, so
a restart in the middle of a placement never promises the same devices twice.

A job whose replicas claim their devices through DRA is placed on DRA nodes
only, by the devices their ResourceSlices hold free
(:mod:`migoperator.planning.dra_pools`); each replica placed there takes its
devices from the node's pool, so a MIG slot given to one job is no longer a
whole GPU for the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from migoperator.models import DGXJobSpec
from migoperator.planning.dra_pools import DraPool, dra_key
from migoperator.planning.views import NodeView


@dataclass(frozen=True, slots=True)
class JobRequest:
    key: str
    resource: str
    per_replica: int
    replicas: int
    priority: int = 0
    created: float = 0.0
    selector: tuple[tuple[str, str], ...] = ()
    dra: bool = False
    """Replicas claim devices through DRA; ``resource`` is a :func:`dra_key`."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.selector)


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    name: str
    free: Mapping[str, int]
    """Free devices by extended resource or, on a DRA node, by :func:`dra_key`."""
    leaf: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    pool: DraPool | None = None
    """The node's DRA pool (None for a device-plugin node)."""


@dataclass(frozen=True, slots=True)
class Placement:
    key: str
    nodes: tuple[str, ...]
    """The node of each replica, replica 0 first."""

    @property
    def distinct_nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.nodes))


@dataclass(frozen=True, slots=True)
class Unplaced:
    key: str
    reason: str


def job_order(jobs: Sequence[JobRequest]) -> list[JobRequest]:
    """Higher priority first, then older, then by name (a stable, fair order)."""
    return sorted(jobs, key=lambda j: (-j.priority, j.created, j.key))


def _slots(job: JobRequest, node: NodeCapacity, free: Mapping[str, Mapping[str, int]]) -> int:
    if job.dra != (node.pool is not None):
        return 0
    return free[node.name].get(job.resource, 0) // job.per_replica


def _pack(job: JobRequest, group: Sequence[NodeCapacity],
          free: Mapping[str, Mapping[str, int]]) -> list[tuple[str, int]] | None:
    """(node, replicas) with the fewest nodes and a tight last node; None if it cannot fit."""
    slots = {n.name: _slots(job, n, free) for n in group}
    if sum(slots.values()) < job.replicas:
        return None
    chosen: list[tuple[str, int]] = []
    left = job.replicas
    pool = sorted((n.name for n in group if slots[n.name] > 0), key=lambda n: (-slots[n], n))
    while left:
        fitting = [n for n in pool if slots[n] >= left]
        if fitting:
            tail = min(fitting, key=lambda n: (slots[n] - left, n))
            chosen.append((tail, left))
            return chosen
        head = pool.pop(0)
        chosen.append((head, slots[head]))
        left -= slots[head]
    return chosen


def _leftover(job: JobRequest, packed: list[tuple[str, int]],
              free: Mapping[str, Mapping[str, int]]) -> int:
    return sum(free[n].get(job.resource, 0) - k * job.per_replica for n, k in packed)


def place_job(job: JobRequest, nodes: Sequence[NodeCapacity],
              free: Mapping[str, Mapping[str, int]]) -> Placement | Unplaced:
    """Where all replicas of ``job`` go given ``free`` devices per node (module doc)."""
    candidates = [n for n in nodes if job.matches(n.labels) and _slots(job, n, free) > 0]
    if not candidates:
        return Unplaced(job.key, f"no node has {job.per_replica} free {job.resource}")
    groups: dict[str, list[NodeCapacity]] = {}
    for node in candidates:
        groups.setdefault(node.leaf or "", []).append(node)
    best: tuple[tuple[int, int, str], list[tuple[str, int]]] | None = None
    for leaf, members in sorted(groups.items()):
        packed = _pack(job, members, free)
        if packed is not None:
            score = (len(packed), _leftover(job, packed, free), leaf)
            if best is None or score < best[0]:
                best = (score, packed)
    if best is None:
        packed = _pack(job, candidates, free) if len(groups) > 1 else None
        if packed is None:
            total = sum(_slots(job, n, free) for n in candidates)
            return Unplaced(job.key, f"needs {job.replicas} replica(s) of {job.per_replica} "
                            f"{job.resource}; free nodes hold {total}")
        best = ((0, 0, ""), packed)
    replicas: list[str] = []
    for name, k in best[1]:
        replicas += [name] * k
    return Placement(job.key, tuple(replicas))


def place_jobs(jobs: Sequence[JobRequest], nodes: Sequence[NodeCapacity]
               ) -> list[Placement | Unplaced]:
    """Place ``jobs`` in :func:`job_order`, each taking capacity from those after it."""
    free: dict[str, dict[str, int]] = {n.name: dict(n.free) for n in nodes}
    pools = {n.name: n.pool for n in nodes if n.pool is not None}
    out: list[Placement | Unplaced] = []
    for job in job_order(jobs):
        result = place_job(job, nodes, free)
        if isinstance(result, Placement):
            for name in result.nodes:
                if job.dra:
                    pools[name] = pools[name].take(job.resource, job.per_replica)
                    free[name] = pools[name].free()
                else:
                    free[name][job.resource] -= job.per_replica
        out.append(result)
    return out


def node_capacities(views: Sequence[NodeView], pools: Mapping[str, DraPool] | None = None,
                    promised: Sequence[tuple[str, str, int]] = ()) -> list[NodeCapacity]:
    """Free devices per Ready, schedulable node, as kube-scheduler counts them.

    ``pools`` are the DRA nodes' pools; ``promised`` are ``(node, dra_key, count)`` of
    replicas placed there whose claims are not allocated yet, taken from the pools.
    """
    left = dict(pools or {})
    for node, key, count in promised:
        if node in left:
            left[node] = left[node].take(key, count)
    out = []
    for v in views:
        if not (v.ready and v.schedulable):
            continue
        pool = left.get(v.name)
        free = {r: v.free(r) for r in v.allocatable}
        out.append(NodeCapacity(name=v.name, free=free | (pool.free() if pool else {}),
                                leaf=v.leaf, labels=v.labels, pool=pool))
    return out


def job_request_of(key: str, spec: DGXJobSpec, created: float) -> JobRequest:
    dra = spec.allocation == "DRA"
    return JobRequest(key=key, resource=dra_key(spec.mig_profile) if dra else spec.resource,
                      per_replica=spec.per_replica, replicas=spec.replicas,
                      priority=spec.priority, created=created,
                      selector=tuple(sorted(spec.node_selector.items())), dra=dra)
