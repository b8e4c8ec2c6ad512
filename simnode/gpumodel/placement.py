"""MIG placement rules: where a GPU instance may sit and where the driver puts it.

A GPU instance (GI) occupies memory slices ``[start, start + size)``; GIs may
not overlap, each profile may only start at its listed slices (``-lgipp``) and
no GPU holds more of a profile than its maximum. These rules alone keep compute
within the GPU's 7 slices; :func:`check_create` still checks compute as an
invariant.

Driver-chosen placement. When no placement is given the driver picks one, so
the order of creation matters (NVIDIA's MIG guide: ``-cgi 19,19,14,9`` fails
where ``9,19,14,19`` succeeds). The rule implemented here reproduces every
placement and GI ID in the guide's A100 examples: *the driver tries a profile's
starts in order of how few placements of the other, at-least-as-large profiles
each start would block, ties going to the lower start*. For 1g.5gb that is
6, 4, 5, 0, 1, 2, 3; for 2g.10gb 4, 0, 2; for 3g.20gb 4, 0. Small instances
therefore fill the upper half first, away from the 4g/7g placements at slice 0.

GI IDs are the driver's per-placement IDs: the node of the placement in the
binary tree of memory slices (7g: 0; halves: 1-2; quarters: 3-6; eighths: 7-14),
so ``1g.5gb`` at slice 6 is GI 13 and ``3g.20gb`` at slice 4 is GI 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.errors import (
    InvalidPlacementError,
    NoFreePlacementError,
    ProfileLimitError,
    SliceConflictError,
)
from gpumodel.mig import GpuInstanceProfile, ProfileTable


class Placed(Protocol):
    """Anything that occupies memory slices: an existing GI in any layer's state."""

    @property
    def gi_id(self) -> int: ...
    @property
    def profile(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def size(self) -> int: ...


class PlacedInstance(BaseModel):
    """A GI as the placement rules see it: profile name and memory-slice range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gi_id: int = Field(ge=0)
    profile: str
    start: int = Field(ge=0)
    size: int = Field(ge=1)


def slice_span(start: int, size: int) -> str:
    """``4-7`` for four slices from 4, ``6`` for one."""
    return str(start) if size == 1 else f"{start}-{start + size - 1}"


def overlaps(a_start: int, a_size: int, b_start: int, b_size: int) -> bool:
    return a_start < b_start + b_size and b_start < a_start + a_size


def gi_id_for(start: int, size: int, memory_slices: int) -> int:
    """The driver's GI ID for a placement (its node in the binary tree of slices)."""
    level_width = 1
    while memory_slices // level_width > size:
        level_width *= 2
    return level_width - 1 + start // size


def placements_text(spec: GpuInstanceProfile) -> str:
    """``{0,4}:4`` as ``nvidia-smi mig -lgipp`` prints it."""
    return "{" + ",".join(str(s) for s in spec.starts) + "}:" + str(spec.memory_slices)


@cache
def driver_preference(table: ProfileTable, name: str) -> tuple[int, ...]:
    """The starts of profile ``name`` in the order the driver tries them (module doc)."""
    spec = table.get(name)

    def blocked(start: int) -> int:
        return sum(1 for other in table.profiles
                   if other.name != spec.name and other.memory_slices >= spec.memory_slices
                   for s in other.starts
                   if overlaps(start, spec.memory_slices, s, other.memory_slices))

    return tuple(sorted(spec.starts, key=lambda s: (blocked(s), s)))


def holders(existing: Iterable[Placed], start: int, size: int) -> list[Placed]:
    """The existing GIs that overlap ``[start, start + size)``, lowest slice first."""
    return sorted((g for g in existing if overlaps(start, size, g.start, g.size)),
                  key=lambda g: g.start)


def _held_text(start: int, size: int, held: Sequence[Placed]) -> str:
    parts = []
    for g in held:
        lo, hi = max(start, g.start), min(start + size, g.start + g.size)
        verb = "is" if hi - lo == 1 else "are"
        noun = "slice" if hi - lo == 1 else "slices"
        parts.append(f"{noun} {slice_span(lo, hi - lo)} {verb} held by {g.profile} (GI {g.gi_id})")
    return "; ".join(parts)


def check_create(gpu: int, table: ProfileTable, existing: Sequence[Placed], name: str,
                 start: int | None = None) -> PlacedInstance:
    """Where a new GI of profile ``name`` goes, or the typed reason it cannot.

    ``start=None`` lets the driver choose (see the module doc); an explicit
    start must be one of the profile's placements and free.
    """
    spec = table.get(name)
    same = [g for g in existing if g.profile == spec.name]
    if len(same) >= spec.max_per_gpu:
        ids = ", ".join(f"GI {g.gi_id}" for g in same)
        verb = "exists" if len(same) == 1 else "exist"
        raise ProfileLimitError(gpu, spec.name, f"{spec.name}: at most {spec.max_per_gpu} per "
                                f"GPU and {len(same)} already {verb} ({ids})")
    if start is not None:
        return _compute_fits(gpu, table, existing, _explicit(gpu, table, existing, spec, start))
    for candidate in driver_preference(table, spec.name):
        if not holders(existing, candidate, spec.memory_slices):
            return _compute_fits(gpu, table, existing, _placed(table, spec, candidate))
    tried = "; ".join(
        f"{candidate}:{spec.memory_slices} overlaps "
        + ", ".join(f"{g.profile} (GI {g.gi_id})"
                    for g in holders(existing, candidate, spec.memory_slices))
        for candidate in spec.starts)
    raise NoFreePlacementError(gpu, spec.name, f"no free placement for {spec.name} "
                               f"(Insufficient Resources): {tried}")


def _compute_fits(gpu: int, table: ProfileTable, existing: Sequence[Placed],
                  placed: PlacedInstance) -> PlacedInstance:
    """Invariant: disjoint memory slices keep compute within the GPU; say so if not."""
    need = table.get(placed.profile).compute_slices
    used = sum(table.get(g.profile).compute_slices for g in existing)
    if used + need > table.compute_slices:
        raise NoFreePlacementError(gpu, placed.profile, f"{placed.profile} needs {need} compute "
                                   f"slices; {table.compute_slices - used} are free")
    return placed


def _explicit(gpu: int, table: ProfileTable, existing: Sequence[Placed],
              spec: GpuInstanceProfile, start: int) -> PlacedInstance:
    if start not in spec.starts:
        raise InvalidPlacementError(gpu, spec.name, f"{spec.name} cannot start at memory "
                                    f"slice {start}; its placements are {placements_text(spec)}")
    held = holders(existing, start, spec.memory_slices)
    if held:
        need = slice_span(start, spec.memory_slices)
        noun = "slice" if spec.memory_slices == 1 else "slices"
        raise SliceConflictError(gpu, spec.name, f"{spec.name} needs memory {noun} {need}; "
                                 + _held_text(start, spec.memory_slices, held))
    return _placed(table, spec, start)


def _placed(table: ProfileTable, spec: GpuInstanceProfile, start: int) -> PlacedInstance:
    return PlacedInstance(gi_id=gi_id_for(start, spec.memory_slices, table.memory_slices),
                          profile=spec.name, start=start, size=spec.memory_slices)


def free_starts(table: ProfileTable, existing: Sequence[Placed], name: str) -> tuple[int, ...]:
    """The starts of ``name`` that no existing GI overlaps, in the driver's order."""
    spec = table.get(name)
    return tuple(s for s in driver_preference(table, name)
                 if not holders(existing, s, spec.memory_slices))


def remaining_capacity(table: ProfileTable, existing: Sequence[Placed], name: str) -> int:
    """How many more GIs of ``name`` fit (the ``Free`` of ``-lgip``).

    Placements of one profile never overlap each other, so every free start
    can be used at once; the per-GPU maximum and compute slices cap it.
    """
    spec = table.get(name)
    left_by_max = spec.max_per_gpu - sum(1 for g in existing if g.profile == spec.name)
    used_compute = sum(table.get(g.profile).compute_slices for g in existing)
    left_by_compute = (table.compute_slices - used_compute) // spec.compute_slices
    return max(0, min(left_by_max, left_by_compute, len(free_starts(table, existing, name))))


def ci_starts(gi_compute_slices: int, ci_slices: int) -> tuple[int, ...]:
    """Compute-slice starts of a compute instance inside a GI (aligned to its size)."""
    return tuple(range(0, gi_compute_slices - ci_slices + 1, ci_slices))
