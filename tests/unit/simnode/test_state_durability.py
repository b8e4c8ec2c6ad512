"""What each record fsyncs: layouts with their directory, the device checkpoint's whole
rewrites as the kubelet writes its checkpoint, and the journal lines of who holds which
device (rebuilt at start) not at all; every rewrite is still a rename of a complete
file."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

import dgxnode.agent.checkpoint as checkpoint_module
import localkube.files as files_module
from dgxnode.agent.checkpoint import Checkpoint, ContainerAllocation
from dgxnode.node import SimNode
from dgxnode.store import NodeStore
from localkube.files import Sync, atomic_write_text


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync was called on, in order: "file" or "directory"."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(files_module.os, "fsync", fsync)
    return calls


@pytest.mark.parametrize(("sync", "expected"), [
    ("file-and-directory", ["file", "directory"]),
    ("file", ["file"]),
    ("none", []),
])
def test_each_level_fsyncs_what_it_says_and_always_replaces_whole(
        tmp_path: Path, synced: list[str], sync: Sync, expected: list[str]) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    atomic_write_text(target, "new", sync=sync)
    assert target.read_text() == "new"
    assert synced == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"], "no temporary left"


def test_owner_changes_skip_fsync_and_layout_changes_keep_it(
        tmp_path: Path, synced: list[str]) -> None:
    node = SimNode.create("node-a", store=NodeStore(tmp_path))
    gpu = node.hardware.gpus[0].uuid
    synced.clear()
    node.allocate(gpu, "default/a/main")
    node.release(gpu)
    assert synced == [], "who holds a device is rebuilt at start: no journal commit per pod"
    assert SimNode.open(NodeStore(tmp_path)).state == node.state, "yet the file is current"
    node.set_health(gpu, False, xid=79)
    assert synced == ["file", "directory"], "a change of the node itself is durable"


def test_the_device_checkpoint_is_fsynced_when_written_whole_and_appended_to_without(
        tmp_path: Path, synced: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint_module, "COMPACT_AFTER", 2)
    path = tmp_path / "kubelet_internal_checkpoint"
    checkpoint = Checkpoint(path)

    def allocation(gpu: int) -> ContainerAllocation:
        return ContainerAllocation(resource="nvidia.com/gpu", device_ids=(f"GPU-{gpu}",))

    async def changes() -> None:
        await checkpoint.record("pod-a", "main", allocation(0))
        assert synced == ["file"], "a new checkpoint is written whole: the file, not its directory"
        await checkpoint.record("pod-b", "main", allocation(1))
        await checkpoint.release("pod-a")
        assert synced == ["file"], "then each change is one line, not fsynced"
        assert len(path.read_bytes().splitlines()) == 4
        await checkpoint.release("pod-b")  # 4 lines for no live record: past 2 + 2 * 0
        assert synced == ["file", "file"], "a long journal is written whole again"
        assert path.read_bytes().splitlines() == [b'{"version":"v2"}']
        await checkpoint.record("pod-c", "main", allocation(2))
        assert synced == ["file", "file"]

    asyncio.run(changes())
    assert Checkpoint(path).holders() == {"GPU-2": "pod-c"}
