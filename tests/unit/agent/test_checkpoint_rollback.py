"""A device checkpoint that cannot be written gives nothing: memory goes back to the file."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

import dgxnode.agent.checkpoint as checkpoint_module
from dgxnode.agent.checkpoint import Checkpoint, ContainerAllocation
from dgxnode.agent.errors import CheckpointError


def _alloc(resource: str, *ids: str) -> ContainerAllocation:
    return ContainerAllocation(resource=resource, device_ids=ids)


def test_a_failed_write_takes_back_exactly_the_allocation_it_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.json"
    checkpoint = Checkpoint(path)
    gpu, mig = "nvidia.com/gpu", "nvidia.com/mig-1g.5gb"

    async def scenario() -> None:
        await checkpoint.record("pod-a", "main", _alloc(gpu, "GPU-0"))
        on_disk = path.read_bytes()

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        # Both ways a change reaches the disk: a journal line, or the file rewritten.
        monkeypatch.setattr(checkpoint_module, "append_bytes", refuse)
        monkeypatch.setattr(checkpoint_module, "atomic_write_text", refuse)
        attempts = [("pod-b", "main", _alloc(gpu, "GPU-1")),  # a new pod
                    ("pod-a", "side", _alloc(gpu, "GPU-2")),  # a new container
                    ("pod-a", "main", _alloc(mig, "MIG-3")),  # a new resource
                    ("pod-a", "main", _alloc(gpu, "GPU-0", "GPU-4"))]  # a replacement
        for uid, container, allocation in attempts:
            with pytest.raises(CheckpointError, match="No space left"):
                await checkpoint.record(uid, container, allocation)
            assert checkpoint.pods() == ["pod-a"]
            assert checkpoint.pod("pod-a") == {"main": {gpu: _alloc(gpu, "GPU-0")}}
            assert checkpoint.holders() == {"GPU-0": "pod-a"}
        assert path.read_bytes() == on_disk

    asyncio.run(scenario())
    assert Checkpoint(path).holders() == checkpoint.holders()
