"""The node agent: one asyncio process that plays the kubelet for many simulated nodes.

It starts a :class:`~dgxnode.agent.nodes.NodeController` per node (Node object,
Lease, labels, MIG label protocol) and one :class:`~dgxnode.agent.pods.PodController`
for all of them, then follows two watches, as KWOK does: pods bound to any
node (filtered to its own) and its own Node objects, each with
:func:`kubewire.list_and_watch`: a watch the server ends is resumed from the
last resourceVersion seen; one that expired or failed is listed again, so
nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dgxnode.agent.dra import ClaimManager
from dgxnode.agent.kube import Kube
from dgxnode.agent.nodes import APPLY_CONCURRENCY, NodeController
from dgxnode.agent.pods import NodePods, PodController, PodTelemetry
from dgxnode.clock import Clock
from gpumodel.vocabulary import NODE_LABEL
from kubewire import (
    JSON,
    KubeError,
    Lister,
    ObjectList,
    Watcher,
    WatchEvent,
    list_and_watch,
)

log = logging.getLogger(__name__)
RETRY_S = 1.0
POD_SELECTOR = "spec.nodeName!="
NODE_SELECTOR = f"{NODE_LABEL}=true"
START_CONCURRENCY = 16
"""Nodes registering with the API server at once when the agent starts."""


@dataclass
class NodeAgent:
    """Drives every simulated node of this process."""

    kube: Kube
    controllers: dict[str, NodeController]
    pods: PodController | None
    node_selector: str = NODE_SELECTOR
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    live: dict[str, bool] = field(default_factory=dict)
    """Per watch (``pod``, ``node``): True from a successful list until the watch fails;
    ``dgxsim status`` reports the agent unhealthy while one is not."""

    @classmethod
    def build(cls, kube: Kube, controllers: list[NodeController], clock: Clock,
              predictor: Any = None, telemetry: PodTelemetry | None = None,
              damage: dict[str, list[str]] | None = None,
              claims: dict[str, ClaimManager] | None = None) -> NodeAgent:
        """The kubelet-less agent: nodes, their status and their pods; ``damage`` says
        which of each node's files could not be used at start (see :meth:`start`); ``claims``
        is the DRA side of the nodes that offer their GPUs through DRA."""
        table = {c.name: c for c in controllers}
        damage = damage or {}
        claims = claims or {}
        pods = PodController(kube, {c.name: NodePods(c.sim, c.devices,
                                                     list(damage.get(c.name, ())),
                                                     claims.get(c.name))
                                    for c in controllers if c.devices is not None},
                             clock=clock, predictor=predictor, telemetry=telemetry)
        return cls(kube, table, pods)

    @classmethod
    def beside_kubelet(cls, kube: Kube, controller: NodeController) -> NodeAgent:
        """Under a real kubelet: one node's labels and MIG protocol, no pods."""
        return cls(kube, {controller.name: controller}, None,
                   node_selector=f"metadata.name={controller.name}")

    async def start(self) -> None:
        gate = asyncio.Semaphore(APPLY_CONCURRENCY)
        starting = asyncio.Semaphore(START_CONCURRENCY)

        async def start(controller: NodeController) -> None:
            async with starting:
                await controller.start()

        for controller in self.controllers.values():
            controller.apply_gate = gate
            if controller.devices is not None:
                controller.devices.on_change = _async(controller.devices_changed)
        # Registration (read or create the Node, first status) for many nodes at once.
        results = await asyncio.gather(*(start(c) for c in self.controllers.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._tasks = [asyncio.create_task(self._follow_nodes(), name="watch nodes")]
        if self.pods is not None:
            listed = await self.kube.list_pods(field_selector=POD_SELECTOR)
            await self.pods.reconcile([p for p in listed.items
                                       if p["spec"].get("nodeName") in self.controllers])
            self._tasks.append(asyncio.create_task(self._follow_pods(), name="watch pods"))
        self.ready.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pods is not None:
            await self.pods.stop()
        for controller in self.controllers.values():
            await controller.stop()

    async def _follow_pods(self) -> None:
        pods = self.pods
        assert pods is not None

        async def listed(items: list[JSON]) -> None:
            for pod in items:
                await pods.on_pod_event("ADDED", pod)

        await self._follow("pod", lambda: self.kube.list_pods(field_selector=POD_SELECTOR),
                           lambda version: self.kube.watch_pods(
                               version, field_selector=POD_SELECTOR),
                           listed, pods.on_pod_event)

    async def _follow_nodes(self) -> None:
        await self._follow("node", self._list_nodes, self._watch_nodes, self._nodes_listed,
                           self._node_event)

    async def _list_nodes(self) -> ObjectList:
        label, field = self._selectors()
        return await self.kube.list_nodes(label_selector=label, field_selector=field)

    def _watch_nodes(self, version: str) -> AsyncIterator[WatchEvent]:
        label, field = self._selectors()
        return self.kube.watch_nodes(version, label_selector=label, field_selector=field)

    async def _follow(self, what: str, lister: Lister, watcher: Watcher,
                      on_list: Callable[[list[JSON]], Awaitable[None]],
                      on_event: Callable[[str, JSON], Awaitable[None]]) -> None:
        """List and watch for ever; after a failure, wait a moment and list again.

        Nothing ends this loop but cancellation: an API server or etcd that restarts
        ends the watch with an error, and the agent lists again once it answers; an
        error of the agent's own is logged and the watch starts over rather than
        leaving every node deaf."""
        self.live[what] = False

        async def listed(items: list[JSON]) -> None:
            await on_list(items)
            self.live[what] = True

        while True:
            try:
                await list_and_watch(lister, watcher, listed, on_event)
            except (KubeError, OSError, ValueError) as err:
                log.warning("%s watch ended (%s); listing again", what, err)
            except Exception:
                log.exception("%s watch failed; listing again", what)
            self.live[what] = False
            await asyncio.sleep(RETRY_S)

    async def _nodes_listed(self, items: list[JSON]) -> None:
        """Every listed node is (re)delivered; a node no longer listed was deleted."""
        seen = set()
        for node in items:
            seen.add(node["metadata"]["name"])
            await self._node_event("MODIFIED", node)
        for missing in set(self.controllers) - seen:
            await self.controllers[missing].on_node_event("DELETED", {})

    def _selectors(self) -> tuple[str | None, str | None]:
        """The node selector as (label selector, field selector)."""
        if self.node_selector.startswith("metadata.name="):
            return None, self.node_selector
        return self.node_selector, None

    async def _node_event(self, kind: str, node: JSON) -> None:
        controller = self.controllers.get(node.get("metadata", {}).get("name", ""))
        if controller is not None:
            await controller.on_node_event(kind, node)


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn()

    return call
