"""Which devices each container holds, kept on disk like the kubelet's checkpoint.

The node agent records every allocation before it starts a container and
drops it when the pod ends or goes away. The file is rewritten atomically
(write to a temporary file, fsync, rename), so a restart finds either the old
or the new state and never a torn one; the write runs in a worker thread, so
the fsync never stalls the event loop that serves every node, and the caller
awaits it before the container may start.

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
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dgxnode.agent.errors import CheckpointError
from localkube.files import atomic_write_text

CHECKPOINT_FILE = "devices.json"


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
        self._doc = self._load()

    def _load(self) -> _Document:
        if not self.path.exists():
            return _Document()
        try:
            return _Document.model_validate(json.loads(self.path.read_bytes()))
        except (ValueError, ValidationError) as err:
            aside = self.path.with_name(self.path.name + ".damaged")
            self.path.replace(aside)
            self.damaged = (f"device checkpoint {self.path.name} was unreadable "
                            f"({type(err).__name__}) and was set aside as {aside.name}")
            return _Document()

    async def _save(self) -> None:
        # Serialised on the loop (a snapshot), written in a thread.
        text = self._doc.model_dump_json(indent=1)
        try:
            # Fsynced, its directory not: as the kubelet writes its checkpoint.
            await asyncio.to_thread(atomic_write_text, self.path, text, sync="file")
        except OSError as err:
            raise CheckpointError(f"device checkpoint {self.path} cannot be written: "
                                  f"{err.strerror or err}") from err

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
            await self._save()
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
            await self._save()
