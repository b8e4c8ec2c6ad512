"""A pod never hangs because its node's files were lost, and neither does the agent.

* A MIG device that went with the node state (its layout was in ``node.json``)
  cannot be given back: the pod that held it ends Failed with ``DevicesLost``,
  naming the device, instead of waiting for ever.
* A pod whose records disagree is left alone, but its run time still runs: it
  completes when its recorded run time is over, and the device another pod
  holds stays with that pod.
* A damaged clock file is set aside as ``clock.json.damaged`` and the epoch is
  rebuilt from the running pods' recorded starts (simulated and wall clock).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent_fakes import NODE, FakeDevices, FakeKube, eventually, pod

from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.pods import DEVICES_LOST, NOT_RECONCILED, NodePods, PodController
from dgxnode.agent.recovery import epoch_from_pods
from dgxnode.clock import CLOCK_FILE, VirtualClock, open_clock
from dgxnode.node import SimNode
from dgxnode.store import STATE_FILE, NodeStore
from dgxsim.kubeletless import open_node_files
from dgxsim.statedir import node_dir
from gpumodel.vocabulary import DEVICES_ANNOTATION, SIM_STARTED_ANNOTATION

MIG_1G = "nvidia.com/mig-1g.5gb"


def start(state: Path, kube: FakeKube, clock: VirtualClock
          ) -> tuple[PodController, SimNode, Checkpoint]:
    sim, checkpoint, damage = open_node_files(state, NODE, "dgx-a100-320gb")
    controller = PodController(kube, {NODE: NodePods(sim, FakeDevices(sim, checkpoint),  # type: ignore[arg-type]
                                                     damage)}, clock=clock)
    return controller, sim, checkpoint


def mig_pod(name: str) -> dict:  # type: ignore[type-arg]
    made = pod(name)
    made["spec"]["containers"][0]["resources"]["limits"] = {MIG_1G: "1"}
    return made


def listed(kube: FakeKube, made: dict, phase: str = "Running") -> dict:  # type: ignore[type-arg]
    made = {**made, "status": {"phase": phase}}
    made["metadata"] = {**made["metadata"], "annotations": {
        **made["metadata"]["annotations"], **kube.annotations(made["metadata"]["name"])}}
    return made


async def test_a_pod_whose_mig_device_went_with_the_node_state_ends_failed(
        tmp_path: Path) -> None:
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    sim = SimNode.create(NODE, "dgx-a100-320gb", NodeStore(node_dir(tmp_path, NODE)))
    sim.set_mig_mode(0, True)
    sim.reset_gpu(0)
    sim.create_gi(0, "1g.5gb", default_ci=True)
    first, _, _ = start(tmp_path, kube, clock)
    await first.on_pod_event("ADDED", mig_pod("m"))
    await eventually(lambda: kube.phase("m") == "Running")
    device = kube.annotations("m")[DEVICES_ANNOTATION].split(": ")[1]
    assert device.startswith("MIG-")
    await first.stop()
    (node_dir(tmp_path, NODE) / STATE_FILE).unlink()  # the MIG layout goes with it

    controller, sim, checkpoint = start(tmp_path, kube, clock)
    m = listed(kube, mig_pod("m"))
    await controller.reconcile([m])
    await controller.on_pod_event("ADDED", m)
    assert kube.phase("m") == "Failed", "the pod ends, it does not wait for ever"
    status = next(s for n, s in reversed(kube.statuses) if n == "m")
    assert status["reason"] == DEVICES_LOST and device in status["message"]
    assert "node.json" in status["message"]
    note = next(msg for n, r, msg in kube.events if n == NODE and r == NOT_RECONCILED)
    assert device in note and "ends Failed" in note
    assert not checkpoint.pods() and not sim.state.allocations


async def test_a_pod_whose_records_disagree_completes_and_frees_nothing_it_does_not_hold(
        tmp_path: Path) -> None:
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    SimNode.create(NODE, "dgx-a100-320gb", NodeStore(node_dir(tmp_path, NODE)))
    first, _, _ = start(tmp_path, kube, clock)
    await first.on_pod_event("ADDED", pod("a", annotations={"dgxsim.io/duration": "600s"}))
    await eventually(lambda: kube.phase("a") == "Running")
    await first.stop()
    a = listed(kube, pod("a", annotations={"dgxsim.io/duration": "600s"}))
    impostor = pod("x", phase="Running")  # claims a's GPU; runs 90 s from 100
    impostor["metadata"]["annotations"].update({
        DEVICES_ANNOTATION: a["metadata"]["annotations"][DEVICES_ANNOTATION],
        SIM_STARTED_ANNOTATION: "100.000"})

    controller, sim, checkpoint = start(tmp_path, kube, clock)
    await controller.reconcile([a, impostor])
    for each in (a, impostor):
        await controller.on_pod_event("ADDED", each)
    held = dict(sim.state.allocations)
    await clock.advance(89)
    assert kube.phase("x") is None, "left alone while it runs"
    await clock.advance(2)
    await eventually(lambda: kube.phase("x") == "Succeeded")
    assert sim.state.allocations == held, "a keeps its GPU when x ends"
    assert checkpoint.pods() == ["uid-a"]
    await controller.stop()


def test_a_damaged_clock_file_is_set_aside_and_a_new_epoch_starts(tmp_path: Path) -> None:
    first, why = open_clock(tmp_path, 60.0)
    assert why is None
    (tmp_path / CLOCK_FILE).write_bytes(b'{"version": "v1", "epoch_wa')
    again, why = open_clock(tmp_path, 60.0)
    assert why is not None and CLOCK_FILE in why and "clock.json.damaged" in why
    assert (tmp_path / "clock.json.damaged").read_bytes().startswith(b'{"version"')
    third, why = open_clock(tmp_path, 60.0)
    assert why is None and third.epoch_wall_s == again.epoch_wall_s != first.epoch_wall_s


def test_the_epoch_is_rebuilt_from_the_running_pods_to_within_a_second() -> None:
    epoch, scale = 1_700_000_000.25, 60.0

    def running(started_wall: float) -> dict:  # type: ignore[type-arg]
        made = pod("p", phase="Running")
        made["metadata"]["annotations"][SIM_STARTED_ANNOTATION] = (
            f"{(started_wall - epoch) * scale:.3f}")
        made["status"]["startTime"] = datetime.fromtimestamp(
            int(started_wall), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return made

    pods = [running(epoch + 12.9), running(epoch + 40.3), pod("pending")]
    rebuilt = epoch_from_pods(pods, scale)
    assert rebuilt is not None and abs(rebuilt - epoch) < 1.0
    assert epoch_from_pods([pod("pending")], scale) is None
