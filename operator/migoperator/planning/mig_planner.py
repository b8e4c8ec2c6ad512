"""Dynamic MIG partitioning: which GPUs of which nodes to carve, and how, for pending demand.

For nodes labelled ``dgxsim.io/mig-policy=dynamic`` the operator turns pending
requests (unbound pods asking for ``nvidia.com/mig-<profile>`` or
``nvidia.com/gpu``, and DGXJobs waiting for devices) into per-node mig-parted
configs. The rules, in order:

1. *Use what exists.* Demand that free devices anywhere can meet is not
   demand for a new layout; the devices it will take are claimed so that no
   plan destroys them.
2. *Fewest GPUs.* The rest is packed largest instance first, each into the
   GPU that is already in use (busy slices, or chosen earlier in this plan)
   and fits it most tightly; a fresh GPU is opened only when none fits, an
   empty MIG-enabled GPU before one that needs idle instances destroyed,
   before one that needs a reset into MIG mode.
3. *Fragmentation-aware slots.* Within a GPU each new instance takes the
   start slot that leaves the free slices most usable
   (:func:`migoperator.planning.slices.best_start`).
4. *Idle only.* A busy instance or a busy whole GPU is never part of a change;
   idle instances are dropped only when the new demand cannot fit around them,
   and dropped ones are put back wherever they still fit.
5. *Damping.* Demand counts once no new request arrived for ``settle_s`` (or
   the oldest has waited ``max_wait_s``); a node changes
   at most once per ``min_interval_s`` and never while a change is in flight;
   a GPU carved in the last ``keep_s`` is not rebuilt for other demand; a node
   whose change failed is left alone for ``failure_backoff_s``. Idle instances
   are never torn down just because demand went away, so layouts do not flap.

Everything is a pure function of (views, requests, memory, now): the caller
applies the decisions and keeps the returned :class:`PartitionMemory`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict

from gpumodel.errors import GpuModelError
from gpumodel.mig import ProfileTable
from gpumodel.vocabulary import GPU_RESOURCE
from migoperator.planning.packing import pack_fewest
from migoperator.planning.slices import Instance, counts, free_slices, place_all
from migoperator.planning.views import GpuView, NodeView, Request

CONFIG_PREFIX = "dgxsim-dynamic-"


@dataclass(frozen=True, slots=True)
class DynamicPolicy:
    """The damping knobs of rule 5 (see the module doc)."""

    settle_s: float = 1.0
    max_wait_s: float = 10.0
    min_interval_s: float = 5.0
    keep_s: float = 30.0
    failure_backoff_s: float = 30.0


class PartitionMemory(BaseModel):
    """What the partitioner remembers between rounds (all times in epoch seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_change: dict[str, float] = {}
    carved: dict[str, float] = {}
    """``node/gpu`` -> when it was last carved for demand."""
    failed: dict[str, float] = {}
    inflight: dict[str, str] = {}
    """node -> the config the operator asked for and is waiting on."""
    seen: dict[str, float] = {}
    """request key -> when the partitioner first saw it waiting."""
    primed: bool = False
    """A first round has run: requests new after it are timed from when they were seen."""


@dataclass(frozen=True, slots=True)
class GpuChange:
    gpu: int
    mig_enabled: bool
    devices: Mapping[str, int]
    was_enabled: bool
    before: Mapping[str, int]
    layout: tuple[Instance, ...] = ()
    """The intended placements (the node side may choose other slots for new ones)."""

    def describe(self) -> str:
        after = _counts_text(self.devices) if self.mig_enabled else "whole GPU"
        if self.mig_enabled != self.was_enabled:
            mode = "MIG on" if self.mig_enabled else "MIG off"
            return f"GPU {self.gpu}: {mode} (reset), {after}"
        return f"GPU {self.gpu}: {_counts_text(self.before) or 'empty'} -> {after or 'empty'}"


@dataclass(frozen=True, slots=True)
class NodeDecision:
    node: str
    config_name: str
    changes: tuple[GpuChange, ...]
    serves: Mapping[str, int]
    """request key -> devices this change creates for it."""
    gpus_in_use: int
    """GPUs holding busy or newly carved instances on this node after the change."""

    def entries(self) -> list[dict[str, object]]:
        """The named config's entries in mig-parted form, one per changed GPU."""
        out: list[dict[str, object]] = []
        for c in self.changes:
            entry: dict[str, object] = {"devices": [c.gpu], "mig-enabled": c.mig_enabled}
            if c.mig_enabled:
                entry["mig-devices"] = dict(c.devices)
            out.append(entry)
        return out

    def reason(self) -> str:
        changes = "; ".join(c.describe() for c in self.changes)
        pods = len(self.serves)
        return (f"{self.config_name}: {changes} for {pods} pending request(s); "
                f"{self.gpus_in_use} GPU(s) in use after the change")


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    decisions: tuple[NodeDecision, ...]
    memory: PartitionMemory
    demand: Mapping[str, int]
    """Settled pending demand by resource (before existing supply is subtracted)."""
    unmet: Mapping[str, int]
    """Demand no existing device and no decision of this plan serves."""
    waiting: Mapping[str, str] = field(default_factory=dict)
    """Dynamic node -> why it was left alone this round."""


def _counts_text(devices: Mapping[str, int]) -> str:
    return " + ".join(name if n == 1 else f"{n}x {name}" for name, n in devices.items() if n)


def config_name(node: str, entries: list[dict[str, object]]) -> str:
    """``dgxsim-dynamic-<node>-<hash>``: a new name per layout, so the node applies each."""
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:8]
    return f"{CONFIG_PREFIX}{node}-{digest}"


