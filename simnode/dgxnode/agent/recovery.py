"""Rebuilding a node's device records from the API server when its files were lost.

A node keeps two records of who holds which device: the device checkpoint (the
kubelet's, ``devices.json``) and the node state (``node.json``, which MIG
reconfiguration and ``nvidia-smi`` read). Either can be emptied, deleted,
truncated or left stale while pods run. The API server keeps a third record
that survives the node: every pod the agent started carries the devices it was
given in ``dgxsim.io/devices``. At start the agent compares the three for each
pod that is bound to the node and not finished:

* a pod missing from the checkpoint gets its recorded devices back, split among
  its containers in the order the agent allocated them, unless another pod's
  entry holds one of them;
* a device missing from the node state is allocated again to the pod's
  container, unless the node state gives it to someone else or the device does
  not exist (a MIG layout that was lost with the file);
* a device that no longer exists on the node (a MIG device whose layout was
  lost with the node state) cannot be given back: the pod cannot go on, and it
  ends Failed with the reason ``DevicesLost`` naming the devices;
* anything else that disagrees is not guessed at: the pod is left untouched (it
  keeps running to the end of its recorded run time, the agent neither restarts
  it nor frees devices it does not hold) and the disagreement is reported.

What was rebuilt and what could not be reconciled is reported as events on the
Node, so an operator sees that a file was lost and what it held.

The agent's clock file (the epoch of its simulated timeline) is rebuilt the same
way: each running pod records when it started both in simulated seconds
(``dgxsim.io/sim-started-s``) and on the wall clock (``status.startTime``, to the
second), which pins the epoch to within a second (:func:`epoch_from_pods`).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dgxnode.agent.checkpoint import CHECKPOINT_FILE, ContainerAllocation
from dgxnode.agent.errors import AgentError
from dgxnode.errors import SimnodeError
from dgxnode.store import STATE_FILE
from gpumodel.inventory import parse_devices_record
from gpumodel.vocabulary import DEVICES_ANNOTATION, SIM_STARTED_ANNOTATION

if TYPE_CHECKING:
    from dgxnode.agent.pods import NodePods

JSON = dict[str, Any]
PerContainer = dict[str, dict[str, tuple[str, ...]]]


class UnreconciledError(AgentError):
    """A pod's recorded devices disagree with what the node holds; the message says how."""


class DevicesGoneError(UnreconciledError):
    """Devices a pod holds no longer exist on its node; the message names them."""


@dataclass
class Rebuild:
    """What reconciling one node found: rebuilt entries and disagreements."""

    node: str
    damage: list[str] = field(default_factory=list)
    checkpoint: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)
    untouched: set[str] = field(default_factory=set)
    """Uids of pods left as they are because their records disagree."""
    lost: dict[str, str] = field(default_factory=dict)
    """Uid -> why, for pods whose devices no longer exist on the node."""

    def rebuilt_message(self) -> str | None:
        if not (self.damage or self.checkpoint or self.state):
            return None
        parts = list(self.damage)
        if self.checkpoint:
            parts.append(f"device checkpoint ({CHECKPOINT_FILE}) rebuilt from the API server "
                         "for " + "; ".join(self.checkpoint))
        if self.state:
            parts.append(f"node state ({STATE_FILE}) allocations restored from the API server "
                         "for " + "; ".join(self.state))
        if not (self.checkpoint or self.state):
            parts.append("no device of a running pod needed restoring")
        return ". ".join(parts)


