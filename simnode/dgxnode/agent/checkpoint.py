"""Which devices each container holds, kept on disk like the kubelet's checkpoint.

The node agent records every allocation before it starts a container and
drops it when the pod ends or goes away. The file is a journal: a header line,
then one JSON line per change (``record`` or ``release``), appended as it
happens, so a pod's start or end costs one small write and not the rewrite of
every pod's record. Once the journal holds many more lines than live records it
is compacted: rewritten as the header and one ``record`` per allocation,
atomically (write to a temporary file, fsync, rename, as the kubelet writes its
checkpoint), in a worker thread so the fsync never stalls the event loop.

An appended line is on disk once its write returns, which a killed agent cannot
undo; it is not fsynced, so a power loss may lose the last lines, which the
agent rebuilds at start like any damage (below). Every line ends in a newline:
a file whose last line does not (torn), or that lacks the header, or whose
lines do not parse, is damaged. A file in the older format (one JSON document)
is read as it is and rewritten in this one at the first change. A checkpoint not
yet on disk is written when a plugin first lists its devices, as the kubelet
writes its own on every device update, so the node's first pod appends a line.

A file that cannot be parsed (emptied, truncated, overwritten) is set aside as
``<name>.damaged`` for inspection and the checkpoint starts empty with
:attr:`Checkpoint.damaged` saying why; the node agent then rebuilds it from
what the API server records of the pods running on the node (their
``dgxsim.io/devices``) before it admits any pod, so held devices are never
handed out twice (:meth:`dgxnode.agent.pods.PodController.reconcile`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dgxnode.agent.errors import CheckpointError
from localkube.files import append_bytes, atomic_write_text

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "devices.json"
JOURNAL_VERSION = "v2"
COMPACT_AFTER = 64
"""Lines the journal may hold beyond twice its live records before it is compacted."""


class ContainerAllocation(BaseModel):
    """The devices of one resource given to one container, and what Allocate answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resource: str
    device_ids: tuple[str, ...]
    envs: dict[str, str] = {}
    mounts: tuple[tuple[str, str], ...] = ()
    cdi_devices: tuple[str, ...] = ()


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = "v1"
    # pod uid -> container name -> resource -> allocation
    pods: dict[str, dict[str, dict[str, ContainerAllocation]]] = {}


