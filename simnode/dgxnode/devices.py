"""MIG devices: what a (GPU instance, compute instance) pair looks like to users.

A container is given a MIG *device*: one compute instance inside a GPU
instance, named by a ``MIG-<uuid>`` and a profile (``3g.20gb`` when the CI
spans its GI, ``1c.3g.20gb`` when it does not). The device list here feeds the
inventory, ``nvidia-smi -L`` and the allocation checks, so all three agree.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from dgxnode.state import CiState, GiState, GpuState
from gpumodel.ids import MigUUID, mig_uuid
from gpumodel.mig import GpuInstanceProfile, ProfileTable


class MigDevice(BaseModel):
    """One MIG device of one GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: int
    uuid: MigUUID
    profile: str
    gi: GiState
    ci: CiState
    gi_spec: GpuInstanceProfile

    @property
    def sms(self) -> int:
        return self.gi_spec.sms * self.ci.slices // self.gi_spec.compute_slices


def device_profile(spec: GpuInstanceProfile, ci_slices: int) -> str:
    """``3g.20gb`` for a full-size CI, ``1c.3g.20gb`` for a smaller one."""
    if ci_slices == spec.compute_slices:
        return spec.name
    return f"{ci_slices}c.{spec.name}"


def gi_device_uuid(node: str, gpu: int, gi: GiState, ci: CiState,
                   spec: GpuInstanceProfile) -> MigUUID:
    if ci.slices == spec.compute_slices and ci.start == 0:
        return mig_uuid(node, gpu, gi.start, gi.size)
    return mig_uuid(node, gpu, gi.start, gi.size, ci.start, ci.slices)


def mig_devices(node: str, table: ProfileTable, gpu: GpuState) -> list[MigDevice]:
    """The GPU's MIG devices in NVML's order (by GI ID, then CI ID)."""
    result = []
    for gi in sorted(gpu.gis, key=lambda g: g.gi_id):
        spec = table.get(gi.profile)
        for ci in sorted(gi.cis, key=lambda c: c.ci_id):
            result.append(MigDevice(gpu=gpu.index, uuid=gi_device_uuid(node, gpu.index, gi, ci,
                                                                        spec),
                                    profile=device_profile(spec, ci.slices), gi=gi, ci=ci,
                                    gi_spec=spec))
    return result
