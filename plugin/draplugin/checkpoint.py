"""The claims this plugin has prepared, kept on disk so a restart never prepares twice.

As NVIDIA's plugin checkpoints prepared claims: after a restart a claim the
kubelet prepares again gets the same devices (the MIG instance created for it is
found, not created a second time) and a claim it unprepares is undone even if
the plugin was restarted in between. Written atomically (temporary file, fsync,
rename).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from draplugin.errors import CheckpointError
from localkube.files import atomic_write_text

CHECKPOINT_FILE = "dra-checkpoint.json"


class PreparedDevice(BaseModel):
    """One allocated device of a claim and what preparing it did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_names: tuple[str, ...]
    pool: str
    device: str
    gpu: int
    uuid: str
    """The GPU or MIG device UUID the container gets."""
    created: bool
    """True when prepare created a MIG instance (unprepare destroys it)."""
    cdi_device_ids: tuple[str, ...]


class PreparedClaim(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: str
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = "v1"
    claims: dict[str, PreparedClaim] = {}


class ClaimCheckpoint:
    """Prepared claims by UID, persisted at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._doc = self._load()

    def _load(self) -> _Document:
        if not self.path.exists():
            return _Document()
        try:
            return _Document.model_validate(json.loads(self.path.read_text()))
        except (OSError, ValueError, ValidationError) as err:
            raise CheckpointError(f"{self.path}: cannot read prepared claims: {err}") from err

    def get(self, uid: str) -> PreparedClaim | None:
        return self._doc.claims.get(uid)

    def claims(self) -> dict[str, PreparedClaim]:
        return dict(self._doc.claims)

    def put(self, claim: PreparedClaim) -> None:
        self._save({**self._doc.claims, claim.uid: claim})

    def drop(self, uid: str) -> None:
        self._save({k: v for k, v in self._doc.claims.items() if k != uid})

    def _save(self, claims: dict[str, PreparedClaim]) -> None:
        doc = _Document(claims=claims)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, doc.model_dump_json(indent=1))
        except OSError as err:
            raise CheckpointError(f"{self.path}: cannot write prepared claims: {err}") from err
        self._doc = doc
