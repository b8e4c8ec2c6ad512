"""The MIG engine of one GPU: NVML's create/destroy operations as pure functions.

Each function takes a :class:`GpuState` and returns a new one (or raises a
typed refusal), in the role of the driver behind ``nvidia-smi mig``. Whether a
container holds an instance is the node's knowledge, not the GPU's, so callers
pass the set of busy GI IDs where it matters. Placement rules come from
:mod:`gpumodel.placement`; this module adds MIG mode, compute instances and
NVML's "in use" rules.
"""

from __future__ import annotations

from collections.abc import Collection

from dgxnode.errors import InstanceNotFoundError, InUseError, MigModeError
from dgxnode.state import CiState, GiState, GpuState
from gpumodel.errors import InvalidPlacementError, NoFreePlacementError, ProfileLimitError
from gpumodel.mig import ProfileTable
from gpumodel.placement import check_create, ci_starts


def _require_mig(gpu: GpuState, profile: str, action: str) -> None:
    if not gpu.mig_enabled:
        pending = " (enabled after the next GPU reset)" if gpu.mig_pending else ""
        raise MigModeError(gpu.index, profile, f"MIG mode is disabled{pending}; cannot "
                           f"{action} {profile}")


def find_gi(gpu: GpuState, gi_id: int) -> GiState:
    gi = gpu.gi(gi_id)
    if gi is None:
        raise InstanceNotFoundError(f"GPU {gpu.index}: no GPU instance {gi_id}")
    return gi


def create_gi(gpu: GpuState, table: ProfileTable, profile: str,
              start: int | None = None) -> tuple[GpuState, GiState]:
    """A new GI of ``profile`` at ``start`` or where the driver puts it."""
    name = table.get(profile).name
    _require_mig(gpu, name, "create")
    placed = check_create(gpu.index, table, gpu.gis, name, start)
    gi = GiState(gi_id=placed.gi_id, profile=name, start=placed.start, size=placed.size)
    gis = tuple(sorted((*gpu.gis, gi), key=lambda g: g.gi_id))
    return gpu.model_copy(update={"gis": gis}), gi


def destroy_gi(gpu: GpuState, gi_id: int, busy: Collection[int] = ()) -> GpuState:
    """Remove a GI that has no compute instances and that no container holds."""
    gi = find_gi(gpu, gi_id)
    if gi.gi_id in busy:
        raise InUseError(gpu.index, gi.profile, f"cannot destroy {gi.profile} (GI {gi_id}): "
                         f"in use by a container")
    if gi.cis:
        raise InUseError(gpu.index, gi.profile, f"cannot destroy {gi.profile} (GI {gi_id}): "
                         f"it still has {len(gi.cis)} compute instance(s)")
    return gpu.model_copy(update={"gis": tuple(g for g in gpu.gis if g.gi_id != gi_id)})


def create_ci(gpu: GpuState, table: ProfileTable, gi_id: int, slices: int | None = None,
              start: int | None = None) -> tuple[GpuState, CiState]:
    """A compute instance of ``slices`` (default: the whole GI) inside GI ``gi_id``."""
    gi = find_gi(gpu, gi_id)
    spec = table.get(gi.profile)
    size = spec.compute_slices if slices is None else slices
    label = spec.name if size == spec.compute_slices else f"{size}c.{spec.name}"
    _require_mig(gpu, label, "create")
    if size not in spec.compute_instance_slices:
        allowed = ", ".join(f"{c}c" for c in spec.compute_instance_slices)
        raise InvalidPlacementError(gpu.index, label, f"{label}: a {spec.name} GPU instance "
                                    f"holds compute instances of {allowed}")
    same = sum(1 for c in gi.cis if c.slices == size)
    starts = ci_starts(spec.compute_slices, size)
    if same >= len(starts):
        raise ProfileLimitError(gpu.index, label, f"{label}: GI {gi_id} already holds "
                                f"{same}, the most it can")
    free = [s for s in starts if start in (None, s)
            and all(s + size <= c.start or c.start + c.slices <= s for c in gi.cis)]
    if not free:
        raise NoFreePlacementError(gpu.index, label, f"no free compute slices for {label} in "
                                   f"GI {gi_id} (Insufficient Resources)")
    used_ids = {c.ci_id for c in gi.cis}
    ci = CiState(ci_id=min(i for i in range(len(used_ids) + 1) if i not in used_ids),
                 start=free[0], slices=size)
    new_gi = gi.model_copy(update={"cis": tuple(sorted((*gi.cis, ci), key=lambda c: c.ci_id))})
    return _replace_gi(gpu, new_gi), ci


def destroy_ci(gpu: GpuState, gi_id: int, ci_id: int, busy: bool = False) -> GpuState:
    """Remove one compute instance; ``busy`` says a container holds its MIG device."""
    gi = find_gi(gpu, gi_id)
    ci = gi.ci(ci_id)
    if ci is None:
        raise InstanceNotFoundError(f"GPU {gpu.index}: no compute instance {ci_id} in GPU "
                                    f"instance {gi_id}")
    if busy:
        raise InUseError(gpu.index, gi.profile, f"cannot destroy compute instance {ci_id} of "
                         f"{gi.profile} (GI {gi_id}): in use by a container")
    return _replace_gi(gpu, gi.model_copy(update={
        "cis": tuple(c for c in gi.cis if c.ci_id != ci_id)}))


def _replace_gi(gpu: GpuState, gi: GiState) -> GpuState:
    return gpu.model_copy(update={"gis": tuple(gi if g.gi_id == gi.gi_id else g
                                               for g in gpu.gis)})


def set_mig_mode(gpu: GpuState, enabled: bool) -> GpuState:
    """Ask for a MIG mode; it takes effect at the next GPU reset, as on an A100."""
    return gpu.model_copy(update={"mig_pending": enabled})


def reset(gpu: GpuState) -> GpuState:
    """A GPU reset: the pending MIG mode takes effect and every instance is gone."""
    return gpu.model_copy(update={"mig_enabled": gpu.mig_pending, "gis": ()})
