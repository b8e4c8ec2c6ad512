"""Who holds which device, journaled beside the node's state file: a pod's start or end
appends a line, any other change rewrites the file and starts the journal again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import dgxnode.store as store_module
from dgxnode.errors import StateCorruptError
from dgxnode.node import SimNode
from dgxnode.store import NodeStore
from dgxsim.kubeletless import REFRESH_S, follow_state_file
from localkube.dirwatch import dir_watcher


def _node(tmp_path: Path) -> tuple[SimNode, list[str]]:
    node = SimNode.create("node-a", store=NodeStore(tmp_path))
    return node, [g.uuid for g in node.hardware.gpus]


def test_holdings_are_appended_and_read_back_and_a_layout_change_folds_them_in(
        tmp_path: Path) -> None:
    node, gpus = _node(tmp_path)
    snapshot = (tmp_path / "node.json").read_bytes()
    node.allocate(gpus[0], "default/a/main")
    node.allocate(gpus[1], "default/b/main")
    node.release(gpus[0])
    assert (tmp_path / "node.json").read_bytes() == snapshot, "the state file is not rewritten"
    assert len((tmp_path / "node.holdings").read_bytes().splitlines()) == 3
    assert SimNode.open(NodeStore(tmp_path)).state == node.state

    node.set_health(gpus[2], False, xid=79)
    assert not (tmp_path / "node.holdings").exists(), "the state file holds them now"
    reopened = SimNode.open(NodeStore(tmp_path))
    assert reopened.state == node.state
    assert reopened.state.allocations == {gpus[1]: "default/b/main"}


def test_a_long_journal_is_folded_into_the_state_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_LIMIT", 600)
    node, gpus = _node(tmp_path)
    journal = tmp_path / "node.holdings"
    for i in range(8):
        node.allocate(gpus[i], f"default/p{i}/main")
        assert not journal.exists() or journal.stat().st_size <= 600
    folded = json.loads((tmp_path / "node.json").read_text())["allocations"]
    assert folded, "past the limit the holdings went into the state file"
    assert SimNode.open(NodeStore(tmp_path)).state == node.state


def test_a_torn_last_line_leaves_the_line_before_it(tmp_path: Path) -> None:
    node, gpus = _node(tmp_path)
    node.allocate(gpus[0], "default/a/main")
    before = node.state
    node.allocate(gpus[1], "default/b/main")
    journal = tmp_path / "node.holdings"
    journal.write_bytes(journal.read_bytes()[:-9])  # the last append cut short
    assert SimNode.open(NodeStore(tmp_path)).state == before


def test_lines_that_extend_an_older_state_file_are_not_read(tmp_path: Path) -> None:
    node, gpus = _node(tmp_path)
    node.allocate(gpus[0], "default/a/main")
    stale = (tmp_path / "node.holdings").read_bytes()
    node.set_health(gpus[3], False, xid=48)  # the state file rewritten, the journal gone
    node.release(gpus[0])  # a line on top of the new file
    node.set_health(gpus[3], True)  # rewritten again: no journal
    # As if a stop between the rewrite and the removal had left the old journal:
    (tmp_path / "node.holdings").write_bytes(stale)
    assert SimNode.open(NodeStore(tmp_path)).state == node.state, \
        "a line for an older state file says nothing about this one"


def test_a_damaged_journal_is_refused_by_commands_and_set_aside_by_the_agent(
        tmp_path: Path) -> None:
    node, gpus = _node(tmp_path)
    node.allocate(gpus[0], "default/a/main")
    journal = tmp_path / "node.holdings"
    journal.write_bytes(journal.read_bytes() + b'{"base": 0, "generation": "x"}\n')
    with pytest.raises(StateCorruptError, match=r"node.holdings .*line 2: generation"):
        NodeStore(tmp_path).load()
    store = NodeStore(tmp_path)
    why = store.set_aside_if_damaged()
    assert why is not None and "device holdings journal node.holdings was unreadable" in why
    assert (tmp_path / "node.holdings.damaged").exists() and not journal.exists()
    assert store.load().allocations == {}, "the state file's own holdings"


def test_another_process_changing_holdings_is_seen(tmp_path: Path) -> None:
    store = NodeStore(tmp_path)
    node = SimNode.create("node-a", store=store)
    gpu = node.hardware.gpus[0].uuid
    other = SimNode.open(NodeStore(tmp_path))
    other.allocate(gpu, "default/a/main")
    assert not store.unchanged(), "the journal grew"
    assert node.refresh() and node.state == other.state and store.unchanged()
    node.release(gpu)
    assert store.unchanged(), "its own line"
    with pytest.raises(Exception, match="not allocated"):
        other.release(gpu)  # the other instance takes the release in first
    assert other.state == node.state


def test_the_agent_follows_holdings_another_process_appends(tmp_path: Path) -> None:
    async def scenario() -> None:
        node, gpus = _node(tmp_path)
        watcher = dir_watcher()
        stop = follow_state_file(node, watcher)
        assert stop is not None
        try:
            other = SimNode.open(NodeStore(tmp_path))
            other.allocate(gpus[0], "default/a/main")  # the journal is created
            other.allocate(gpus[1], "default/b/main")  # then appended to
            for _ in range(int(20 / REFRESH_S)):
                if node.state == other.state:
                    break
                await asyncio.sleep(REFRESH_S)
            assert node.state.allocations == {gpus[0]: "default/a/main",
                                              gpus[1]: "default/b/main"}
            await asyncio.sleep(3 * REFRESH_S)  # the second append alone, after the first read
            other.release(gpus[0])
            for _ in range(int(20 / REFRESH_S)):
                if node.state == other.state:
                    break
                await asyncio.sleep(REFRESH_S)
            assert node.state == other.state
        finally:
            stop()

    asyncio.run(scenario())


def test_a_journal_another_process_removed_is_not_written_through_a_kept_descriptor(
        tmp_path: Path) -> None:
    node, gpus = _node(tmp_path)
    node.allocate(gpus[0], "default/a/main")  # the journal made, and kept open
    other = SimNode.open(NodeStore(tmp_path))
    other.set_health(gpus[5], False, xid=79)  # node.json rewritten, the journal removed
    node.allocate(gpus[1], "default/b/main")
    other.allocate(gpus[2], "default/c/main")
    node.release(gpus[0])
    assert SimNode.open(NodeStore(tmp_path)).state == node.state
    assert node.state.allocations == {gpus[1]: "default/b/main", gpus[2]: "default/c/main"}


def test_the_kept_lock_file_follows_a_directory_made_again(tmp_path: Path) -> None:
    import fcntl
    import shutil

    node, gpus = _node(tmp_path / "n")
    node.allocate(gpus[0], "default/a/main")  # the lock file opened, and kept
    shutil.rmtree(tmp_path / "n")
    store = NodeStore(tmp_path / "n")
    SimNode.create("node-a", store=store)
    assert node.store is not None
    with node.store.locked(), open(tmp_path / "n" / ".node.lock", "rb") as other, \
            pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
