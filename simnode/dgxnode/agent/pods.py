"""The life of pods bound to simulated nodes, as a kubelet would live it.

For each pod bound to one of its nodes the agent admits it (devices through
the device manager, exactly the kubelet's GetPreferredAllocation + Allocate),
records the devices as in use on the node (so MIG reconfiguration never
destroys them), marks it Running, and after the run time from its annotations
(in simulated seconds, on the agent's :class:`~dgxnode.clock.Clock`) marks its
containers terminated with exit code 0. Start and finish are recorded on the
pod in simulated seconds (``dgxsim.io/sim-started-s``, ``-finished-s``), so a
run time reads back exactly at any time scale. Each of the two steps is one
write to ``pods/status`` carrying the annotations with the status, and a pod
that runs raises no Event (what one would say, devices and run time, is on the
pod), so a pod costs the API server two writes, as KWOK's fake kubelet; a pod
that fails gets an Event with the reason. Devices are freed when the pod
ends or is deleted. A pod being deleted gets its shutdown time (capped by its
grace period) and is then removed, as the kubelet removes it. Restarting the
agent resumes running pods where they were: their devices come back from the
checkpoint and their clocks from the recorded start. A checkpoint or node state
that was emptied, deleted, truncated or left stale is rebuilt from the devices
the API server records on each running pod before any pod is admitted
(:mod:`dgxnode.agent.recovery`), with an event on the Node. A pod whose devices
went with the lost files ends Failed (``DevicesLost``); one whose records
disagree otherwise is left alone to the end of its run time, then completed.

Every failure is confined to its pod and ends in a visible state: a pod that
cannot be admitted (no devices, a plugin's error, a checkpoint that cannot be
written, a malformed annotation) is Failed with the kubelet's reason
(``UnexpectedAdmissionError``) or ``InvalidWorkload``, with an event, and its
devices are released; API calls that fail for a moment are retried first.
The agent goes on serving every other pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from dgxnode.agent.checkpoint import ContainerAllocation
from dgxnode.agent.dra import ClaimManager
from dgxnode.agent.errors import (
    AgentError,
    AnnotationError,
    CheckpointError,
    DeviceAllocationError,
    PodRejectedError,
)
from dgxnode.agent.kube import Kube, now_rfc3339
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.agent.objects import rejected_status, running_status, terminated_status
from dgxnode.agent.recovery import (
    DevicesGoneError,
    Rebuild,
    UnreconciledError,
    reconcile_pod,
    recorded_devices,
    split_by_container,
)
from dgxnode.agent.workload import PREDICTED, RunPlan, StepPredictor, run_plan, shutdown_seconds
from dgxnode.clock import Clock, RealtimeClock
from dgxnode.errors import AllocationError, SimnodeError
from dgxnode.node import SimNode
from dgxnode.store import LockBusyError
from gpumodel.inventory import devices_record
from gpumodel.vocabulary import (
    DEVICES_ANNOTATION,
    ENV_ANNOTATION_PREFIX,
    GPU_RESOURCE,
    MIG_RESOURCE_PREFIX,
    SIM_FINISHED_ANNOTATION,
    SIM_STARTED_ANNOTATION,
)
from kubewire import UnavailableError

log = logging.getLogger(__name__)
JSON = dict[str, Any]
T = TypeVar("T")
DEVICE_PREFIX = "nvidia.com/"
ADMISSION_ERROR = "UnexpectedAdmissionError"
"""The kubelet's reason for a pod whose devices could not be allocated."""
INVALID_WORKLOAD = "InvalidWorkload"
AGENT_ERROR = "NodeAgentError"
"""A pod the node could not start or finish because an API call kept failing."""
REBUILT = "DeviceRecordsRebuilt"
"""Event reason on a Node whose checkpoint or state was rebuilt from the API server."""
NOT_RECONCILED = "DeviceRecordsNotReconciled"
DEVICES_LOST = "DevicesLost"
"""A running pod whose devices no longer exist on its node (lost with its files)."""
API_PATIENCE_S = 120.0
"""How long an API call that fails for a moment (no answer, throttled, a server error)
is retried: an API server or etcd restarts in seconds, and no pod fails for it."""
API_RETRY_S = 0.25
API_RETRY_MAX_S = 2.0
RELEASE_POLL_S = 0.05


