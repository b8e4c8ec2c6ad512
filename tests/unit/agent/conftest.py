"""Fixtures of the node agent's unit tests: a real node and pod controller in virtual
time, over the fakes of :mod:`agent_fakes`."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_fakes import NODE, FakeDevices, FakeKube

from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.pods import NodePods, PodController
from dgxnode.clock import VirtualClock
from dgxnode.node import SimNode


@pytest.fixture
def node(tmp_path: Path) -> tuple[SimNode, FakeDevices]:
    sim = SimNode.create(NODE)
    return sim, FakeDevices(sim, Checkpoint(tmp_path / "devices.json"))


@pytest.fixture
def setup(node: tuple[SimNode, FakeDevices]
          ) -> tuple[PodController, FakeKube, VirtualClock, SimNode, FakeDevices]:
    sim, devices = node
    kube, clock = FakeKube(), VirtualClock(start=100.0, scale=60.0)
    controller = PodController(kube, {NODE: NodePods(sim, devices)},  # type: ignore[arg-type]
                               clock=clock)
    return controller, kube, clock, sim, devices