# ---------------------------------------------------------------- memory

def observe(memory: PartitionMemory, nodes: Sequence[NodeView], now: float,
            policy: DynamicPolicy) -> PartitionMemory:
    """Fold the nodes' answers (``mig.config.state``) into the memory; forget old entries."""
    by_name = {n.name: n for n in nodes}
    inflight, failed = dict(memory.inflight), dict(memory.failed)
    for node, wanted in memory.inflight.items():
        view = by_name.get(node)
        if view is None or view.mig_config != wanted or view.mig_config_state == "success":
            inflight.pop(node)
        elif view.mig_config_state == "failed":
            inflight.pop(node)
            failed[node] = now
    failed = {k: t for k, t in failed.items() if now - t < policy.failure_backoff_s}
    carved = {k: t for k, t in memory.carved.items() if now - t < policy.keep_s}
    return memory.model_copy(update={"inflight": inflight, "failed": failed,
                                     "carved": carved})


def why_not(node: NodeView, memory: PartitionMemory, now: float, policy: DynamicPolicy
            ) -> str | None:
    """Why a dynamic node may not change now, or None when it may."""
    state = node.mig_config_state
    checks = (
        (not node.ready or not node.schedulable, "node is not ready or is cordoned"),
        (node.table() is None or not node.gpus, "no MIG-capable GPUs in the inventory"),
        (node.name in memory.inflight,
         f"waiting for {memory.inflight.get(node.name)} to apply"),
        (state in ("pending", "rebooting"), f"reconfiguring (state {state})"),
        (node.mig_config is not None and state is None,
         "waiting for the node to answer nvidia.com/mig.config"),
        (node.name in memory.failed, "backing off after a failed reconfiguration"),
        (now - memory.last_change.get(node.name, float("-inf")) < policy.min_interval_s,
         "rate limited"),
        (node.unsettled, "waiting for bound pods to be admitted"),
        (any(g.mode_pending for g in node.gpus), "a GPU reset is pending"),
    )
    return next((why for failed, why in checks if failed), None)


# ---------------------------------------------------------------- working copy

