"""The dynamic partitioner's loop: look, decide (pure), write configs and labels, tell.

Each round lists Nodes, Pods and DGXJobs, builds the planner's views, asks
:func:`~migoperator.planning.mig_planner.plan_partitions` what to change and
carries it out: the per-node mig-parted config into the ConfigMap, then the
node label ``nvidia.com/mig.config`` that makes the node side apply it, then a
Node event with the reason. Rounds run when something changes (the handlers
wake the loop on pod and node events) and at least every ``interval_s``.

The round also watches every node's ``nvidia.com/mig.config.state``: when a
reconfiguration ends ``failed``, the node side's own event (naming the
blocking pods, or the config's parse error) is repeated as an operator event,
so ``kubectl describe`` on the node shows both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gpumodel.inventory import held_devices
from gpumodel.vocabulary import MIG_CONFIG, MIG_CONFIG_STATE
from kubewire import KubeError
from migoperator.apply.configs import put_dynamic_config
from migoperator.apply.kube import Kube
from migoperator.errors import NotReadyError
from migoperator.metrics import Metrics
from migoperator.planning.mig_planner import (
    DynamicPolicy,
    NodeDecision,
    PartitionMemory,
    PartitionPlan,
    plan_partitions,
)
from migoperator.planning.slices import fragmentation
from migoperator.planning.views import (
    NodeView,
    Request,
    group_pods_by_node,
    job_request,
    node_view,
    parse_inventory,
    pending_pod_request,
)
from migoperator.settings import OperatorSettings

log = logging.getLogger(__name__)
JSON = dict[str, Any]
NODE_SIDE_FAILURES = ("MigConfigBlocked", "MigConfigFailed")


def holders(node: JSON, bound_pods: list[JSON]) -> list[str]:
    """Pods holding devices on ``node`` (``namespace/pod``): the owners its inventory
    names and the active pods bound to it that record devices."""
    return sorted(set(held_devices(parse_inventory(node), bound_pods).values()))


def policy_of(settings: OperatorSettings) -> DynamicPolicy:
    d = settings.dynamic
    return DynamicPolicy(settle_s=d.settle_s, max_wait_s=d.max_wait_s,
                         min_interval_s=d.min_interval_s,
                         keep_s=d.keep_s, failure_backoff_s=d.failure_backoff_s)


def node_fragmentation(view: NodeView) -> float:
    """Mean fragmentation of the node's MIG-enabled GPUs with free slices."""
    table = view.table()
    if table is None:
        return 0.0
    values = [fragmentation(table, list(g.instances)) for g in view.gpus
              if g.mig_enabled and sum(i.size for i in g.instances) < table.memory_slices]
    return sum(values) / len(values) if values else 0.0


@dataclass
class Partitioner:
    kube: Kube
    settings: OperatorSettings
    metrics: Metrics
    memory: PartitionMemory = field(default_factory=PartitionMemory)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _reported: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Reconcile until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.dynamic.interval_s)
            self._wake.clear()
            try:
                await self.reconcile()
            except (KubeError, NotReadyError, OSError) as err:
                log.warning("partitioner round failed: %s", err)

    async def reconcile(self, now: float | None = None) -> PartitionPlan:
        """One round (see the module doc); returns the plan it carried out."""
        async with self._lock:
            started = time.monotonic()
            outcome = "error"
            try:
                plan = await self._round(time.time() if now is None else now)
                outcome = "changed" if plan.decisions else "unchanged"
                return plan
            finally:
                self.metrics.reconciled("partition", outcome, time.monotonic() - started)

    async def _round(self, now: float) -> PartitionPlan:
        nodes = (await self.kube.list_nodes()).items
        pods = (await self.kube.list_pods()).items
        jobs = await self.kube.list_jobs()
        by_node = group_pods_by_node(pods)
        leaf = self.settings.placement.leaf_label
        views = [node_view(n, by_node.get(n["metadata"]["name"], []), leaf)
                 for n in nodes if parse_inventory(n) is not None]
        requests: list[Request] = [r for p in pods if (r := pending_pod_request(p))]
        requests += [r for j in jobs if (r := job_request(j))]
        plan = plan_partitions(views, requests, self.memory, now, policy_of(self.settings))
        self.memory = plan.memory
        for decision in plan.decisions:
            await self._carry_out(decision, nodes)
        self.metrics.set_demand(plan.demand, plan.unmet)
        self.metrics.fragmentation = {v.name: node_fragmentation(v) for v in views}
        await self._surface_failures(nodes, by_node)
        return plan

    async def _carry_out(self, decision: NodeDecision, nodes: list[JSON]) -> None:
        namespace = self.settings.kube.namespace
        node = next(n for n in nodes if n["metadata"]["name"] == decision.node)
        await put_dynamic_config(self.kube, namespace, decision.node, decision.config_name,
                                 decision.entries())
        await self.kube.patch_node(decision.node, {"metadata": {"labels": {
            MIG_CONFIG: decision.config_name}}})
        log.info("node %s: %s", decision.node, decision.reason())
        self.metrics.decided("mig-layout")
        await self.kube.event({**node, "kind": "Node", "apiVersion": "v1"},
                              "MigLayoutDecided", decision.reason())

    async def _node_side_reason(self, node: JSON, bound_pods: list[JSON]) -> str:
        """The node side's own words (its latest failure event), else who holds devices.

        Reading events needs ``list`` on events, which a tight RBAC may not grant;
        the pods holding its devices then name what may be in the way.
        """
        name = node["metadata"]["name"]
        try:
            events = [e for e in await self.kube.node_events(name)
                      if e.get("reason") in NODE_SIDE_FAILURES]
        except KubeError:
            events = []
        events.sort(key=lambda e: e.get("lastTimestamp") or e["metadata"].get(
            "creationTimestamp") or "")
        if events:
            return str(events[-1]["message"])
        pods = holders(node, bound_pods)
        return ("pods holding devices on the node: " + ", ".join(pods) if pods
                else "no reason recorded by the node")

    async def _surface_failures(self, nodes: list[JSON], by_node: dict[str, list[JSON]]
                                ) -> None:
        for node in nodes:
            meta = node["metadata"]
            labels = meta.get("labels") or {}
            seen = (labels.get(MIG_CONFIG), labels.get(MIG_CONFIG_STATE))
            name = meta["name"]
            if self._reported.get(name) == seen:
                continue
            self._reported[name] = seen
            if seen[1] != "failed":
                continue
            why = await self._node_side_reason(node, by_node.get(name, []))
            await self.kube.event({**node, "kind": "Node", "apiVersion": "v1"},
                                  "MigReconfigurationFailed",
                                  f"nvidia.com/mig.config={seen[0]} failed: {why}", "Warning")
