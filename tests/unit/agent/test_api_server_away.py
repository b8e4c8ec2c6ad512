"""An API server that is away for a while (restarting, or its etcd is) fails no pod, and a
pod's devices are freed only once the API server records its end.

A kubelet keeps a pod's status until the API server takes it; so does the agent. While
the end of a pod is not recorded its devices stay held, so no device is ever seen held
by two running pods; a pod admitted meanwhile that needs them waits for them instead of
failing.
"""

from __future__ import annotations

from typing import Any

import pytest
from agent_fakes import eventually, nothing_held, pod

from dgxnode.agent import pods as pods_module


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods_module, "API_RETRY_S", 0.001)
    monkeypatch.setattr(pods_module, "API_RETRY_MAX_S", 0.002)


async def test_a_pod_ends_when_the_api_server_is_back_and_only_then_frees_its_gpus(
        setup: Any) -> None:
    controller, kube, clock, sim, devices = setup
    await controller.on_pod_event("ADDED", pod("a", gpus=8))
    await eventually(lambda: kube.phase("a") == "Running")
    refusals = 30  # far more than a few quick retries
    kube.refuse = [("patch_pod_status", "Succeeded", 503)] * refusals
    await clock.advance(90)
    await eventually(lambda: len(kube.refuse) < refusals - 5)
    assert kube.phase("a") == "Running" and len(sim.state.allocations) == 8, \
        "the GPUs stay with the pod while the API server says it runs"

    await controller.on_pod_event("ADDED", pod("b", gpus=8))  # bound meanwhile
    await eventually(lambda: kube.phase("a") == "Succeeded")
    await eventually(lambda: kube.phase("b") == "Running")
    assert not any(s.get("phase") == "Failed" for _, s in kube.statuses), "no pod failed"
    assert set(sim.state.allocations.values()) == {"default/b/main"}
    await clock.advance(90)
    await eventually(lambda: kube.phase("b") == "Succeeded")
    await eventually(lambda: nothing_held(sim, devices))