@dataclass(slots=True)
class _Gpu:
    view: GpuView
    enabled: bool
    instances: list[Instance]
    whole_claimed: bool = False
    opened: bool = False
    changed: bool = False

    @property
    def usable(self) -> bool:
        v = self.view
        return v.healthy and not v.split and not v.mode_pending and not v.whole_busy \
            and not self.whole_claimed

    @property
    def in_use(self) -> bool:
        return self.opened or any(i.busy for i in self.instances) or self.view.whole_busy \
            or self.whole_claimed


def _working(node: NodeView) -> list[_Gpu]:
    return [_Gpu(g, g.mig_enabled, list(g.instances)) for g in node.gpus]


# ---------------------------------------------------------------- supply

def _claim_supply(requests: Sequence[Request], nodes: Sequence[NodeView],
                  work: dict[str, list[_Gpu]]) -> list[Request]:
    """Match requests to free devices (rule 1); return what remains unmet."""
    left = {(n.name, r): n.free(r) for n in nodes for r in n.allocatable}
    unmet = []
    for req in sorted(requests, key=lambda r: (r.since, r.key)):
        need = req.count
        for node in nodes:
            if need == 0:
                break
            have = left.get((node.name, req.resource), 0)
            if have <= 0 or not req.matches(node.labels) or (have < need and not req.divisible):
                continue
            take = min(have, need)
            left[(node.name, req.resource)] = have - take
            _claim_devices(work.get(node.name, []), req, take)
            need -= take
        if need:
            unmet.append(replace(req, count=need))
    return unmet


def _claim_devices(gpus: list[_Gpu], req: Request, count: int) -> None:
    """Mark ``count`` idle devices of the request's resource busy in the working copy."""
    if req.resource == GPU_RESOURCE:
        for gpu in gpus:
            if count and gpu.view.free_whole and not gpu.whole_claimed:
                gpu.whole_claimed, count = True, count - 1
        return
    # Idle instances on GPUs that are busy anyway first: idle GPUs stay rebuildable.
    for gpu in sorted(gpus, key=lambda g: (not g.in_use, g.view.index)):
        for i, inst in enumerate(gpu.instances):
            if count and not inst.busy and inst.profile == req.profile and not gpu.view.split:
                gpu.instances[i] = replace(inst, busy=True)
                count -= 1


# ---------------------------------------------------------------- fitting

@dataclass(frozen=True, slots=True)
class _Option:
    score: tuple[int, ...]
    gpu: _Gpu
    instances: list[Instance]


def _option(table: ProfileTable, gpu: _Gpu, names: Sequence[str], protected: bool
            ) -> _Option | None:
    """The best way to add ``names`` to ``gpu``, scored (lower is better).

    Around every existing instance if possible; otherwise (unless the GPU was
    carved recently) around its busy ones only, putting back each idle one that
    still fits. ``place_all`` keeps the given instances first and appends the
    new ones, which are marked busy: they are spoken for.
    """
    if not gpu.usable or (not gpu.enabled and gpu.in_use):
        return None
    placed = place_all(table, gpu.instances, names)
    destroyed = 0
    if placed is not None:
        result = [*placed[:len(gpu.instances)],
                  *(replace(i, busy=True) for i in placed[len(gpu.instances):])]
    else:
        kept = [i for i in gpu.instances if i.busy]
        first = None if protected else place_all(table, kept, names)
        if first is None:
            return None
        result = [*first[:len(kept)], *(replace(i, busy=True) for i in first[len(kept):])]
        for idle in sorted((i for i in gpu.instances if not i.busy), key=lambda i: -i.size):
            again = place_all(table, result, [idle.profile])
            if again is None:
                destroyed += 1
            else:
                result = list(again)
    score = (1 if destroyed else 0, 0 if gpu.enabled else 1, free_slices(table, result),
             destroyed, gpu.view.index)
    return _Option(score, gpu, result)


