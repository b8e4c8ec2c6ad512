"""The node agent's pod lifecycle in virtual time: exact simulated run times, and every
failure in the pod path ending in a visible pod state with its devices free.

The API server and the device manager are small fakes at the process edge; the
node (SimNode), the checkpoint and the pod controller are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_fakes import NODE, eventually, nothing_held, pod

from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.errors import CheckpointError, DeviceAllocationError
from dgxnode.agent.kubelet import DeviceManager, PluginEndpoint
from gpumodel.vocabulary import (
    DURATION_ANNOTATION,
    GPU_RESOURCE,
    PREDICTED_DURATION_ANNOTATION,
    SIM_FINISHED_ANNOTATION,
    SIM_STARTED_ANNOTATION,
)


async def test_a_pod_runs_exactly_its_simulated_duration(setup: Any) -> None:
    controller, kube, clock, sim, devices = setup
    await controller.on_pod_event("ADDED", pod("a"))
    await eventually(lambda: kube.phase("a") == "Running")
    assert kube.phase("a") == "Running"
    notes = kube.annotations("a")
    assert notes[SIM_STARTED_ANNOTATION] == "100.000"
    assert notes[PREDICTED_DURATION_ANNOTATION] == "90.000"
    assert len(sim.state.allocations) == 1
    await clock.advance(89.999)
    assert kube.phase("a") == "Running"
    await clock.advance(0.001)
    await eventually(lambda: kube.phase("a") == "Succeeded")
    assert kube.annotations("a")[SIM_FINISHED_ANNOTATION] == "190.000"
    await eventually(lambda: nothing_held(sim, devices))
    assert kube.events == [], "a pod that runs costs no Event"
    assert kube.writes == [("patch_pod_status", "a")] * 2, "one write to start, one to end"


async def test_a_pod_resumed_after_a_restart_finishes_on_its_recorded_start(setup: Any) -> None:
    controller, kube, clock, _, _ = setup
    running = pod("r", annotations={DURATION_ANNOTATION: "90s", SIM_STARTED_ANNOTATION: "50.5"},
                  phase="Running")
    await controller.on_pod_event("ADDED", running)
    await clock.advance(40.499)
    assert kube.phase("r") is None, "still running: no status written yet"
    await clock.advance(0.001)
    await eventually(lambda: kube.phase("r") == "Succeeded")
    assert kube.annotations("r")[SIM_FINISHED_ANNOTATION] == "140.500"


@pytest.mark.parametrize("error", [
    DeviceAllocationError("dgx-0: nvidia.com/gpu: the device plugin answered INTERNAL: boom"),
    CheckpointError("devices ['GPU-1'] are already held by another pod"),
], ids=["plugin-error", "checkpoint-error"])
async def test_an_admission_failure_fails_the_pod_with_the_kubelets_reason(
        setup: Any, error: Exception) -> None:
    controller, kube, _, sim, devices = setup
    devices.fail_with = error
    await controller.on_pod_event("ADDED", pod("bad"))
    await eventually(lambda: kube.phase("bad") == "Failed")
    assert kube.phase("bad") == "Failed"
    status = next(s for n, s in kube.statuses if n == "bad")
    assert status["reason"] == "UnexpectedAdmissionError"
    assert str(error) in status["message"]
    assert any(r == "UnexpectedAdmissionError" for _, r, _ in kube.events)
    await eventually(lambda: nothing_held(sim, devices))


async def test_a_malformed_annotation_fails_the_pod_and_frees_what_it_was_given(
        setup: Any) -> None:
    controller, kube, _, sim, devices = setup
    await controller.on_pod_event("ADDED", pod("typo", annotations={DURATION_ANNOTATION: "1e308"}))
    await eventually(lambda: kube.phase("typo") == "Failed")
    assert kube.phase("typo") == "Failed"
    status = next(s for n, s in kube.statuses if n == "typo")
    assert status["reason"] == "InvalidWorkload"
    assert "1e308" in status["message"]
    await eventually(lambda: nothing_held(sim, devices))


async def test_an_api_server_refusing_the_running_status_fails_the_pod(setup: Any) -> None:
    controller, kube, clock, sim, devices = setup
    kube.refuse.append(("patch_pod_status", "Running", 422))
    await controller.on_pod_event("ADDED", pod("refused"))
    await eventually(lambda: kube.phase("refused") == "Failed")
    assert kube.phase("refused") == "Failed"
    status = next(s for n, s in kube.statuses if n == "refused")
    assert status["reason"] == "NodeAgentError"
    assert "422" in status["message"]
    await eventually(lambda: nothing_held(sim, devices))
    await clock.advance(1000)
    assert kube.phase("refused") == "Failed", "a failed pod is never completed later"


async def test_a_transient_api_failure_is_retried_and_the_pod_runs(setup: Any) -> None:
    controller, kube, clock, _, _ = setup
    kube.refuse.append(("patch_pod_status", "Running", 503))
    await controller.on_pod_event("ADDED", pod("retry"))
    await eventually(lambda: kube.phase("retry") == "Running")
    await clock.advance(90)
    await eventually(lambda: kube.phase("retry") == "Succeeded")


async def test_one_pods_failure_leaves_the_others_running(setup: Any) -> None:
    controller, kube, clock, sim, devices = setup
    await controller.on_pod_event("ADDED", pod("good", gpus=2))
    await eventually(lambda: kube.phase("good") == "Running")
    await controller.on_pod_event("ADDED", pod("greedy", gpus=7))
    await eventually(lambda: kube.phase("greedy") == "Failed")
    assert kube.phase("greedy") == "Failed"
    assert kube.phase("good") == "Running"
    assert len(sim.state.allocations) == 2
    # Deleting the failed pod reaches nobody else, and raises nothing into the watch.
    await controller.on_pod_event("DELETED", pod("greedy", gpus=7))
    await controller.on_pod_event("ADDED", pod("next", gpus=6))
    await eventually(lambda: kube.phase("next") == "Running")
    assert kube.phase("next") == "Running"
    await clock.advance(90)
    await eventually(lambda: kube.phase("good") == kube.phase("next") == "Succeeded")
    await eventually(lambda: nothing_held(sim, devices))


async def test_a_plugin_error_on_allocate_becomes_a_device_allocation_error(
        tmp_path: Path) -> None:
    class Stub:
        async def Allocate(self, request: Any, timeout: float) -> Any:
            raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), details="device on fire")

    manager = DeviceManager(NODE, tmp_path, Checkpoint(tmp_path / "devices.json"))
    manager.endpoints[GPU_RESOURCE] = PluginEndpoint(
        resource=GPU_RESOURCE, socket=tmp_path / "x.sock", channel=None,  # type: ignore[arg-type]
        stub=Stub(), preferred_available=False, devices={"GPU-a": True})  # type: ignore[arg-type]
    with pytest.raises(DeviceAllocationError, match="INTERNAL: device on fire"):
        await manager.allocate("uid", "main", GPU_RESOURCE, 1)
    assert manager.checkpoint.pods() == []


async def test_a_checkpoint_that_cannot_be_written_fails_the_pod_and_gives_nothing(
        setup: Any, tmp_path: Path) -> None:
    controller, kube, _, sim, devices = setup
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the checkpoint's folder should be")
    devices.checkpoint = Checkpoint(blocked / "devices.json")
    await controller.on_pod_event("ADDED", pod("unwritable"))
    await eventually(lambda: kube.phase("unwritable") == "Failed")
    status = next(s for n, s in kube.statuses if n == "unwritable")
    assert status["reason"] == "UnexpectedAdmissionError"
    assert "cannot be written" in status["message"]
    await eventually(lambda: nothing_held(sim, devices))