def recorded_devices(pod: JSON) -> dict[str, tuple[str, ...]] | None:
    """resource -> device IDs from the pod's ``dgxsim.io/devices`` annotation, or None."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEVICES_ANNOTATION)
    if text is None:
        return None
    try:
        return parse_devices_record(text) or None
    except ValueError as err:
        raise UnreconciledError(f"{DEVICES_ANNOTATION} {text!r} is malformed") from err


def split_by_container(requests: dict[str, dict[str, int]],
                       recorded: dict[str, tuple[str, ...]]) -> PerContainer:
    """The recorded devices per container, in the order the agent allocated them."""
    left = {r: list(ids) for r, ids in recorded.items()}
    out: PerContainer = {}
    for container, wanted in requests.items():
        for resource, count in wanted.items():
            taken, left[resource] = (left.get(resource, [])[:count],
                                     left.get(resource, [])[count:])
            if len(taken) != count:
                raise UnreconciledError(f"{container} asks {count} {resource} but "
                                        f"{DEVICES_ANNOTATION} records {len(taken)}")
            out.setdefault(container, {})[resource] = tuple(taken)
    if any(left.values()):
        raise UnreconciledError(f"{DEVICES_ANNOTATION} records more devices than asked")
    return out


async def reconcile_pod(node: NodePods, pod: JSON, per_container: PerContainer,
                        report: Rebuild) -> None:
    """Bring the checkpoint and the node state in line with one pod's recorded devices."""
    meta = pod["metadata"]
    uid, who = meta["uid"], f"{meta['namespace']}/{meta['name']}"
    exists = {d.id for d in node.sim.inventory().devices}
    gone = [d for per in per_container.values() for ids in per.values() for d in ids
            if d not in exists]
    if gone:
        raise DevicesGoneError(f"{who}: {', '.join(gone)} no longer "
                               f"exist{'s' if len(gone) == 1 else ''} on node {node.sim.name}")
    checkpoint = node.devices.checkpoint
    held = {(c, r): a.device_ids for c, per in checkpoint.pod(uid).items()
            for r, a in per.items()}
    wanted = {(c, r): ids for c, per in per_container.items() for r, ids in per.items()}
    if held and held != wanted:
        raise UnreconciledError(f"{who}: the checkpoint holds {_ids(held)}, the API server "
                                f"records {_ids(wanted)}")
    if not held:
        holders = checkpoint.holders()
        clash = sorted(d for ids in wanted.values() for d in ids if d in holders)
        if clash:
            raise UnreconciledError(f"{who}: {', '.join(clash)} held by another pod in the "
                                    "checkpoint")
        for (container, resource), ids in wanted.items():
            await checkpoint.record(uid, container, ContainerAllocation(
                resource=resource, device_ids=ids,
                envs={"NVIDIA_VISIBLE_DEVICES": ",".join(ids)}))
        report.checkpoint.append(f"{who} ({_ids(wanted)})")
    await _restore_state(node, who, wanted, report)


async def _restore_state(node: NodePods, who: str,
                         wanted: dict[tuple[str, str], tuple[str, ...]],
                         report: Rebuild) -> None:
    restored = []
    for (container, _), ids in wanted.items():
        owner = f"{who}/{container}"
        for device_id in ids:
            current = node.sim.state.allocations.get(device_id)
            if current == owner:
                continue
            if current is not None:
                raise UnreconciledError(f"{who}: the node state gives {device_id} to {current}")
            try:
                await asyncio.to_thread(node.sim.allocate, device_id, owner)
            except SimnodeError as err:
                raise UnreconciledError(f"{who}: {err}") from err
            restored.append(device_id)
    if restored:
        report.state.append(f"{who} ({', '.join(restored)})")


def _ids(entries: dict[tuple[str, str], tuple[str, ...]]) -> str:
    return ", ".join(d for ids in entries.values() for d in ids) or "nothing"


def epoch_from_pods(pods: list[JSON], scale: float) -> float | None:
    """The wall-clock epoch the running ``pods`` were started on, or None if none says.

    A pod started ``s`` simulated seconds after the epoch at wall time ``w``, and
    ``status.startTime`` gives ``w`` rounded down to the second, so the epoch lies
    in ``[t - s/scale, t + 1 - s/scale)``; the pods together narrow that interval
    and its middle is returned."""
    low, high = -math.inf, math.inf
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        started = ((pod.get("metadata") or {}).get("annotations") or {}).get(
            SIM_STARTED_ANNOTATION)
        wall = (pod.get("status") or {}).get("startTime")
        try:
            sim_s = float(started) if started else math.nan
            wall_s = datetime.strptime(str(wall), "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=UTC).timestamp()
        except ValueError:
            continue
        if not math.isfinite(sim_s):
            continue
        low, high = max(low, wall_s - sim_s / scale), min(high, wall_s + 1 - sim_s / scale)
    if low == -math.inf:
        return None
    return (low + min(high, low + 1)) / 2 if high >= low else low