def device_requests(pod: JSON) -> dict[str, dict[str, int]]:
    """container -> {extended resource: count} for the resources device plugins serve.

    A request the node can never satisfy is refused here, before any device is
    touched, as the kubelet's admission refuses it (:class:`PodRejectedError`
    with ``UnexpectedAdmissionError``): a count that is not a whole number, or more
    than one MIG device of a profile in one container, which NVIDIA's device plugin
    never gives. A count of zero asks for nothing: the kubelet's device manager
    skips it and the container runs without devices, and so does this node.
    """
    wanted: dict[str, dict[str, int]] = {}
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        counts = {k: _device_count(container["name"], k, v) for k, v in asked.items()
                  if k.startswith(DEVICE_PREFIX)}
        devices = {k: n for k, n in counts.items() if n > 0}
        if devices:
            wanted[container["name"]] = devices
    return wanted


def _device_count(container: str, resource: str, quantity: object) -> int:
    def refuse(why: str) -> PodRejectedError:
        return PodRejectedError(ADMISSION_ERROR, f"container {container} asks "
                                f"{resource}: {quantity}: {why}")

    try:
        count = int(str(quantity))
    except ValueError:
        raise refuse("a device count must be a whole number") from None
    if count < 0:
        raise refuse("a device count cannot be negative")
    if resource.startswith(MIG_RESOURCE_PREFIX) and count > 1:
        raise refuse("NVIDIA's device plugin gives one MIG device per container and "
                     "resource; ask for one in each of several containers")
    return count


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _sim_seconds(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _transient(err: BaseException) -> bool:
    """An API failure worth retrying: no answer, throttled, or a server error."""
    return isinstance(err, UnavailableError | OSError | asyncio.TimeoutError)


async def _commit(sim: SimNode, change: Callable[[], object]) -> None:
    """A change of the node's state for one pod (who holds a device): made on the loop
    when the node's locks are free (it appends one line to the holdings journal), in a
    worker thread when another thread or process holds them, so the wait for them
    (a MIG change's fsync, a command's read-modify-write) never stalls the loop."""
    try:
        with sim.at_once():
            change()
            return
    except LockBusyError:
        pass
    await asyncio.to_thread(change)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Stop a pod's task; whatever it raised stays with it (it reported its own end)."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("pod task %s failed while being stopped", task.get_name())


@dataclass
class NodePods:
    """What the pod controller needs of one node."""

    sim: SimNode
    devices: DeviceManager
    damage: list[str] = field(default_factory=list)
    """What of the node's files could not be used at start (see :meth:`reconcile`)."""
    claims: ClaimManager | None = None
    """The kubelet's DRA side, on a node that offers its GPUs through DRA."""
    ending: set[str] = field(default_factory=set)
    """Pods ending on this node whose devices are not yet free: their end is recorded on
    the API server first, so no device is ever seen held by two running pods."""


class PodTelemetry(Protocol):
    """Told when a pod starts on its devices and when it ends (the DCGM metrics)."""

    def started(self, pod: JSON, devices: Mapping[str, tuple[str, ...]]) -> None: ...

    def ended(self, uid: str) -> None: ...


@dataclass
class PodController:
    """Runs the pods of every simulated node of this agent."""

    kube: Kube
    nodes: dict[str, NodePods]
    clock: Clock = field(default_factory=RealtimeClock)
    predictor: StepPredictor | None = None
    telemetry: PodTelemetry | None = None
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    where: dict[str, str] = field(default_factory=dict)
    """pod uid -> node name, for pods that hold (or may hold) devices."""
    untouched: set[str] = field(default_factory=set)
    """Running pods whose recorded devices the node could not reconcile: left alone."""
    left_alone: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """Untouched pods' run times (:meth:`_outlive`), by uid."""
    admitted: int = 0
    completed: int = 0
    failed: int = 0

    async def on_pod_event(self, kind: str, pod: JSON) -> None:
        """Act on one watch event; an error is confined to that pod, never the watch."""
        try:
            await self._on_pod_event(kind, pod)
        except asyncio.CancelledError:
            raise
        except Exception:
            meta = pod.get("metadata", {})
            log.exception("pod %s/%s: %s event failed; other pods go on",
                          meta.get("namespace"), meta.get("name"), kind)

    async def _on_pod_event(self, kind: str, pod: JSON) -> None:
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
            if uid not in self.nodes[node].ending:  # else its end frees them itself
                await self._release(uid, pod)
            self.finished.add(uid)
            return
        if uid in self.finished or uid in self.running or uid in self.left_alone:
            return
        if uid in self.untouched:
            self.left_alone[uid] = asyncio.create_task(self._outlive(pod), name=f"pod {uid}")
            return
        self.where[uid] = node
        self.running[uid] = asyncio.create_task(self._run(pod), name=f"pod {uid}")

    async def stop(self) -> None:
        tasks = [*self.running.values(), *self.left_alone.values()]
        self.running.clear()
        self.left_alone.clear()
        for task in tasks:
            await _cancel(task)

    # ------------------------------------------------------------ lifecycle

    async def _run(self, pod: JSON) -> None:
        """The whole life of one pod; every way it can go wrong ends in a pod status."""
        try:
            plan, started = await self._start(pod)
            if plan.duration_s is None or pod["spec"].get("restartPolicy") == "Always":
                return
            finish = started + plan.duration_s
            await self.clock.sleep_until(finish)
            await self._complete(pod, plan, started, finish)
        except asyncio.CancelledError:
            raise
        except PodRejectedError as err:
            await self._fail(pod, err.reason, str(err))
        except Exception as err:
            log.exception("pod %s: the node agent failed", pod["metadata"]["name"])
            await self._fail(pod, AGENT_ERROR, f"the node agent failed: {err}")

    async def _outlive(self, pod: JSON) -> None:
        """A pod whose records the node could not reconcile runs on untouched until its
        recorded run time is over, then completes, as any pod would: none hangs."""
        try:
            plan = run_plan(pod["metadata"].get("annotations") or {},
                            recorded_devices(pod) or {}, self.predictor)
            if plan.duration_s is None or pod["spec"].get("restartPolicy") == "Always":
                return
            started = self._recorded_start(pod)
            finish = started + plan.duration_s
            await self.clock.sleep_until(finish)
            await self._complete(pod, plan, started, finish)
        except asyncio.CancelledError:
            raise
        except (AnnotationError, UnreconciledError) as err:
            await self._fail(pod, INVALID_WORKLOAD, str(err))
        except Exception as err:
            log.exception("pod %s: the node agent failed", pod["metadata"]["name"])
            await self._fail(pod, AGENT_ERROR, f"the node agent failed: {err}")

    async def _start(self, pod: JSON) -> tuple[RunPlan, float]:
        """Admit the pod (or find it admitted) and mark it Running: its plan and start."""
        meta = pod["metadata"]
        status = pod.get("status") or {}
        node = self.nodes[pod["spec"]["nodeName"]]
        requests = device_requests(pod)
        try:
            devices = await self._admit(pod, node, requests)
        except (DeviceAllocationError, SimnodeError, AgentError) as err:
            raise PodRejectedError(ADMISSION_ERROR, f"Allocate failed due to {err}, which is "
                                             "unexpected") from err
        try:
            plan = run_plan(meta.get("annotations") or {}, devices, self.predictor)
        except AnnotationError as err:
            raise PodRejectedError(INVALID_WORKLOAD, str(err)) from err
        if self.telemetry is not None:
            self.telemetry.started(pod, devices)
        if status.get("phase") == "Running":
            return plan, self._recorded_start(pod)
        started = self.clock.now()
        started_at = now_rfc3339()
        # One write: annotations and status together, so whoever sees the pod Running
        # also sees its devices (pods/status takes the pod's annotations too).
        annotations = self._announcement(pod, devices, plan, started)
        await self._api(lambda: self.kube.patch_pod_status(meta["namespace"], meta["name"], {
            "metadata": {"annotations": annotations}, **running_status(pod, started_at)},
            answer=False))
        log.debug("pod %s/%s started: devices %s; run time: %s", meta["namespace"],
                  meta["name"], annotations[DEVICES_ANNOTATION], plan.reason)
        self.admitted += 1
        return plan, started

    def _recorded_start(self, pod: JSON) -> float:
        """When a running pod started, in simulated seconds (after an agent restart)."""
        annotations = pod["metadata"].get("annotations") or {}
        recorded = _sim_seconds(annotations.get(SIM_STARTED_ANNOTATION))
        if recorded is not None:
            return recorded
        wall = _parse_time((pod.get("status") or {}).get("startTime"))
        return self.clock.now() if wall is None else self.clock.from_wall(wall)

    async def _complete(self, pod: JSON, plan: RunPlan, started: float, finish: float) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        started_at = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        # The end is recorded before the devices are freed: while the API server says
        # the pod runs, no other pod gets its devices. A pod admitted meanwhile that
        # finds too few free waits for the ending ones (:meth:`_allocate`).
        self.finished.add(uid)
        # One write, no event: the finish time rides on the terminated status, as the
        # kubelet reports a container's end in its status alone.
        async with self._ending(pod):
            await self._api(lambda: self.kube.patch_pod_status(meta["namespace"], meta["name"], {
                "metadata": {"annotations": {SIM_FINISHED_ANNOTATION: f"{finish:.3f}"}},
                **terminated_status(pod, started_at, 0, "Completed")}, answer=False))
        self.running.pop(uid, None)
        self.left_alone.pop(uid, None)
        self.completed += 1
        log.debug("pod %s/%s: simulated run finished after %.3f s", meta["namespace"],
                  meta["name"], finish - started)

    async def _api(self, call: Callable[[], Awaitable[T]]) -> T:
        """An API call, retried with back-off while it fails for a moment (for up to
        :data:`API_PATIENCE_S`: the API server or etcd may be restarting)."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + API_PATIENCE_S, API_RETRY_S
        while True:
            try:
                return await call()
            except Exception as err:
                if not _transient(err) or loop.time() + delay > deadline:
                    raise
                log.warning("API call failed (%s); retrying", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, API_RETRY_MAX_S)

    @contextlib.asynccontextmanager
    async def _ending(self, pod: JSON) -> AsyncIterator[None]:
        """The block records the pod's end; its devices are freed after it, whatever
        happens, and admissions on its node short of devices wait for that."""
        uid = pod["metadata"]["uid"]
        node = self.nodes.get(pod["spec"].get("nodeName", ""))
        if node is not None:
            node.ending.add(uid)
        try:
            yield
        finally:
            try:
                await self._release(uid, pod)
            finally:
                if node is not None:
                    node.ending.discard(uid)

    async def _allocate(self, node: NodePods, uid: str, container: str, resource: str,
                        count: int) -> ContainerAllocation:
        """The device manager's allocation; short of devices while pods on the node are
        ending, it waits for their devices (for as long as an API call may take)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + API_PATIENCE_S
        while True:
            try:
                return await node.devices.allocate(uid, container, resource, count)
            except DeviceAllocationError:
                waited_for = node.ending - {uid}  # those ending now, not later ones
                if not waited_for or loop.time() > deadline:
                    raise
            while waited_for & node.ending and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(RELEASE_POLL_S)

    async def _admit(self, pod: JSON, node: NodePods, requests: dict[str, dict[str, int]]
                     ) -> dict[str, tuple[str, ...]]:
        """Allocate every container's devices; all or nothing.

        Returns resource -> device IDs; the Allocate answers stay in the checkpoint.
        """
        meta = pod["metadata"]
        uid = meta["uid"]
        held: dict[str, tuple[str, ...]] = {}
        try:
            for container, wanted in requests.items():
                owner = f"{meta['namespace']}/{meta['name']}/{container}"
                for resource, count in wanted.items():
                    alloc = await self._allocate(node, uid, container, resource, count)
                    for device_id in alloc.device_ids:
                        await _commit(node.sim, functools.partial(
                            node.sim.allocate, device_id, owner))
                    held[resource] = held.get(resource, ()) + alloc.device_ids
            if node.claims is not None:
                for resource, ids in (await self._prepare_claims(pod, node)).items():
                    held[resource] = held.get(resource, ()) + ids
        except BaseException:
            await self._release(uid)
            raise
        return held

    async def _prepare_claims(self, pod: JSON, node: NodePods) -> dict[str, tuple[str, ...]]:
        """Prepare the pod's ResourceClaims (the kubelet's DRA manager) and hold their devices
        on the node as device-plugin devices are held: resource -> device IDs."""
        assert node.claims is not None
        meta = pod["metadata"]
        per_container = await node.claims.prepare(pod)
        inventory = node.sim.inventory()
        held: dict[str, tuple[str, ...]] = {}
        for container, entries in per_container.items():
            owner = f"{meta['namespace']}/{meta['name']}/{container}"
            by_resource: dict[str, tuple[str, ...]] = {}
            for uuids in entries.values():
                for uuid in uuids:
                    resource = inventory.device(uuid).resource
                    by_resource[resource] = (*by_resource.get(resource, ()), uuid)
                    if node.sim.state.allocations.get(uuid, "").rsplit("/", 1)[0] != (
                            owner.rsplit("/", 1)[0]):
                        await _commit(node.sim, functools.partial(
                            node.sim.allocate, uuid, owner))
            for resource, ids in by_resource.items():
                await node.devices.checkpoint.record(meta["uid"], container, ContainerAllocation(
                    resource=resource, device_ids=ids,
                    envs={"NVIDIA_VISIBLE_DEVICES": ",".join(ids)},
                    cdi_devices=tuple(f"{GPU_RESOURCE}={i}" for i in ids)))
                held[resource] = held.get(resource, ()) + ids
        return held

    def _announcement(self, pod: JSON, devices: dict[str, tuple[str, ...]],
                      plan: RunPlan, started: float) -> dict[str, str]:
        """The annotations a started pod gets: devices, env, start and prediction."""
        meta = pod["metadata"]
        annotations = {DEVICES_ANNOTATION: devices_record(devices),
                       SIM_STARTED_ANNOTATION: f"{started:.3f}"}
        node = self.nodes[pod["spec"]["nodeName"]]
        for container, per_resource in node.devices.checkpoint.pod(meta["uid"]).items():
            visible = [a.envs.get("NVIDIA_VISIBLE_DEVICES", "") for a in per_resource.values()]
            annotations[f"{ENV_ANNOTATION_PREFIX}{container}.NVIDIA_VISIBLE_DEVICES"] = ",".join(
                v for v in visible if v)
        if plan.duration_s is not None:
            annotations[PREDICTED] = f"{plan.duration_s:.3f}"
        return annotations

    async def _fail(self, pod: JSON, reason: str, message: str) -> None:
        """End a pod that cannot run: devices back, an event, and phase Failed with why."""
        meta = pod["metadata"]
        uid = meta["uid"]
        log.warning("pod %s/%s failed (%s): %s", meta["namespace"], meta["name"], reason,
                    message)
        self.finished.add(uid)
        self.running.pop(uid, None)
        self.left_alone.pop(uid, None)
        self.failed += 1
        async with self._ending(pod):
            await self.kube.event(pod, reason, message, "Warning",
                                  host=pod["spec"]["nodeName"])
            try:
                await self._api(lambda: self.kube.patch_pod_status(
                    meta["namespace"], meta["name"], rejected_status(reason, message),
                    answer=False))
            except Exception as err:
                log.error("pod %s/%s: its Failed status was refused too: %s",
                          meta["namespace"], meta["name"], err)

    async def _terminate(self, pod: JSON) -> None:
        """A graceful delete: stop the simulated process, free devices, remove the pod."""
        meta = pod["metadata"]
        uid = meta["uid"]
        await _cancel(self.running.pop(uid, None))
        await _cancel(self.left_alone.pop(uid, None))
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        try:
            wait_s = shutdown_seconds(meta.get("annotations") or {}, grace)
        except AnnotationError:
            wait_s = 0.0
        await self.clock.sleep_until(self.clock.now() + wait_s)
        self.finished.add(uid)
        await self._release(uid, pod)
        await self._remove(pod)

    async def _remove(self, pod: JSON) -> None:
        meta = pod["metadata"]
        await self.kube.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])

    async def _release(self, uid: str, pod: JSON | None = None) -> None:
        """Free whatever the pod holds on its node; a failure is logged, never raised.

        With ``pod`` known, a device the node state gives to someone else is left to
        its holder (records that disagree never free another pod's device)."""
        if self.telemetry is not None:
            self.telemetry.ended(uid)
        name = self.where.pop(uid, None)
        # Where the pod ran is known; otherwise (a pod from before a restart) only the
        # nodes whose checkpoint holds it, never an await per node of the agent.
        nodes = [self.nodes[name]] if name in self.nodes else [
            n for n in self.nodes.values() if n.devices.checkpoint.pod(uid)
            or (n.claims is not None and uid in n.claims.pods())]
        meta = (pod or {}).get("metadata") or {}
        owner = f"{meta['namespace']}/{meta['name']}/" if "name" in meta else ""
        for node in nodes:
            try:
                await self._release_on(node, uid, owner)
            except Exception:
                log.exception("node %s: releasing the devices of pod %s failed", node.sim.name,
                              uid)

    @staticmethod
    async def _release_on(node: NodePods, uid: str, owner: str = "") -> None:
        for containers in node.devices.checkpoint.pod(uid).values():
            for alloc in containers.values():
                for device_id in alloc.device_ids:
                    holder = node.sim.state.allocations.get(device_id)
                    if holder is not None and holder.startswith(owner):
                        with contextlib.suppress(AllocationError):  # freed meanwhile
                            await _commit(node.sim, functools.partial(
                                node.sim.release, device_id))
        await node.devices.release(uid)
        if node.claims is not None:
            await node.claims.unprepare(uid)

    async def _forget(self, uid: str) -> None:
        await _cancel(self.running.pop(uid, None))
        await _cancel(self.left_alone.pop(uid, None))
        # A pod that ended here gave its devices back then: nothing to look for.
        if uid in self.where or uid not in self.finished:
            await self._release(uid)
        self.finished.discard(uid)

    async def reconcile(self, live_pods: list[JSON]) -> None:
        """At start, before any pod is admitted: line each node's checkpoint and state up
        with the pods the API server says hold its devices (:mod:`dgxnode.agent.recovery`),
        free what pods that are gone or finished held, and report on the Node."""
        alive = [p for p in live_pods
                 if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        for name, node in self.nodes.items():
            on_node = [p for p in alive if p["spec"].get("nodeName") == name]
            report = Rebuild(name, damage=list(node.damage))
            uids = {p["metadata"]["uid"] for p in on_node}
            held = set(node.devices.checkpoint.pods()) | set(
                node.claims.pods() if node.claims is not None else ())
            for uid in sorted(held):
                if uid not in uids:
                    await self._release(uid)
            for pod in on_node:
                await self._reconcile_pod(node, pod, report)
            owners = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in on_node}
            for device_id, owner in list(node.sim.state.allocations.items()):
                if owner.rsplit("/", 1)[0] not in owners:
                    await asyncio.to_thread(node.sim.release, device_id)
            self.untouched |= report.untouched
            await self._report(name, report)
            for pod in on_node:
                if (why := report.lost.get(pod["metadata"]["uid"])) is not None:
                    await self._fail(pod, DEVICES_LOST, why)

    async def _reconcile_pod(self, node: NodePods, pod: JSON, report: Rebuild) -> None:
        if node.claims is not None and pod["spec"].get("resourceClaims"):
            return  # its devices come back from the DRA driver's checkpoint when prepared
        try:
            recorded = recorded_devices(pod)
            if recorded is None:
                return
            await reconcile_pod(node, pod, split_by_container(device_requests(pod), recorded),
                                report)
        except DevicesGoneError as err:
            files = "; ".join(node.damage) or "the node's files changed"
            report.unreconciled.append(f"{err}: the pod ends Failed")
            report.lost[pod["metadata"]["uid"]] = (
                f"the devices this pod held are gone from its node: {err} ({files})")
        except (UnreconciledError, PodRejectedError, CheckpointError) as err:
            meta = pod["metadata"]
            who = f"{meta['namespace']}/{meta['name']}"
            report.unreconciled.append(str(err) if str(err).startswith(who)
                                       else f"{who}: {err}")
            report.untouched.add(meta["uid"])

    async def _report(self, node: str, report: Rebuild) -> None:
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        rebuilt = report.rebuilt_message()
        if rebuilt:
            log.warning("node %s: %s", node, rebuilt)
            await self.kube.event(involved, REBUILT, rebuilt, "Warning", host=node)
        if report.unreconciled:
            message = ("left untouched, the records disagree: "
                       + "; ".join(report.unreconciled))
            log.error("node %s: %s", node, message)
            await self.kube.event(involved, NOT_RECONCILED, message, "Warning", host=node)