class Checkpoint:
    """Allocations of one node, persisted at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.damaged: str | None = None
        """Why the file on disk could not be used, if it could not (see the module doc)."""
        self._lines = 0
        """Lines of the journal on disk (0: none yet in this format, the next change
        writes it whole)."""
        self._writing = asyncio.Lock()
        """Held while a change is put on disk: a change made while the checkpoint is
        written whole in a thread is appended after it, not to the file it replaces."""
        self._doc = self._load()

    def _load(self) -> _Document:
        if not self.path.exists():
            return _Document()
        try:
            doc, self._lines = _parse(self.path.read_bytes())
            return doc
        except (ValueError, ValidationError) as err:
            aside = self.path.with_name(self.path.name + ".damaged")
            self.path.replace(aside)
            why = f"{type(err).__name__}: {err}" if isinstance(err, _DamagedError) else (
                type(err).__name__)
            self.damaged = (f"device checkpoint {self.path.name} was unreadable "
                            f"({why}) and was set aside as {aside.name}")
            return _Document()

    async def _save(self, change: dict[str, object]) -> None:
        """Put one change on disk: appended to the journal, or, when the journal is new,
        in the older format or long, the whole checkpoint rewritten with it."""
        async with self._writing:
            live = sum(len(c) for containers in self._doc.pods.values()
                       for c in containers.values())
            try:
                if self._lines and self._lines <= COMPACT_AFTER + 2 * live:
                    try:
                        append_bytes(self.path, _line(change))
                        self._lines += 1
                        return
                    except FileNotFoundError:  # removed meanwhile: written whole below
                        pass
                    except OSError:
                        self._lines = 0  # a line may be torn: the next change rewrites it
                        raise
                await self._write_whole()
            except OSError as err:
                raise CheckpointError(f"device checkpoint {self.path} cannot be written: "
                                      f"{err.strerror or err}") from err

    async def _write_whole(self) -> None:
        # Serialised on the loop (a snapshot), written in a thread.
        text, lines = _compacted(self._doc)
        # Fsynced, its directory not: as the kubelet writes its checkpoint.
        await asyncio.to_thread(atomic_write_text, self.path, text, sync="file")
        self._lines = lines

    @property
    def on_disk(self) -> bool:
        """Whether the journal is on disk in this format (else the next change writes it
        whole)."""
        return self._lines > 0

    async def write_if_new(self) -> None:
        """Write the checkpoint whole if it is not on disk in this format yet, as the
        kubelet writes its checkpoint when a plugin's devices change: the node's first
        pod then appends a line. A failure is the next change's to report."""
        if self._lines:  # on disk already: nothing to wait for
            return
        async with self._writing:
            if self._lines:
                return
            try:
                await self._write_whole()
            except OSError as err:
                log.warning("device checkpoint %s cannot be written yet: %s", self.path,
                            err.strerror or err)

    def get(self, pod_uid: str, container: str, resource: str) -> ContainerAllocation | None:
        return self._doc.pods.get(pod_uid, {}).get(container, {}).get(resource)

    def pod(self, pod_uid: str) -> dict[str, dict[str, ContainerAllocation]]:
        return self._doc.pods.get(pod_uid, {})

    def pods(self) -> list[str]:
        return list(self._doc.pods)

    def held(self, resource: str) -> set[str]:
        """Every device ID of ``resource`` that some container holds."""
        return {device for containers in self._doc.pods.values()
                for per_resource in containers.values()
                for res, alloc in per_resource.items() if res == resource
                for device in alloc.device_ids}

    def holders(self) -> dict[str, str]:
        """Device ID -> pod uid holding it."""
        return {device: uid for uid, containers in self._doc.pods.items()
                for per_resource in containers.values()
                for alloc in per_resource.values() for device in alloc.device_ids}

    async def record(self, pod_uid: str, container: str, allocation: ContainerAllocation
                     ) -> None:
        """Add an allocation and persist it; the caller serialises record and release."""
        taken = self.holders()
        clash = [d for d in allocation.device_ids if d in taken and taken[d] != pod_uid]
        if clash:
            raise CheckpointError(f"devices {clash} are already held by another pod")
        pods = self._doc.pods
        had_pod = pod_uid in pods
        had_container = had_pod and container in pods[pod_uid]
        per_container = pods.setdefault(pod_uid, {}).setdefault(container, {})
        previous = per_container.get(allocation.resource)
        per_container[allocation.resource] = allocation
        try:
            await self._save(_record(pod_uid, container, allocation))
        except CheckpointError:  # not on disk, so not given: back to what is
            if previous is not None:
                per_container[allocation.resource] = previous
            elif not had_pod:
                del pods[pod_uid]
            elif not had_container:
                del pods[pod_uid][container]
            else:
                del per_container[allocation.resource]
            raise

    async def release(self, pod_uid: str) -> None:
        if self._doc.pods.pop(pod_uid, None) is not None:
            await self._save({"release": pod_uid})


class _DamagedError(ValueError):
    """The journal's own shape is wrong (not its JSON)."""


def _record(pod_uid: str, container: str, allocation: ContainerAllocation
            ) -> dict[str, object]:
    return {"record": {"pod": pod_uid, "container": container,
                       "allocation": allocation.model_dump(mode="json")}}


def _line(entry: dict[str, object]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _compacted(doc: _Document) -> tuple[str, int]:
    """The journal that holds ``doc``: its text and line count."""
    lines = [_line({"version": JOURNAL_VERSION})] + [
        _line(_record(uid, container, alloc)) for uid, containers in doc.pods.items()
        for container, per_resource in containers.items() for alloc in per_resource.values()]
    return b"".join(lines).decode(), len(lines)


def _parse(data: bytes) -> tuple[_Document, int]:
    """The checkpoint in ``data`` and its journal's line count (0 for the older format)."""
    try:
        whole = json.loads(data)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and "pods" in whole:  # the older format: one document
        return _Document.model_validate(whole), 0
    if not data.endswith(b"\n"):
        raise _DamagedError("its last line is torn" if data else "it is empty")
    lines = data.split(b"\n")[:-1]
    if json.loads(lines[0]) != {"version": JOURNAL_VERSION}:
        raise _DamagedError(f"line 1 is not the header {{\"version\": \"{JOURNAL_VERSION}\"}}")
    pods: dict[str, dict[str, dict[str, ContainerAllocation]]] = {}
    for number, raw in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(raw)
        except ValueError as err:
            raise _DamagedError(f"line {number} is not JSON") from err
        try:
            if set(entry) == {"record"}:
                record = entry["record"]
                allocation = ContainerAllocation.model_validate(record["allocation"])
                pods.setdefault(str(record["pod"]), {}).setdefault(
                    str(record["container"]), {})[allocation.resource] = allocation
                continue
            if set(entry) == {"release"}:
                pods.pop(str(entry["release"]), None)
                continue
        except (TypeError, KeyError):
            pass
        raise _DamagedError(f"line {number} is neither a record nor a release")
    return _Document(pods=pods), len(lines)