def _flip_to_whole(gpus: list[_Gpu], protected: set[int], count: int, partial: bool) -> int:
    """Turn up to ``count`` idle MIG GPUs into whole GPUs; return how many.

    A pod needs all its GPUs on one node, so unless ``partial`` it is all or none.
    """
    candidates = sorted((g for g in gpus if g.usable and g.enabled and not g.in_use
                         and not (g.view.index in protected and g.instances)),
                        key=lambda g: (len(g.instances), g.view.index))
    if len(candidates) < count and not partial:
        return 0
    chosen = candidates[:count]
    for gpu in chosen:
        gpu.enabled, gpu.instances, gpu.changed, gpu.whole_claimed = False, [], True, True
    return len(chosen)


def _mig_items(table: ProfileTable, requests: Sequence[Request]) -> list[tuple[str, str]]:
    items = []
    for req in requests:
        profile = req.profile
        if profile is None:
            continue
        try:
            spec = table.get(profile)
        except GpuModelError:
            continue
        if spec.name != profile:
            continue
        items += [(profile, req.key)] * req.count
    return sorted(items, key=lambda it: (-table.get(it[0]).memory_slices,
                                         -table.get(it[0]).compute_slices))


def fit_node(node: NodeView, gpus: list[_Gpu], requests: Sequence[Request],
             protected: set[int]) -> Counter[str]:
    """Carve ``gpus`` (in place) for as much of ``requests`` as fits; request key -> served.

    Instances first join GPUs already in use (tightest fit); the rest are
    packed onto the fewest fresh GPUs (:func:`~migoperator.planning.packing.pack_fewest`).
    """
    table = node.table()
    served: Counter[str] = Counter()
    if table is None:
        return served
    for req in requests:
        if req.resource == GPU_RESOURCE:
            served[req.key] += _flip_to_whole(gpus, protected, req.count, req.divisible)
    in_use = [g for g in gpus if g.in_use and g.enabled]
    deferred: dict[str, list[str]] = {}
    for profile, key in _mig_items(table, requests):
        options = [o for g in in_use
                   if (o := _option(table, g, [profile], g.view.index in protected))]
        if options:
            _take(min(options, key=lambda o: o.score))
            served[key] += 1
        else:
            deferred.setdefault(profile, []).append(key)
    names = [p for p, keys in deferred.items() for _ in keys]
    for filling in sorted(pack_fewest(table, names), key=lambda f: -sum(
            table.get(n).memory_slices * c for n, c in f.items())):
        wanted = list(filling.elements())
        options = [o for g in gpus if not g.in_use
                   if (o := _option(table, g, wanted, g.view.index in protected))]
        if not options:
            continue
        _take(min(options, key=lambda o: o.score))
        for name in wanted:
            served[deferred[name].pop(0)] += 1
    return served


def _take(option: _Option) -> None:
    gpu = option.gpu
    gpu.instances = option.instances
    gpu.enabled, gpu.opened, gpu.changed = True, True, True


def _decision(node: NodeView, gpus: list[_Gpu], served: Counter[str]) -> NodeDecision | None:
    changes = []
    for gpu in gpus:
        if not gpu.changed:
            continue
        after = counts(gpu.instances) if gpu.enabled else {}
        before = counts(gpu.view.instances) if gpu.view.mig_enabled else {}
        if gpu.enabled == gpu.view.mig_enabled and after == before:
            continue
        changes.append(GpuChange(gpu=gpu.view.index, mig_enabled=gpu.enabled, devices=after,
                                 was_enabled=gpu.view.mig_enabled, before=before,
                                 layout=tuple(sorted(gpu.instances, key=lambda i: i.start))))
    if not changes:
        return None
    entries = [{"devices": [c.gpu], "mig-enabled": c.mig_enabled,
                **({"mig-devices": dict(c.devices)} if c.mig_enabled else {})} for c in changes]
    in_use = sum(1 for g in gpus if g.in_use)
    return NodeDecision(node=node.name, config_name=config_name(node.name, entries),
                        changes=tuple(changes), serves=dict(served), gpus_in_use=in_use)


# ---------------------------------------------------------------- the plan

