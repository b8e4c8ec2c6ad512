"""Errors of the node daemon.

MIG refusals subclass :class:`gpumodel.errors.PlacementError`, so a caller
catches one family for "the GPU said no" whichever layer decided it, and every
message names the GPU, the profile and the reason. State-file problems are
their own family: a corrupt file is reported with its path and left in place.
"""

from __future__ import annotations

from pathlib import Path

from gpumodel.errors import PlacementError


class SimnodeError(Exception):
    """Base of every error simnode raises."""


class MigModeError(PlacementError, SimnodeError):
    """The GPU's MIG mode does not allow the operation (disabled, or a reset is pending)."""


class InUseError(PlacementError, SimnodeError):
    """An instance cannot go: it holds compute instances or a container holds it."""


class InstanceNotFoundError(SimnodeError, LookupError):
    """No such GPU, GPU instance or compute instance (NVML: Not Found)."""


class GpuBusyError(SimnodeError):
    """A MIG mode change or reset needs an idle GPU and this one has allocations."""


class AllocationError(SimnodeError):
    """A device cannot be allocated or released as asked."""


class Blocker:
    """An allocation that stands in the way of a reconfiguration."""

    def __init__(self, gpu: int, device_id: str, profile: str, owner: str,
                 gi_id: int | None = None) -> None:
        self.gpu, self.device_id, self.profile = gpu, device_id, profile
        self.owner, self.gi_id = owner, gi_id

    def __str__(self) -> str:
        where = f"GI {self.gi_id}, " if self.gi_id is not None else ""
        return (f"GPU {self.gpu}: {self.profile} ({where}{self.device_id}) is allocated "
                f"to {self.owner}")


class ApplyBlockedError(SimnodeError):
    """A config cannot be applied without destroying allocated instances."""

    def __init__(self, config: str, blockers: list[Blocker], detail: list[str]) -> None:
        lines = "; ".join(detail)
        super().__init__(f"cannot apply MIG config {config!r}: {lines}")
        self.config = config
        self.blockers = blockers


class StateError(SimnodeError):
    """The node's state file cannot be used."""


class StateNotFoundError(StateError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"no node state at {path}; create one with `dgxsim node init`")
        self.path = path


class StateExistsError(StateError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"a node already exists at {path}; pass --force to replace it")
        self.path = path


class StateCorruptError(StateError):
    """The file exists but is not a valid node state; it is left untouched."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"node state {path} is unreadable ({reason}); the file was left "
                         f"in place for inspection")
        self.path = path
        self.reason = reason
