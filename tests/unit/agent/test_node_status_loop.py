"""The node's status loop outlives a failed heartbeat: later changes still reach the Node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
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


class AnnotationKube(RecordingKube):
    """A kind-mode Node whose metadata patches (labels, the inventory annotation) are
    recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.node_patches: list[JSON] = []
        self.labels: dict[str, str] = {}

    async def read_node(self, name: str) -> JSON:
        return {"metadata": {"name": name, "uid": "u", "labels": dict(self.labels)}}

    async def patch_node(self, name: str, body: JSON) -> JSON:
        self.node_patches.append(body)
        self.labels.update((body.get("metadata") or {}).get("labels") or {})
        return await self.read_node(name)


def _owners(patch: JSON) -> dict[str, str]:
    text = patch["metadata"]["annotations"][nodes_module.INVENTORY_ANNOTATION]
    return {d["id"]: d["owner"] for d in json.loads(text)["devices"] if d.get("owner")}


async def _settle(controller: NodeController) -> None:
    for _ in range(20):
        await asyncio.sleep(0.03)
        if not controller._dirty.is_set():
            return


async def _pods_come_and_go(controller: NodeController, sim: SimNode,
                            writes: Callable[[], int], monkeypatch: pytest.MonkeyPatch
                            ) -> tuple[int, int]:
    """Pods take every GPU and give one back (owner changes alone), then a GPU turns
    unhealthy: the Node writes and the looks at the node that the owner changes cost;
    returns once the health change was written."""
    gpus = [g.uuid for g in sim.hardware.gpus]
    await _settle(controller)
    sim.allocate(gpus[0], "ns/first/main")  # kind mode: sets the owners' report timer
    await _settle(controller)
    before, looked = writes(), 0
    real_sync = controller._sync

    async def counted() -> None:
        nonlocal looked
        looked += 1
        await real_sync()

    monkeypatch.setattr(controller, "_sync", counted)
    for i in range(1, 8):
        sim.allocate(gpus[i], f"ns/p{i}/main")
        await _settle(controller)
    sim.release(gpus[1])
    await _settle(controller)
    quiet, looks = writes() - before, looked
    sim.set_health(gpus[7], False, xid=79)
    deadline = asyncio.get_running_loop().time() + 10
    while writes() == before + quiet and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return quiet, looks


def test_owner_changes_wait_for_their_report_and_a_layout_change_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods starting and ending only move owners: within the report window the node
    neither writes nor rebuilds its inventory for them; a health change goes out at
    once and carries the owners of that moment."""
    monkeypatch.setattr(nodes_module, "OWNERS_REPORT_S", 600.0)
    monkeypatch.setattr(nodes_module, "DEBOUNCE_S", 0.01)

    async def scenario() -> tuple[AnnotationKube, int, int, dict[str, str]]:
        kube = AnnotationKube()
        sim = SimNode.create("n")
        controller = NodeController(kube=kube, sim=sim, devices=None,  # type: ignore[arg-type]
                                    strategy="mixed")
        await controller.start()
        try:
            quiet, looks = await _pods_come_and_go(
                controller, sim, lambda: len(kube.node_patches), monkeypatch)
            return kube, quiet, looks, dict(sim.state.allocations)
        finally:
            await controller.stop()

    kube, quiet, looked, held = asyncio.run(scenario())
    assert quiet == 0, "owner changes inside the report window are not written one by one"
    assert looked == 0, f"the node was looked over {looked} times for owner changes alone"
    last = kube.node_patches[-1]
    assert _owners(last) == held, "the layout change carries the owners of its moment"
    assert '"Unhealthy"' in last["metadata"]["annotations"][nodes_module.INVENTORY_ANNOTATION]


class KubeletlessKube(RecordingKube):
    """A kubelet-less Node: the node owns its status and Lease."""

    async def renew_lease(self, name: str, duration_s: int, uid: str | None) -> None:
        return None


class StaticDevices:
    """A device manager whose plugins advertise eight GPUs throughout."""

    def capacity(self) -> dict[str, int]:
        return {"nvidia.com/gpu": 8}

    def allocatable(self) -> dict[str, int]:
        return {"nvidia.com/gpu": 8}


def _annotation(patch: JSON) -> JSON | None:
    text = ((patch.get("metadata") or {}).get("annotations") or {}).get(
        nodes_module.INVENTORY_ANNOTATION)
    return None if text is None else dict(json.loads(text))


def test_kubeletless_the_inventory_names_no_owners_and_pods_moving_cost_the_node_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubelet-less each pod records its devices itself (``dgxsim.io/devices``): the
    inventory annotation names no owners, so pods starting and ending neither write
    the Node nor make the node look at it; a health change goes out at once."""
    monkeypatch.setattr(nodes_module, "DEBOUNCE_S", 0.01)

    async def scenario() -> tuple[list[JSON], int, int]:
        kube = KubeletlessKube()
        sim = SimNode.create("n")
        controller = NodeController(kube=kube, sim=sim,  # type: ignore[arg-type]
                                    devices=StaticDevices(), strategy="mixed")  # type: ignore[arg-type]
        await controller.start()
        try:
            quiet, looks = await _pods_come_and_go(
                controller, sim, lambda: len(kube.status_patches), monkeypatch)
            return kube.status_patches, quiet, looks
        finally:
            await controller.stop()

    patches, quiet, looked = asyncio.run(scenario())
    assert quiet == 0, "pods starting and ending do not write the Node"
    assert looked == 0, f"the node was looked over {looked} times for owner changes alone"
    sent = [a for p in patches if (a := _annotation(p)) is not None]
    assert sent, "the inventory went out with the node's status"
    assert all(not d.get("owner") for a in sent for d in a["devices"]), \
        "the inventory annotation names no owners"
    assert any(d.get("health") == "Unhealthy" for d in sent[-1]["devices"]), \
        "a health change goes out at once"