def plan_partitions(nodes: Sequence[NodeView], requests: Sequence[Request],
                    memory: PartitionMemory, now: float,
                    policy: DynamicPolicy = DynamicPolicy()) -> PartitionPlan:
    """Decide the dynamic nodes' next layouts for the pending ``requests`` (module doc)."""
    memory = observe(memory, nodes, now, policy)
    requests, memory = first_seen(requests, memory, now)
    settled = settled_requests(requests, now, policy)
    demand = Counter[str]()
    for req in settled:
        demand[req.resource] += req.count
    work = {n.name: _working(n) for n in nodes}
    unmet = _claim_supply(settled, nodes, work)
    waiting: dict[str, str] = {}
    eligible = []
    for node in sorted((n for n in nodes if n.dynamic), key=lambda n: n.name):
        why = why_not(node, memory, now, policy)
        if why is None:
            eligible.append(node)
        elif unmet:
            waiting[node.name] = why
    eligible.sort(key=lambda n: (-sum(1 for g in work[n.name] if g.in_use), n.name))
    decisions = []
    last_change, carved, inflight = (dict(memory.last_change), dict(memory.carved),
                                     dict(memory.inflight))
    for node in eligible:
        mine = [r for r in unmet if r.matches(node.labels)]
        if not mine:
            continue
        protected = {int(k.rsplit("/", 1)[1]) for k in carved
                     if k.rsplit("/", 1)[0] == node.name}
        gpus = work[node.name]
        served = fit_node(node, gpus, mine, protected)
        decision = _decision(node, gpus, served)
        if decision is None:
            continue
        decisions.append(decision)
        last_change[node.name] = now
        inflight[node.name] = decision.config_name
        for change in decision.changes:
            carved[f"{node.name}/{change.gpu}"] = now
        unmet = _subtract(unmet, served)
    leftover = Counter[str]()
    for req in unmet:
        leftover[req.resource] += req.count
    memory = memory.model_copy(update={"last_change": last_change, "carved": carved,
                                       "inflight": inflight})
    return PartitionPlan(decisions=tuple(decisions), memory=memory, demand=dict(demand),
                         unmet=dict(leftover), waiting=waiting)


def first_seen(requests: Sequence[Request], memory: PartitionMemory, now: float
               ) -> tuple[list[Request], PartitionMemory]:
    """Each request timed from when the partitioner first saw it, if that is later.

    Creation timestamps have one-second resolution, so a pod created a moment
    ago can look almost a second old, and a burst of pods that straddles a second
    looks settled after its first half. Settling on what this partitioner has
    itself seen is exact. In the first round after a start the timestamps are all
    there is (those requests were waiting before the partitioner looked).
    """
    seen = {r.key: memory.seen.get(r.key, now if memory.primed else r.since)
            for r in requests}
    timed = [replace(r, since=max(r.since, seen[r.key])) for r in requests]
    return timed, memory.model_copy(update={"seen": seen, "primed": True})


def settled_requests(requests: Sequence[Request], now: float, policy: DynamicPolicy
                     ) -> list[Request]:
    """The demand to act on: all of it once no request arrived for ``settle_s``.

    Pods of one Job or one ``kubectl apply`` arrive over a moment; acting on
    the first of them would carve a layout for a fraction of the demand and
    then change it again. While requests keep arriving the planner waits, but
    never longer than ``max_wait_s`` for the oldest (then it takes those that
    have waited ``settle_s``).
    """
    if not requests:
        return []
    if now - max(r.since for r in requests) >= policy.settle_s:
        return list(requests)
    if now - min(r.since for r in requests) >= policy.max_wait_s:
        return [r for r in requests if now - r.since >= policy.settle_s]
    return []


def _subtract(requests: list[Request], served: Mapping[str, int]) -> list[Request]:
    out = []
    for req in requests:
        got = served.get(req.key, 0)
        if got < req.count:
            out.append(replace(req, count=req.count - got))
    return out
