"""Node state persistence: restarts are exact; damaged files are reported and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from simnode.errors import StateCorruptError, StateNotFoundError
from simnode.node import SimNode
from simnode.store import NodeStore


def test_restart_is_identical(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    node = SimNode.create("node-a", store=store)
    node.apply("all-balanced")
    first, second = node.mig_devices(0)[0], node.mig_devices(5)[2]
    node.allocate(first.uuid, "default/a/main")
    node.allocate(second.uuid, "default/b/main")
    reloaded = SimNode.open(NodeStore(tmp_path))
    assert reloaded.state == node.state
    assert reloaded.inventory() == node.inventory()
    assert [d.uuid for d in reloaded.mig_devices(5)] == [d.uuid for d in node.mig_devices(5)]


def test_truncated_file_is_reported_and_left_in_place(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    SimNode.create("node-a", store=store).apply("all-1g.5gb")
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateCorruptError) as err:
        SimNode.open(store)
    assert str(store.path) in str(err.value) and "left in place" in str(err.value)
    assert store.path.read_bytes() == data[: len(data) // 2]


def test_valid_json_with_wrong_shape_is_corrupt(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    store.path.write_text('{"version": "v1", "node": "x"}')
    with pytest.raises(StateCorruptError, match="kind"):
        store.load()


def test_missing_state(tmp_path: Path) -> None:
    with pytest.raises(StateNotFoundError, match="dgxsim node init"):
        NodeStore(tmp_path / "nothing").load()


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    node = SimNode.create("node-a", store=NodeStore(tmp_path))
    node.apply("all-3g.20gb")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".node.lock")) \
        == ["node.json"]
