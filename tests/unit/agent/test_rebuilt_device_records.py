"""Nothing is lost when the node's files are: the agent rebuilds them from the API server.

Two pods run on a node and hold three GPUs. Then the node's device checkpoint
or its state file (or both) is emptied, deleted, truncated or left stale, and
the agent starts again: it opens the node as ``dgxsim agent`` does and
reconciles with the pods as the API server lists them (devices recorded in
``dgxsim.io/devices``). Every running pod keeps its devices, a new pod gets
none of them, the running pods finish on time, and an event on the Node says
what was rebuilt. Records that disagree are reported and the pod left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from agent_fakes import JSON, NODE, FakeDevices, FakeKube, eventually, pod

from dgxnode.agent.checkpoint import CHECKPOINT_FILE
from dgxnode.agent.pods import NOT_RECONCILED, REBUILT, NodePods, PodController
from dgxnode.clock import VirtualClock
from dgxnode.node import SimNode
from dgxnode.store import STATE_FILE, NodeStore
from dgxsim.kubeletless import open_node_files
from dgxsim.statedir import node_dir
from gpumodel.vocabulary import DEVICES_ANNOTATION


def start(state: Path, kube: FakeKube, clock: VirtualClock
          ) -> tuple[PodController, SimNode, FakeDevices, list[str]]:
    """The node as ``dgxsim agent`` opens it, and a pod controller over it."""
    sim, checkpoint, damage = open_node_files(state, NODE, "dgx-a100-320gb")
    devices = FakeDevices(sim, checkpoint)
    controller = PodController(kube, {NODE: NodePods(sim, devices, damage)},  # type: ignore[arg-type]
                               clock=clock)
    return controller, sim, devices, damage


def as_listed(kube: FakeKube, name: str, gpus: int) -> JSON:
    """The pod as the API server lists it after the agent started it."""
    listed = pod(name, gpus=gpus, phase="Running")
    listed["metadata"]["annotations"] = {**listed["metadata"]["annotations"],
                                         **kube.annotations(name)}
    return listed


def emptied(path: Path) -> None:
    path.write_text("")


def deleted(path: Path) -> None:
    path.unlink()


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


Damage = Callable[[Path], None]
CASES: list[tuple[str, list[tuple[str, Damage]]]] = [
    ("checkpoint-emptied", [(CHECKPOINT_FILE, emptied)]),
    ("checkpoint-deleted", [(CHECKPOINT_FILE, deleted)]),
    ("checkpoint-truncated", [(CHECKPOINT_FILE, truncated)]),
    ("state-emptied", [(STATE_FILE, emptied)]),
    ("state-deleted", [(STATE_FILE, deleted)]),
    ("state-truncated", [(STATE_FILE, truncated)]),
    ("both-emptied", [(CHECKPOINT_FILE, emptied), (STATE_FILE, emptied)]),
    ("both-deleted", [(CHECKPOINT_FILE, deleted), (STATE_FILE, deleted)]),
]


@pytest.mark.parametrize("damage", [c[1] for c in CASES], ids=[c[0] for c in CASES])
async def test_running_pods_keep_their_devices_after_the_files_are_lost(
        tmp_path: Path, damage: list[tuple[str, Damage]]) -> None:
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    SimNode.create(NODE, "dgx-a100-320gb", NodeStore(node_dir(tmp_path, NODE)))
    first, sim, _, _ = start(tmp_path, kube, clock)
    await first.on_pod_event("ADDED", pod("a", gpus=2))
    await first.on_pod_event("ADDED", pod("b", gpus=1))
    await eventually(lambda: kube.phase("a") == kube.phase("b") == "Running")
    held = dict(sim.state.allocations)
    await first.stop()
    for name, how in damage:
        how(node_dir(tmp_path, NODE) / name)

    controller, sim, devices, notes = start(tmp_path, kube, clock)
    listed = [as_listed(kube, "a", 2), as_listed(kube, "b", 1)]
    await controller.reconcile(listed)

    assert sim.state.allocations == held, "every running pod keeps its devices"
    assert {d: u for d, u in devices.checkpoint.holders().items()} == {
        d: f"uid-{owner.split('/')[1]}" for d, owner in held.items()}
    events = [(r, m) for n, r, m in kube.events if n == NODE]
    assert [r for r, _ in events] == [REBUILT]
    for note in notes:
        assert note in events[0][1]
    assert all(file in events[0][1] for file, _ in damage)
    assert "default/a" in events[0][1] and "default/b" in events[0][1]

    for listed_pod in listed:
        await controller.on_pod_event("ADDED", listed_pod)
    await controller.on_pod_event("ADDED", pod("c", gpus=5))
    await eventually(lambda: kube.phase("c") == "Running")
    given = set(kube.annotations("c")[DEVICES_ANNOTATION].split(": ")[1].split(", "))
    assert given.isdisjoint(held), "no device is given twice"
    await clock.advance(90)
    await eventually(lambda: {kube.phase(n) for n in "abc"} == {"Succeeded"})
    await eventually(lambda: not sim.state.allocations and not devices.checkpoint.pods())


async def test_a_stale_checkpoint_gets_the_pod_it_missed(tmp_path: Path) -> None:
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    SimNode.create(NODE, "dgx-a100-320gb", NodeStore(node_dir(tmp_path, NODE)))
    first, _, _, _ = start(tmp_path, kube, clock)
    path = node_dir(tmp_path, NODE) / CHECKPOINT_FILE
    await first.on_pod_event("ADDED", pod("a", gpus=2))
    await eventually(lambda: kube.phase("a") == "Running")
    stale = path.read_bytes()
    await first.on_pod_event("ADDED", pod("b", gpus=1))
    await eventually(lambda: kube.phase("b") == "Running")
    await first.stop()
    path.write_bytes(stale)

    controller, _, devices, _ = start(tmp_path, kube, clock)
    await controller.reconcile([as_listed(kube, "a", 2), as_listed(kube, "b", 1)])
    assert sorted(devices.checkpoint.pods()) == ["uid-a", "uid-b"]
    message = next(m for n, r, m in kube.events if n == NODE and r == REBUILT)
    assert "default/b" in message and "default/a" not in message


async def test_records_that_disagree_are_reported_and_the_pod_left_alone(
        tmp_path: Path) -> None:
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    SimNode.create(NODE, "dgx-a100-320gb", NodeStore(node_dir(tmp_path, NODE)))
    first, _, _, _ = start(tmp_path, kube, clock)
    await first.on_pod_event("ADDED", pod("a", gpus=1))
    await eventually(lambda: kube.phase("a") == "Running")
    await first.stop()
    a = as_listed(kube, "a", 1)
    impostor = pod("x", gpus=1, phase="Running")
    impostor["metadata"]["annotations"][DEVICES_ANNOTATION] = a["metadata"]["annotations"][
        DEVICES_ANNOTATION]
    before = (node_dir(tmp_path, NODE) / CHECKPOINT_FILE).read_bytes()

    controller, _, _, _ = start(tmp_path, kube, clock)
    statuses = len(kube.statuses)
    await controller.reconcile([a, impostor])
    await controller.on_pod_event("ADDED", impostor)
    message = next(m for n, r, m in kube.events if n == NODE and r == NOT_RECONCILED)
    assert "default/x" in message and "held by another pod" in message
    assert (node_dir(tmp_path, NODE) / CHECKPOINT_FILE).read_bytes() == before
    assert len(kube.statuses) == statuses, "the pod that disagrees is not touched"
    assert "uid-x" in controller.untouched and "uid-x" not in controller.running
