"""The life of pods bound to simulated nodes, as a kubelet would live it.

For each pod bound to one of its nodes the agent admits it (devices through
the device manager, exactly the kubelet's GetPreferredAllocation + Allocate),
records the devices as in use on the node (so MIG reconfiguration never
destroys them), marks it Running, and after the run time from its annotations
(divided by the cluster's time scale) marks its containers terminated with
exit code 0. Devices are freed when the pod ends or is deleted. A pod being
deleted gets its shutdown time (capped by its grace period) and is then
removed, as the kubelet removes it. Restarting the agent resumes running pods
where they were: their devices come back from the checkpoint and their clocks
from the pod's start time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dgxnode.agent.errors import AgentError, AnnotationError, DeviceAllocationError
from dgxnode.agent.kube import Kube, now_rfc3339
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.agent.objects import rejected_status, running_status, terminated_status
from dgxnode.agent.workload import PREDICTED, StepPredictor, run_plan, shutdown_seconds
from dgxnode.errors import SimnodeError
from dgxnode.node import SimNode
from gpumodel.vocabulary import DEVICES_ANNOTATION, ENV_ANNOTATION_PREFIX

log = logging.getLogger(__name__)
JSON = dict[str, Any]
DEVICE_PREFIX = "nvidia.com/"


def device_requests(pod: JSON) -> dict[str, dict[str, int]]:
    """container -> {extended resource: count} for the resources device plugins serve."""
    wanted: dict[str, dict[str, int]] = {}
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        devices = {k: int(v) for k, v in asked.items() if k.startswith(DEVICE_PREFIX)}
        if devices:
            wanted[container["name"]] = devices
    return wanted


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass
class NodePods:
    """What the pod controller needs of one node."""

    sim: SimNode
    devices: DeviceManager


@dataclass
class PodController:
    """Runs the pods of every simulated node of this agent."""

    kube: Kube
    nodes: dict[str, NodePods]
    time_scale: float = 1.0
    predictor: StepPredictor | None = None
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    admitted: int = 0
    completed: int = 0

    async def on_pod_event(self, kind: str, pod: JSON) -> None:
        node = pod["spec"].get("nodeName")
        if node not in self.nodes:
            return
        uid = pod["metadata"]["uid"]
        phase = (pod.get("status") or {}).get("phase")
        if kind == "DELETED":
            await self._forget(uid)
            return
        if pod["metadata"].get("deletionTimestamp"):
            if uid not in self.finished or phase not in ("Succeeded", "Failed"):
                await self._terminate(pod)
            else:
                await self._remove(pod)
            return
        if phase in ("Succeeded", "Failed"):
            await self._release(uid)
            self.finished.add(uid)
            return
        if uid not in self.running and uid not in self.finished:
            self.running[uid] = asyncio.create_task(self._run(pod), name=f"pod {uid}")

    async def stop(self) -> None:
        for task in self.running.values():
            task.cancel()
        for task in list(self.running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.running.clear()

    # ------------------------------------------------------------ lifecycle

    async def _run(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        node = self.nodes[pod["spec"]["nodeName"]]
        try:
            devices = await self._admit(pod, node)
            annotations = meta.get("annotations") or {}
            plan = run_plan(annotations, devices, self.predictor)
        except (DeviceAllocationError, SimnodeError) as err:
            await self._reject(pod, "UnexpectedAdmissionError", str(err))
            return
        except AnnotationError as err:
            await self._reject(pod, "InvalidWorkload", str(err))
            return
        status = pod.get("status") or {}
        started_at = status.get("startTime") if status.get("phase") == "Running" else None
        started_at = started_at or now_rfc3339()
        if status.get("phase") != "Running":
            # Annotations first: whoever sees the pod Running also sees its devices.
            await self._announce(pod, devices, plan.duration_s, plan.reason)
            await self.kube.patch_pod_status(meta["namespace"], meta["name"],
                                             running_status(pod, started_at))
            self.admitted += 1
        if plan.duration_s is None or pod["spec"].get("restartPolicy") == "Always":
            return
        wall_s = plan.duration_s / self.time_scale
        elapsed = time.time() - (_parse_time(started_at) or time.time())
        await asyncio.sleep(max(0.0, wall_s - elapsed))
        await self.kube.patch_pod_status(meta["namespace"], meta["name"], terminated_status(
            pod, started_at, 0, "Completed"))
        self.finished.add(uid)
        self.running.pop(uid, None)
        await self._release(uid)
        self.completed += 1
        await self.kube.event(pod, "Completed",
                              f"simulated run finished after {plan.duration_s:.1f} s "
                              f"({wall_s:.2f} s wall at time scale {self.time_scale:g})",
                              host=pod["spec"]["nodeName"])

    async def _admit(self, pod: JSON, node: NodePods) -> dict[str, tuple[str, ...]]:
        """Allocate every container's devices; all or nothing.

        Returns resource -> device IDs; the Allocate answers stay in the checkpoint.
        """
        meta = pod["metadata"]
        uid = meta["uid"]
        held: dict[str, tuple[str, ...]] = {}
        try:
            for container, wanted in device_requests(pod).items():
                owner = f"{meta['namespace']}/{meta['name']}/{container}"
                for resource, count in wanted.items():
                    alloc = await node.devices.allocate(uid, container, resource, count)
                    for device_id in alloc.device_ids:
                        node.sim.allocate(device_id, owner)
                    held[resource] = held.get(resource, ()) + alloc.device_ids
        except (DeviceAllocationError, SimnodeError):
            await self._release(uid)
            raise
        return held

    async def _announce(self, pod: JSON, devices: dict[str, tuple[str, ...]],
                        duration_s: float | None, reason: str) -> None:
        meta = pod["metadata"]
        listed = "; ".join(f"{r}: {', '.join(ids)}" for r, ids in devices.items()) or "none"
        annotations = {DEVICES_ANNOTATION: listed}
        node = self.nodes[pod["spec"]["nodeName"]]
        for container, per_resource in node.devices.checkpoint.pod(meta["uid"]).items():
            visible = [a.envs.get("NVIDIA_VISIBLE_DEVICES", "") for a in per_resource.values()]
            annotations[f"{ENV_ANNOTATION_PREFIX}{container}.NVIDIA_VISIBLE_DEVICES"] = ",".join(
                v for v in visible if v)
        patch: JSON = {"metadata": {"annotations": annotations}}
        if duration_s is not None:
            patch["metadata"]["annotations"][PREDICTED] = f"{duration_s:.3f}"
        await self.kube.patch_pod(meta["namespace"], meta["name"], patch)
        await self.kube.event(pod, "Started", f"devices {listed}; run time: {reason}",
                              host=pod["spec"]["nodeName"])

    async def _reject(self, pod: JSON, reason: str, message: str) -> None:
        meta = pod["metadata"]
        log.warning("pod %s/%s rejected: %s", meta["namespace"], meta["name"], message)
        await self.kube.event(pod, reason, message, "Warning", host=pod["spec"]["nodeName"])
        with contextlib.suppress(AgentError):
            await self.kube.patch_pod_status(meta["namespace"], meta["name"],
                                             rejected_status(reason, message))
        self.finished.add(meta["uid"])
        self.running.pop(meta["uid"], None)

    async def _terminate(self, pod: JSON) -> None:
        """A graceful delete: stop the simulated process, free devices, remove the pod."""
        meta = pod["metadata"]
        uid = meta["uid"]
        task = self.running.pop(uid, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        try:
            wait_s = shutdown_seconds(meta.get("annotations") or {}, grace)
        except AnnotationError:
            wait_s = 0.0
        await asyncio.sleep(wait_s / self.time_scale)
        self.finished.add(uid)
        await self._release(uid)
        await self._remove(pod)

    async def _remove(self, pod: JSON) -> None:
        meta = pod["metadata"]
        await self.kube.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])

    async def _release(self, uid: str) -> None:
        for node in self.nodes.values():
            for containers in node.devices.checkpoint.pod(uid).values():
                for alloc in containers.values():
                    for device_id in alloc.device_ids:
                        if device_id in node.sim.state.allocations:
                            node.sim.release(device_id)
            await node.devices.release(uid)

    async def _forget(self, uid: str) -> None:
        task = self.running.pop(uid, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._release(uid)
        self.finished.discard(uid)

    async def reconcile(self, live_pods: list[JSON]) -> None:
        """After a restart: free devices of pods that are gone or finished."""
        alive = {p["metadata"]["uid"] for p in live_pods
                 if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")}
        for node in self.nodes.values():
            for uid in node.devices.checkpoint.pods():
                if uid not in alive:
                    await self._release(uid)
            owners = {f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                      for p in live_pods if p["metadata"]["uid"] in alive}
            for device_id, owner in list(node.sim.state.allocations.items()):
                if owner.rsplit("/", 1)[0] not in owners:
                    node.sim.release(device_id)
