"""A pod's devices are recorded on the agent's event loop when the node's locks are
free, and in a worker thread when another thread or process holds them: the loop
never waits for a lock."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import threading
from pathlib import Path

import pytest

from dgxnode.agent.pods import _commit
from dgxnode.node import SimNode
from dgxnode.store import LOCK_FILE, LockBusyError, NodeStore


def _node(tmp_path: Path) -> SimNode:
    return SimNode.create("n", store=NodeStore(tmp_path / "n"))


def test_at_once_takes_free_locks_and_changes_inside_take_them_again(tmp_path: Path) -> None:
    node = _node(tmp_path)
    gpu = node.hardware.gpus[0].uuid
    with node.at_once():
        node.allocate(gpu, "ns/p/main")
    assert NodeStore(tmp_path / "n").load().allocations == {gpu: "ns/p/main"}


def test_at_once_refuses_a_lock_another_process_holds(tmp_path: Path) -> None:
    node = _node(tmp_path)
    # Another open file description of the lock file: as another process's flock.
    with open(tmp_path / "n" / LOCK_FILE, "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockBusyError, match="another process"), node.at_once():
            pass
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    with node.at_once():
        pass  # free again, and nothing was left held


def test_at_once_refuses_a_node_another_thread_holds(tmp_path: Path) -> None:
    node = _node(tmp_path)
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with node.mutex:
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(LockBusyError, match="another thread"), node.at_once():
            pass
    finally:
        done.set()
        thread.join()


def test_a_commit_waits_off_the_loop_while_another_process_holds_the_node(
        tmp_path: Path) -> None:
    node = _node(tmp_path)
    gpu = node.hardware.gpus[0].uuid

    async def scenario() -> tuple[int, dict[str, str], dict[str, str]]:
        with open(tmp_path / "n" / LOCK_FILE, "ab") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX)
            commit = asyncio.create_task(_commit(node, functools.partial(
                node.allocate, gpu, "ns/p/main")))
            ticks = 0
            for _ in range(10):  # the loop goes on while the commit waits
                await asyncio.sleep(0.02)
                ticks += 1
            during = dict(node.state.allocations)
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        await asyncio.wait_for(commit, 10)
        return ticks, during, dict(node.state.allocations)

    ticks, during, after = asyncio.run(scenario())
    assert ticks == 10 and during == {}, "the loop ran on while the node was held"
    assert after == {gpu: "ns/p/main"}, "the change was made once the lock was free"
