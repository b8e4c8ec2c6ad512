"""The device checkpoint as a journal: what it reads back, and what it calls damaged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dgxnode.agent.checkpoint import Checkpoint, ContainerAllocation

GPU = "nvidia.com/gpu"


def _alloc(*ids: str) -> ContainerAllocation:
    return ContainerAllocation(resource=GPU, device_ids=ids, envs={"NVIDIA_VISIBLE_DEVICES":
                                                                   ",".join(ids)})


def _written(path: Path) -> Checkpoint:
    """A journal with a record, a release and a replaced record on disk."""
    checkpoint = Checkpoint(path)

    async def changes() -> None:
        await checkpoint.record("pod-a", "main", _alloc("GPU-0"))
        await checkpoint.record("pod-b", "main", _alloc("GPU-1"))
        await checkpoint.release("pod-a")
        await checkpoint.record("pod-b", "main", _alloc("GPU-1", "GPU-2"))

    asyncio.run(changes())
    return checkpoint


def test_every_change_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    written = _written(path)
    assert len(path.read_bytes().splitlines()) == 5, "the header and one line per change"
    reloaded = Checkpoint(path)
    assert reloaded.damaged is None
    assert reloaded.holders() == written.holders() == {"GPU-1": "pod-b", "GPU-2": "pod-b"}
    assert reloaded.pod("pod-b") == {"main": {GPU: _alloc("GPU-1", "GPU-2")}}


def test_the_older_single_document_is_read_and_rewritten_at_the_first_change(
        tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"version": "v1", "pods": {
        "pod-a": {"main": {GPU: _alloc("GPU-0").model_dump(mode="json")}}}}, indent=1))
    checkpoint = Checkpoint(path)
    assert checkpoint.damaged is None and checkpoint.holders() == {"GPU-0": "pod-a"}
    asyncio.run(checkpoint.record("pod-b", "main", _alloc("GPU-1")))
    assert path.read_bytes().splitlines()[0] == b'{"version":"v2"}'
    assert Checkpoint(path).holders() == {"GPU-0": "pod-a", "GPU-1": "pod-b"}


def _torn(data: bytes) -> bytes:
    return data[:-7]


def _headless(data: bytes) -> bytes:
    return b"\n".join(data.split(b"\n")[1:])


def _odd_line(data: bytes) -> bytes:
    return data + b'{"forget":"pod-b"}\n'


def _odd_record(data: bytes) -> bytes:
    return data + b'{"record":{"pod":"pod-c","allocation":{"resource":"r","device_ids":[]}}}\n'


def _not_json(data: bytes) -> bytes:
    return data + b"\xff\xfe\n"


@pytest.mark.parametrize(("damage", "why"), [
    (lambda _: b"", "it is empty"),
    (_torn, "its last line is torn"),
    (_headless, "line 1 is not the header"),
    (_odd_line, "line 6 is neither a record nor a release"),
    (_odd_record, "line 6 is neither a record nor a release"),
    (_not_json, "line 6 is not JSON"),
], ids=["emptied", "torn", "headless", "unknown-change", "record-without-container",
        "binary"])
def test_a_damaged_journal_is_set_aside_with_the_reason(
        tmp_path: Path, damage: Callable[[bytes], bytes], why: str) -> None:
    path = tmp_path / "devices.json"
    _written(path)
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    checkpoint = Checkpoint(path)
    assert checkpoint.damaged is not None
    assert why in checkpoint.damaged and "set aside as devices.json.damaged" in checkpoint.damaged
    assert checkpoint.pods() == [], "nothing half-read: the agent rebuilds it from the API"
    assert (tmp_path / "devices.json.damaged").read_bytes() == damaged
    asyncio.run(checkpoint.record("pod-z", "main", _alloc("GPU-7")))
    assert Checkpoint(path).holders() == {"GPU-7": "pod-z"}, "a new journal, written whole"


def test_a_journal_removed_while_in_use_is_written_whole_again(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    checkpoint = _written(path)
    path.unlink()
    asyncio.run(checkpoint.record("pod-c", "main", _alloc("GPU-3")))
    assert Checkpoint(path).holders() == {"GPU-1": "pod-b", "GPU-2": "pod-b", "GPU-3": "pod-c"}


def test_a_change_made_while_the_checkpoint_is_written_whole_is_not_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import dgxnode.agent.checkpoint as checkpoint_module

    real = checkpoint_module.atomic_write_text

    def slow(*args: object, **kwargs: object) -> None:
        time.sleep(0.3)  # a loaded disk: the whole write takes a while, in its thread
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint_module, "COMPACT_AFTER", 0)
    monkeypatch.setattr(checkpoint_module, "atomic_write_text", slow)
    path = tmp_path / "devices.json"
    checkpoint = Checkpoint(path)

    async def scenario() -> None:
        await checkpoint.record("pod-a", "main", _alloc("GPU-0"))
        release = asyncio.create_task(checkpoint.release("pod-a"))  # written whole again
        await asyncio.sleep(0.1)
        await checkpoint.record("pod-b", "main", _alloc("GPU-1"))  # meanwhile
        await release

    asyncio.run(scenario())
    assert Checkpoint(path).holders() == checkpoint.holders() == {"GPU-1": "pod-b"}


def test_a_new_checkpoint_is_written_before_the_first_pod_which_then_appends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the kubelet writes its checkpoint when a plugin lists its devices: the node's
    first pod appends a line instead of writing the file whole."""
    import dgxnode.agent.checkpoint as module

    path = tmp_path / "devices.json"
    checkpoint = Checkpoint(path)
    whole: list[Path] = []
    real = module.atomic_write_text

    def counted(target: Path, text: str, **kwargs: object) -> None:
        whole.append(target)
        real(target, text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "atomic_write_text", counted)

    async def changes() -> None:
        assert not checkpoint.on_disk
        await checkpoint.write_if_new()
        await checkpoint.write_if_new()  # once is enough
        await checkpoint.record("pod-a", "main", _alloc("GPU-0"))

    asyncio.run(changes())
    assert whole == [path], "written whole once, before the first pod"
    assert [json.loads(line).get("version", "line") for line in
            path.read_bytes().splitlines()] == ["v2", "line"]
    assert Checkpoint(path).holders() == {"GPU-0": "pod-a"}
