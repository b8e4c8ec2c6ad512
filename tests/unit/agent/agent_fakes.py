"""Fakes at the node agent's process edge (the API server, the device manager's allocation
side) and builders shared by the agent's unit tests; the node (SimNode), the checkpoint
and the pod controller they drive are the real ones."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dgxnode.agent.checkpoint import Checkpoint, ContainerAllocation
from dgxnode.agent.errors import DeviceAllocationError
from dgxnode.clock import settle
from dgxnode.node import SimNode
from gpumodel.vocabulary import DURATION_ANNOTATION, GPU_RESOURCE
from kubewire.errors import error_for

JSON = dict[str, Any]
NODE = "dgx-0"


@dataclass
class FakeKube:
    """Records what the agent writes; ``refuse`` lists (call, phase-or-None, status) to fail."""

    patches: list[tuple[str, str, JSON]] = field(default_factory=list)
    statuses: list[tuple[str, JSON]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    refuse: list[tuple[str, str | None, int]] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    """(call, pod name) of every pod write, in order."""

    def _maybe_refuse(self, call: str, phase: str | None) -> None:
        for i, (c, p, status) in enumerate(self.refuse):
            if c == call and (p is None or p == phase):
                del self.refuse[i]
                raise error_for(call, status, f"{call} refused")

    async def patch_pod(self, namespace: str, name: str, patch: JSON) -> JSON:
        self._maybe_refuse("patch_pod", None)
        self.writes.append(("patch_pod", name))
        self.patches.append((namespace, name, patch))
        return {}

    async def patch_pod_status(self, namespace: str, name: str, patch: JSON, *,
                               answer: bool = True) -> JSON:
        self._maybe_refuse("patch_pod_status", patch["status"].get("phase"))
        self.writes.append(("patch_pod_status", name))
        if "metadata" in patch:  # pods/status takes annotations along with the status
            self.patches.append((namespace, name, {"metadata": patch["metadata"]}))
        self.statuses.append((name, patch["status"]))
        return {}

    async def event(self, involved: JSON, reason: str, message: str, kind: str = "Normal",
                    component: str = "", host: str | None = None) -> None:
        self.events.append((involved["metadata"]["name"], reason, message))

    async def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        self.statuses.append((name, {"phase": "Deleted"}))

    def phase(self, name: str) -> str | None:
        found = [s.get("phase") for n, s in self.statuses if n == name]
        return found[-1] if found else None

    def annotations(self, name: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for _, n, patch in self.patches:
            if n == name:
                merged.update(patch["metadata"]["annotations"])
        return merged


@dataclass
class FakeDevices:
    """The device manager's allocation side over a real checkpoint and the node's GPUs."""

    sim: SimNode
    checkpoint: Checkpoint
    fail_with: Exception | None = None

    async def allocate(self, pod_uid: str, container: str, resource: str, count: int
                       ) -> ContainerAllocation:
        if self.fail_with is not None:
            raise self.fail_with
        existing = self.checkpoint.get(pod_uid, container, resource)
        if existing is not None:  # as the device manager: a restart finds it allocated
            return existing
        held = self.checkpoint.held(resource)
        free = [d.id for d in self.sim.inventory().devices
                if d.resource == resource and d.usable and d.owner is None
                and d.id not in held]
        if len(free) < count:
            raise DeviceAllocationError(f"{resource}: {count} requested, {len(free)} free")
        chosen = tuple(free[:count])
        allocation = ContainerAllocation(resource=resource, device_ids=chosen,
                                         envs={"NVIDIA_VISIBLE_DEVICES": ",".join(chosen)})
        await self.checkpoint.record(pod_uid, container, allocation)
        return allocation

    async def release(self, pod_uid: str) -> None:
        await self.checkpoint.release(pod_uid)


def pod(name: str, gpus: int = 1, annotations: dict[str, str] | None = None,
        phase: str = "Pending") -> JSON:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "annotations": annotations or {DURATION_ANNOTATION: "90s"}},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "containers": [
            {"name": "main", "resources": {"limits": {GPU_RESOURCE: str(gpus)}}}]},
        "status": {"phase": phase},
    }


async def eventually(check: Any, timeout_s: float = 5.0) -> None:
    """Let the controller's tasks run (checkpoint writes go through a worker thread)
    until ``check()`` holds; virtual time does not move meanwhile."""
    for _ in range(int(timeout_s / 0.01)):
        await settle()
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


def nothing_held(sim: SimNode, devices: FakeDevices) -> bool:
    return not sim.state.allocations and not devices.checkpoint.pods()
