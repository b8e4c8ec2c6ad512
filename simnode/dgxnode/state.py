"""The node's mutable facts: MIG modes, GPU and compute instances, allocations.

Values are frozen pydantic models: every change builds a new :class:`NodeState`
and the node swaps it in only when the whole operation succeeded, which is what
makes MIG changes all-or-nothing. The same models are the on-disk format
(``version: v1``), so what is persisted is exactly what the engine checks.
Hardware facts are not stored: they follow from ``node`` and ``kind``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dgxnode.errors import InstanceNotFoundError
from gpumodel.migparted import GpuTarget

ConfigState = Literal["pending", "rebooting", "success", "failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CiState(_Frozen):
    """A compute instance: ``slices`` compute slices of its GI from ``start``."""

    ci_id: int = Field(ge=0)
    start: int = Field(ge=0)
    slices: int = Field(ge=1)


class GiState(_Frozen):
    """A GPU instance: its profile and memory-slice placement, and its compute instances."""

    gi_id: int = Field(ge=0)
    profile: str
    start: int = Field(ge=0)
    size: int = Field(ge=1)
    cis: tuple[CiState, ...] = ()

    def ci(self, ci_id: int) -> CiState | None:
        return next((c for c in self.cis if c.ci_id == ci_id), None)


class GpuState(_Frozen):
    """One GPU's MIG mode (current and after the next reset) and instances."""

    index: int = Field(ge=0)
    mig_enabled: bool = False
    mig_pending: bool = False
    """The MIG mode the GPU will have after its next reset."""
    gis: tuple[GiState, ...] = ()

    @property
    def reset_pending(self) -> bool:
        return self.mig_enabled != self.mig_pending

    def gi(self, gi_id: int) -> GiState | None:
        return next((g for g in self.gis if g.gi_id == gi_id), None)


class PendingApply(_Frozen):
    """A config apply waiting for allocations to go: the GPUs still to change."""

    config: str
    targets: dict[int, GpuTarget]


HOLDINGS = ("generation", "allocations", "kubelet_assigned")
"""What every pod changes: which device is held by whom (and the count of commits)."""

LayoutKey = tuple[object, ...]


class NodeState(_Frozen):
    """Everything about a node that changes; persisted as JSON."""

    version: Literal["v1"] = "v1"
    node: str
    kind: str
    generation: int = Field(default=0, ge=0)
    gpus: tuple[GpuState, ...]
    allocations: dict[str, str] = Field(default_factory=dict)
    """Device ID (``GPU-...`` / ``MIG-...``) -> owner (``namespace/pod/container``)."""
    kubelet_assigned: tuple[str, ...] = ()
    """The allocations a real kubelet made (kind mode: read from its PodResources API),
    released when the kubelet no longer lists them; the others are the node's own."""
    unhealthy: tuple[str, ...] = ()
    last_xid: dict[str, int] = Field(default_factory=dict)
    """Device ID -> the last XID error raised on it (DCGM's ``DCGM_FI_DEV_XID_ERRORS``);
    kept when the device is healthy again, cleared by a reboot."""
    mig_config: str | None = None
    mig_config_state: ConfigState | None = None
    pending_apply: PendingApply | None = None
    drives_locked: bool = False
    """Self-encrypting drives lock at power-off and unlock with the node's key."""
    attestation_failure: str | None = None
    """Why the node's measured boot no longer verifies; None while it does."""

    def layout_key(self) -> LayoutKey:
        """Everything but who holds which device: two states with equal keys publish the
        same devices, health, labels and layout, and differ at most in owners. The
        fields a holding does not change are the same objects in both, so comparing
        keys is cheap."""
        return tuple(v for k, v in self.__dict__.items() if k not in HOLDINGS)

    def gpu(self, index: int) -> GpuState:
        if not 0 <= index < len(self.gpus):
            raise InstanceNotFoundError(f"GPU {index} not found; this node has GPUs "
                                        f"0-{len(self.gpus) - 1}")
        return self.gpus[index]

    def with_gpu(self, gpu: GpuState) -> NodeState:
        gpus = tuple(gpu if g.index == gpu.index else g for g in self.gpus)
        return self.model_copy(update={"gpus": gpus})
