"""The node's CDI specification: every name Allocate returns resolves, by UUID and by
the toolkit's index names, and a specification a runtime would refuse is never written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deviceplugin.cdi import (
    SPEC_FILE,
    cdi_name,
    cdi_spec,
    resolves,
    spec_problems,
    write_spec,
)
from dgxnode.node import SimNode


@pytest.fixture
def node() -> SimNode:
    sim = SimNode.create("dgx-0")
    sim.apply("all-balanced")
    return sim


def test_every_device_resolves_by_uuid_and_by_index(node: SimNode) -> None:
    inventory = node.inventory()
    spec = cdi_spec(inventory, {"DGXSIM_NODE": "dgx-0"}, [("/h", "/c", True)])
    assert spec_problems(spec) == []
    assert spec["kind"] == "nvidia.com/gpu"
    for dev in inventory.devices:
        assert resolves(spec, cdi_name(dev.id)), dev.id
    migs_on_gpu0 = [d for d in inventory.devices if d.kind == "mig" and d.gpu_index == 0]
    assert len(migs_on_gpu0) == 4  # all-balanced: 2x 1g.5gb, 2g.10gb, 3g.20gb
    for i in range(4):
        assert resolves(spec, f"nvidia.com/gpu={0}:{i}")
    assert not resolves(spec, "nvidia.com/gpu=0:4")
    assert resolves(spec, "nvidia.com/gpu=7") and resolves(spec, "nvidia.com/gpu=all")
    assert spec["containerEdits"]["mounts"] == [
        {"hostPath": "/h", "containerPath": "/c", "options": ["rbind", "ro"]}]


def test_each_device_names_itself_in_the_environment(node: SimNode) -> None:
    spec = cdi_spec(node.inventory(), {}, [])
    envs = [e for d in spec["devices"] for e in d["containerEdits"]["env"]]
    assert len(set(e.split("=")[0] for e in envs)) == len(envs), "no two devices clash"


@pytest.mark.parametrize(("broken", "problem"), [
    ({"kind": "nvidia"}, "vendor/class"),
    ({"devices": [{"name": "-bad", "containerEdits": {"env": ["A=1"]}}]}, "invalid"),
    ({"devices": [{"name": "x", "containerEdits": {"env": ["A=1"]}},
                  {"name": "x", "containerEdits": {"env": ["B=1"]}}]}, "twice"),
    ({"devices": [{"name": "x", "containerEdits": {}}]}, "no edits"),
])
def test_a_spec_a_runtime_would_refuse_is_never_written(
        node: SimNode, tmp_path: Path, broken: dict[str, object], problem: str) -> None:
    spec = {**cdi_spec(node.inventory(), {}, []), **broken}
    assert any(problem in p for p in spec_problems(spec))
    with pytest.raises(ValueError, match=problem):
        write_spec(tmp_path, spec)
    assert not (tmp_path / SPEC_FILE).exists()


def test_the_spec_is_written_whole(node: SimNode, tmp_path: Path) -> None:
    path = write_spec(tmp_path / "cdi", cdi_spec(node.inventory(), {}, []))
    assert json.loads(path.read_text())["cdiVersion"] == "0.6.0"
    assert [p.name for p in path.parent.iterdir()] == [SPEC_FILE]
