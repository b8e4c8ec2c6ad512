"""What each record fsyncs: layouts with their directory, the device checkpoint as the
kubelet writes it, and who holds which device (rebuilt at start) not at all; every
write is still a rename of a complete file."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

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


def test_the_device_checkpoint_is_fsynced_as_the_kubelet_fsyncs_it(
        tmp_path: Path, synced: list[str]) -> None:
    checkpoint = Checkpoint(tmp_path / "kubelet_internal_checkpoint")
    allocation = ContainerAllocation(resource="nvidia.com/gpu", device_ids=("GPU-0",))
    asyncio.run(checkpoint.record("pod-a", "main", allocation))
    asyncio.run(checkpoint.release("pod-a"))
    assert synced == ["file", "file"], "the file on each change, not its directory"
