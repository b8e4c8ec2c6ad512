"""The node agent: one asyncio process that plays the kubelet for many simulated nodes.

It starts a :class:`~dgxnode.agent.nodes.NodeController` per node (Node object,
Lease, labels, MIG label protocol) and one :class:`~dgxnode.agent.pods.PodController`
for all of them, then follows two watches, as KWOK does: pods bound to any
node (filtered to its own) and its own Node objects. A watch that ends or
fails is listed again and resumed; nothing is missed because each restart
starts from a fresh list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dgxnode.agent.kube import Kube
from dgxnode.agent.nodes import NodeController
from dgxnode.agent.pods import NodePods, PodController
from dgxnode.clock import Clock
from gpumodel.vocabulary import NODE_LABEL
from kubewire import ApiException, read_json

log = logging.getLogger(__name__)
JSON = dict[str, Any]
RETRY_S = 1.0
POD_SELECTOR = "spec.nodeName!="
NODE_SELECTOR = f"{NODE_LABEL}=true"


@dataclass
class NodeAgent:
    """Drives every simulated node of this process."""

    kube: Kube
    controllers: dict[str, NodeController]
    pods: PodController | None
    node_selector: str = NODE_SELECTOR
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def build(cls, kube: Kube, controllers: list[NodeController], clock: Clock,
              predictor: Any = None) -> NodeAgent:
        """The kubelet-less agent: nodes, their status and their pods."""
        table = {c.name: c for c in controllers}
        pods = PodController(kube, {c.name: NodePods(c.sim, c.devices) for c in controllers
                                    if c.devices is not None},
                             clock=clock, predictor=predictor)
        return cls(kube, table, pods)

    @classmethod
    def beside_kubelet(cls, kube: Kube, controller: NodeController) -> NodeAgent:
        """Under a real kubelet: one node's labels and MIG protocol, no pods."""
        return cls(kube, {controller.name: controller}, None,
                   node_selector=f"metadata.name={controller.name}")

    async def start(self) -> None:
        for controller in self.controllers.values():
            if controller.devices is not None:
                controller.devices.on_change = _async(controller.mark_dirty)
            await controller.start()
        self._tasks = [asyncio.create_task(self._follow_nodes(), name="watch nodes")]
        if self.pods is not None:
            items, _ = await self.kube.list_pods(POD_SELECTOR)
            await self.pods.reconcile([p for p in items
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
        assert self.pods is not None
        while True:
            try:
                items, version = await self.kube.list_pods(POD_SELECTOR)
                for pod in items:
                    await self.pods.on_pod_event("ADDED", pod)
                async for kind, pod in self.kube.watch_pods(POD_SELECTOR, version):
                    if kind == "ERROR":
                        break
                    if kind != "BOOKMARK":
                        await self.pods.on_pod_event(kind, pod)
            except (ApiException, OSError, ValueError) as err:
                log.warning("pod watch ended (%s); listing again", err)
                await asyncio.sleep(RETRY_S)

    async def _follow_nodes(self) -> None:
        while True:
            try:
                data = await read_json(await self.kube.core.list_node(
                    **self._selector(), _preload_content=False))
                seen = set()
                for node in data["items"]:
                    seen.add(node["metadata"]["name"])
                    await self._node_event("MODIFIED", node)
                for missing in set(self.controllers) - seen:
                    await self.controllers[missing].on_node_event("DELETED", {})
                version = data["metadata"]["resourceVersion"]
                response = await self.kube.core.list_node(
                    **self._selector(), watch=True, resource_version=version,
                    allow_watch_bookmarks=True, timeout_seconds=300, _preload_content=False)
                if response.status != 200:
                    await read_json(response)
                async with response:
                    async for line in response.content:
                        event = _decode(line)
                        if event is None or event[0] == "BOOKMARK":
                            continue
                        if event[0] == "ERROR":
                            break
                        await self._node_event(*event)
            except (ApiException, OSError, ValueError) as err:
                log.warning("node watch ended (%s); listing again", err)
                await asyncio.sleep(RETRY_S)

    def _selector(self) -> dict[str, str]:
        if self.node_selector.startswith("metadata.name="):
            return {"field_selector": self.node_selector}
        return {"label_selector": self.node_selector}

    async def _node_event(self, kind: str, node: JSON) -> None:
        controller = self.controllers.get(node.get("metadata", {}).get("name", ""))
        if controller is not None:
            await controller.on_node_event(kind, node)


def _decode(line: bytes) -> tuple[str, JSON] | None:
    import json

    if not line.strip():
        return None
    event = json.loads(line)
    return str(event["type"]), event["object"]


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn()

    return call
