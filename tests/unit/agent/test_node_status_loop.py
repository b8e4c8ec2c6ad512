"""The node's status loop outlives a failed heartbeat: later changes still reach the Node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dgxnode.agent.nodes as nodes_module
from dgxnode.agent.nodes import NodeController
from dgxnode.node import SimNode
from kubewire import UnavailableError

JSON = dict[str, Any]


class FlakyKube:
    """A kind-mode Node (the kubelet owns its status) whose first heartbeat fails."""

    def __init__(self) -> None:
        self.heartbeats = 0
        self.node_patches: list[JSON] = []

    async def read_node(self, name: str) -> JSON:
        return {"metadata": {"name": name, "uid": "u", "labels": {}}}

    async def patch_node_status(self, name: str, body: JSON) -> JSON:
        self.heartbeats += 1
        if self.heartbeats == 1:
            raise UnavailableError(f"patch node {name} status", 503, "etcd is restarting")
        return await self.read_node(name)

    async def patch_node(self, name: str, body: JSON) -> JSON:
        self.node_patches.append(body)
        return await self.read_node(name)


def test_a_failed_heartbeat_does_not_end_the_status_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes_module, "STATUS_HEARTBEAT_S", 0.05)

    async def scenario() -> tuple[FlakyKube, bool]:
        kube = FlakyKube()
        sim = SimNode.create("n")
        controller = NodeController(kube=kube, sim=sim, devices=None,  # type: ignore[arg-type]
                                    strategy="mixed")
        await controller.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while kube.heartbeats < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            before = len(kube.node_patches)
            sim.set_health(sim.hardware.gpus[0].uuid, False, xid=79)
            while len(kube.node_patches) == before and (
                    asyncio.get_running_loop().time() < deadline):
                await asyncio.sleep(0.02)
            alive = all(not t.done() for t in controller._tasks)
            return kube, alive and len(kube.node_patches) > before
        finally:
            await controller.stop()

    kube, synced = asyncio.run(scenario())
    assert kube.heartbeats >= 2, "heartbeats go on after the failed one"
    assert synced, "a change after the failed heartbeat reached the Node"


class RecordingKube:
    """A kind-mode Node whose status patches are recorded."""

    def __init__(self) -> None:
        self.status_patches: list[JSON] = []

    async def read_node(self, name: str) -> JSON:
        return {"metadata": {"name": name, "uid": "u", "labels": {}}}

    async def patch_node_status(self, name: str, body: JSON) -> JSON:
        self.status_patches.append(body)
        return await self.read_node(name)

    async def patch_node(self, name: str, body: JSON) -> JSON:
        return await self.read_node(name)


def _node(conditions: list[JSON]) -> JSON:
    return {"metadata": {"name": "n", "uid": "u", "labels": {}},
            "status": {"conditions": conditions}}


def test_a_condition_another_writer_changed_is_reported_again() -> None:
    async def scenario() -> tuple[list[JSON], list[JSON]]:
        kube = RecordingKube()
        controller = NodeController(kube=kube, sim=SimNode.create("n"),  # type: ignore[arg-type]
                                    devices=None, strategy="mixed")
        await controller._send_status(force=True)
        sent = kube.status_patches[-1]["status"]["conditions"][0]
        # An echo of the Node from before the first report (no conditions yet) and one
        # of the report itself change nothing.
        await controller.on_node_event("MODIFIED", _node([]))
        await controller.on_node_event("MODIFIED", _node([sent]))
        await controller._sync()
        quiet = list(kube.status_patches)
        await controller.on_node_event("MODIFIED", _node([{**sent, "status": "Unknown"}]))
        await controller._sync()
        return quiet, kube.status_patches

    quiet, after = asyncio.run(scenario())
    assert len(quiet) == 1, "echoes of the node's own report are not answered"
    assert len(after) == 2, "an overwritten condition is reported again"
    assert after[-1]["status"]["conditions"][0]["status"] == "True"
