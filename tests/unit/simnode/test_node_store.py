"""Node state persistence: restarts are exact; damaged files are reported and kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgxnode.errors import AllocationError, StateCorruptError, StateNotFoundError
from dgxnode.node import SimNode
from dgxnode.store import NodeStore


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


def test_a_stale_instance_commits_on_top_of_the_other_ones_change(tmp_path: Path) -> None:
    SimNode.create("node-a", store=NodeStore(tmp_path))
    first, second = SimNode.open(NodeStore(tmp_path)), SimNode.open(NodeStore(tmp_path))
    gpus = first.hardware.gpus
    first.allocate(gpus[0].uuid, "default/a/main")
    second.allocate(gpus[1].uuid, "default/b/main")  # second had not seen GPU 0 go
    stored = SimNode.open(NodeStore(tmp_path)).state.allocations
    assert stored == {gpus[0].uuid: "default/a/main", gpus[1].uuid: "default/b/main"}
    with pytest.raises(AllocationError, match="already allocated to default/a/main"):
        second.allocate(gpus[0].uuid, "default/c/main")


def test_a_holder_of_the_lock_may_mutate_without_waiting_for_itself(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    node = SimNode.create("node-a", store=store)
    with store.locked(), store.locked():
        node.apply("all-1g.5gb")
    assert SimNode.open(store).state.mig_config == "all-1g.5gb"


def _churn(state_dir: str, gpus: list[int], owner: str, start: Any) -> None:
    node = SimNode.open(NodeStore(Path(state_dir)))
    start.wait()
    uuids = [node.hardware.gpus[i].uuid for i in gpus]
    for _ in range(15):
        for uuid in uuids:
            node.allocate(uuid, owner)
        for uuid in uuids:
            node.release(uuid)
    for uuid in uuids:
        node.allocate(uuid, owner)


def test_two_processes_sharing_a_state_dir_lose_no_change(tmp_path: Path) -> None:
    import multiprocessing

    SimNode.create("node-a", store=NodeStore(tmp_path))
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_churn, args=(str(tmp_path), gpus, owner, start))
               for gpus, owner in (([0, 1, 2, 3], "ns/left/main"), ([4, 5, 6, 7], "ns/right/main"))]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    node = SimNode.open(NodeStore(tmp_path))
    owners = {node.hardware.gpu(i).uuid: ("ns/left/main" if i < 4 else "ns/right/main")
              for i in range(8)}
    assert node.state.allocations == owners
    assert node.state.generation == 2 * 15 * 8 + 8, "every commit of both processes counts"


def test_the_state_is_readable_by_any_user_of_a_container(tmp_path: Path) -> None:
    """Job containers run nvidia-smi as any user against the state mounted read-only."""
    SimNode.create("node-a", store=NodeStore(tmp_path))
    assert (tmp_path / "node.json").stat().st_mode & 0o777 == 0o644


def test_a_read_only_state_is_read_through_a_read_only_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a container, where the state is mounted read-only (even for root)."""
    import errno

    import dgxnode.store as store_module

    SimNode.create("node-a", store=NodeStore(tmp_path))
    modes: list[str] = []

    def read_only_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        modes.append(mode)
        if any(c in mode for c in "wa+"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_module, "open", read_only_open, raising=False)
    store = NodeStore(tmp_path)
    with store.locked():
        assert SimNode.open(store).name == "node-a"
    assert modes[:2] == ["a+b", "rb"]


def test_the_file_is_read_again_only_when_another_writer_replaced_or_changed_it(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    node = SimNode.create("node-a", store=store)
    assert store.unchanged(), "the file this store just wrote"
    other = SimNode.open(NodeStore(tmp_path))
    assert store.unchanged(), "another reader changes nothing"
    other.allocate(other.hardware.gpus[0].uuid, "default/a/main")
    assert not store.unchanged(), "another writer replaced it"
    assert node.refresh() and store.unchanged()
    assert node.state.allocations == other.state.allocations
    node.release(node.hardware.gpus[0].uuid)
    assert store.unchanged(), "its own commit"
    data = store.path.read_bytes()
    store.path.write_bytes(data[:-10])  # rewritten in place, not replaced
    assert not store.unchanged()
    store.path.unlink()
    assert not store.unchanged()


def test_a_node_is_created_in_a_directory_that_does_not_exist_yet(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "state" / "nodes" / "node-a")
    node = SimNode.create("node-a", store=store)
    node.allocate(node.hardware.gpus[0].uuid, "default/a/main")
    assert SimNode.open(NodeStore(store.state_dir)).state == node.state
