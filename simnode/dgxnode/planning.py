"""Per-GPU plans: how to get from a GPU's layout to the one a config asks for.

NVIDIA's mig-parted wipes and rebuilds any GPU whose counts differ. dgxsim
plans a diff instead, per GPU:

* a GPU that already matches its target is untouched;
* a GPU that must change keeps every instance the new layout can use (in-use
  ones first), destroys only what must go and places new instances around the
  kept ones at explicit placements (searching placements the way mig-parted
  searches creation orders);
* if the kept instances make the layout impossible, only the allocated ones are
  kept and the rest is rebuilt;
* an allocated instance is never destroyed: the GPU's plan is *blocked* and
  names each allocation in the way;
* MIG mode changes need an idle GPU and a GPU reset, and lose every instance.

Plans are values; :mod:`dgxnode.applying` carries them out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict

from dgxnode.devices import device_profile, gi_device_uuid
from dgxnode.state import GiState, GpuState
from gpumodel.errors import MigConfigError, UnknownProfileError
from gpumodel.mig import MigProfile, ProfileTable
from gpumodel.migparted import GpuTarget
from gpumodel.placement import driver_preference, overlaps


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GiRef(_Frozen):
    gi_id: int
    profile: str
    start: int
    size: int

    def __str__(self) -> str:
        return f"{self.profile} (GI {self.gi_id} at {self.start}:{self.size})"


class NewInstance(_Frozen):
    """A GI to create at an explicit start, with one CI of ``ci_slices``."""

    profile: str
    gi_profile: str
    start: int
    ci_slices: int


class BlockingAllocation(_Frozen):
    gpu: int
    device_id: str
    profile: str
    gi_id: int | None
    owner: str

    def __str__(self) -> str:
        where = f"GI {self.gi_id}, " if self.gi_id is not None else ""
        return f"{self.profile} ({where}{self.device_id}) is allocated to {self.owner}"


class GpuPlan(_Frozen):
    gpu: int
    action: Literal["untouched", "reconfigure", "blocked"]
    mode: Literal["enable", "disable"] | None = None
    keep: tuple[GiRef, ...] = ()
    destroy: tuple[GiRef, ...] = ()
    create: tuple[NewInstance, ...] = ()
    add_default_ci: tuple[int, ...] = ()
    blockers: tuple[BlockingAllocation, ...] = ()
    reason: str = ""

    def lines(self) -> list[str]:
        head = f"GPU {self.gpu}: "
        if self.action == "untouched":
            return [head + "untouched (" + (self.reason or "already matches") + ")"]
        if self.action == "blocked":
            return [head + "blocked: " + self.reason]
        out = [head + "reconfigure"]
        if self.mode:
            out.append(f"  {self.mode} MIG mode, then reset the GPU")
        out += [f"  keep    {g}" for g in self.keep]
        out += [f"  destroy {g}" for g in self.destroy]
        out += [f"  create  {n.profile} at {n.start}" for n in self.create]
        out += [f"  add default compute instance to GI {g}" for g in self.add_default_ci]
        return out


class NodePlan(_Frozen):
    config: str
    gpus: tuple[GpuPlan, ...]

    @property
    def blocked(self) -> tuple[GpuPlan, ...]:
        return tuple(p for p in self.gpus if p.action == "blocked")

    @property
    def changes(self) -> bool:
        return any(p.action == "reconfigure" for p in self.gpus)

    def describe(self) -> str:
        lines = [f"MIG config {self.config!r}:"]
        for plan in self.gpus:
            lines += ["  " + line for line in plan.lines()]
        return "\n".join(lines)


def _ref(table: ProfileTable, gi: GiState) -> GiRef:
    return GiRef(gi_id=gi.gi_id, profile=_gi_device_profile(table, gi), start=gi.start,
                 size=gi.size)


def _gi_device_profile(table: ProfileTable, gi: GiState) -> str:
    """What a GI counts as in ``mig-devices``: its single CI's profile, or the GI's."""
    spec = table.get(gi.profile)
    if len(gi.cis) == 1:
        return device_profile(spec, gi.cis[0].slices)
    return gi.profile if not gi.cis else f"{gi.profile} (split)"


def _normalise(gpu: int, table: ProfileTable, config: str, devices: Mapping[str, int]
               ) -> Counter[str]:
    wanted: Counter[str] = Counter()
    for key, count in devices.items():
        profile = MigProfile.parse(key)
        try:
            spec = table.get(str(profile.gpu_instance))
        except UnknownProfileError as err:
            raise MigConfigError(f"GPU {gpu}: config {config!r} asks for {key}, which is not a "
                                 f"MIG profile of this GPU ({', '.join(table.names())})") from err
        wanted[device_profile(spec, profile.compute_slices)] += count
    return wanted


def _gi_of(table: ProfileTable, device: str) -> tuple[str, int]:
    profile = MigProfile.parse(device)
    spec = table.get(str(profile.gpu_instance))
    return spec.name, profile.compute_slices


def pack(table: ProfileTable, kept: list[GiRef], wanted: list[str]) -> list[NewInstance] | None:
    """Explicit placements for ``wanted`` devices around ``kept`` GIs, or None.

    Largest first, each profile's starts in the driver's order, backtracking
    on failure: the search mig-parted does over creation orders, done directly.
    """
    order = sorted(wanted, key=lambda d: (-table.get(_gi_of(table, d)[0]).memory_slices, d))
    taken: list[tuple[str, int, int]] = [(k.profile, k.start, k.size) for k in kept]
    kept_names = [MigProfile.parse(k.profile).gpu_instance for k in kept]
    counts = Counter(str(p) for p in kept_names)
    result: list[NewInstance] = []

    def place(i: int) -> bool:
        if i == len(order):
            return True
        gi_name, ci_slices = _gi_of(table, order[i])
        spec = table.get(gi_name)
        if counts[gi_name] >= spec.max_per_gpu:
            return False
        for start in driver_preference(table, gi_name):
            if any(overlaps(start, spec.memory_slices, s, z) for _, s, z in taken):
                continue
            taken.append((gi_name, start, spec.memory_slices))
            counts[gi_name] += 1
            result.append(NewInstance(profile=order[i], gi_profile=gi_name, start=start,
                                      ci_slices=ci_slices))
            if place(i + 1):
                return True
            taken.pop()
            counts[gi_name] -= 1
            result.pop()
        return False

    return result if place(0) else None


def allocated_gis(node: str, table: ProfileTable | None, gpu: GpuState,
                  allocations: Mapping[str, str]) -> dict[int, list[BlockingAllocation]]:
    """GI ID -> the allocations of its MIG devices (empty GIs are absent)."""
    found: dict[int, list[BlockingAllocation]] = {}
    if table is None:
        return found
    for gi in gpu.gis:
        spec = table.get(gi.profile)
        for ci in gi.cis:
            uuid = gi_device_uuid(node, gpu.index, gi, ci, spec)
            if uuid in allocations:
                found.setdefault(gi.gi_id, []).append(BlockingAllocation(
                    gpu=gpu.index, device_id=uuid, profile=device_profile(spec, ci.slices),
                    gi_id=gi.gi_id, owner=allocations[uuid]))
    return found


def plan_gpu(node: str, table: ProfileTable | None, gpu: GpuState, target: GpuTarget | None,
             allocations: Mapping[str, str], gpu_uuid: str, config: str) -> GpuPlan:
    """The plan for one GPU to reach ``target`` (None: the config leaves it alone)."""
    if target is None:
        return GpuPlan(gpu=gpu.index, action="untouched", reason="not selected by the config")
    busy = allocated_gis(node, table, gpu, allocations)
    whole = allocations.get(gpu_uuid)
    all_refs = tuple(_ref(table, g) for g in gpu.gis) if table else ()
    if not target.mig_enabled:
        return _plan_disable(gpu, busy, whole, gpu_uuid, all_refs)
    if table is None:
        raise MigConfigError(f"GPU {gpu.index}: config {config!r} enables MIG on a GPU "
                             f"without MIG support")
    wanted = _normalise(gpu.index, table, config, target.devices)
    if not gpu.mig_enabled:
        if whole is not None:
            return _blocked(gpu.index, [BlockingAllocation(
                gpu=gpu.index, device_id=gpu_uuid, profile="GPU", gi_id=None, owner=whole)],
                "enabling MIG needs an idle GPU")
        create = pack(table, [], list(wanted.elements()))
        if create is None:
            raise _does_not_fit(gpu.index, config, wanted)
        return GpuPlan(gpu=gpu.index, action="reconfigure", mode="enable", create=tuple(create))
    return _plan_diff(table, gpu, wanted, busy, config)


def _plan_disable(gpu: GpuState, busy: dict[int, list[BlockingAllocation]], whole: str | None,
                  gpu_uuid: str, refs: tuple[GiRef, ...]) -> GpuPlan:
    if not gpu.mig_enabled and not gpu.mig_pending:
        return GpuPlan(gpu=gpu.index, action="untouched", reason="MIG already disabled")
    blockers = [b for items in busy.values() for b in items]
    if whole is not None:
        blockers.append(BlockingAllocation(gpu=gpu.index, device_id=gpu_uuid, profile="GPU",
                                           gi_id=None, owner=whole))
    if blockers:
        return _blocked(gpu.index, blockers, "disabling MIG needs an idle GPU")
    mode = "disable" if gpu.mig_enabled else None
    return GpuPlan(gpu=gpu.index, action="reconfigure", mode=mode, destroy=refs)


def _plan_diff(table: ProfileTable, gpu: GpuState, wanted: Counter[str],
               busy: dict[int, list[BlockingAllocation]], config: str) -> GpuPlan:
    profile = {gi.gi_id: _gi_device_profile(table, gi) for gi in gpu.gis}
    forced = [g for g in gpu.gis if g.gi_id in busy]
    blockers = [b for g in forced if wanted[profile[g.gi_id]] == 0 for b in busy[g.gi_id]]
    if not blockers and any(n > wanted[p] for p, n in
                            Counter(profile[g.gi_id] for g in forced).items()):
        blockers = [b for g in forced for b in busy[g.gi_id]]
    if blockers:
        return _blocked(gpu.index, blockers, f"{config} has no room for it")
    optional = sorted((g for g in gpu.gis if g.gi_id not in busy and wanted[profile[g.gi_id]]),
                      key=lambda g: g.gi_id)
    found = _best_keep(table, forced, optional, wanted, profile)
    if found is None:
        if forced:
            return _blocked(gpu.index, [b for g in forced for b in busy[g.gi_id]],
                            f"{config} cannot be laid out around it")
        raise _does_not_fit(gpu.index, config, wanted)
    keep, create = found
    kept_ids = {g.gi_id for g in keep}
    destroy = [g for g in gpu.gis if g.gi_id not in kept_ids]
    empty = tuple(g.gi_id for g in keep if not g.cis)
    refs = tuple(_ref(table, g) for g in sorted(keep, key=lambda g: g.gi_id))
    if not destroy and not create and not empty and gpu.mig_pending:
        return GpuPlan(gpu=gpu.index, action="untouched", reason="already matches", keep=refs)
    return GpuPlan(gpu=gpu.index, action="reconfigure", keep=refs,
                   destroy=tuple(_ref(table, g) for g in destroy),
                   create=tuple(create), add_default_ci=empty)


def _best_keep(table: ProfileTable, forced: list[GiState], optional: list[GiState],
               wanted: Counter[str], profile: dict[int, str]
               ) -> tuple[list[GiState], list[NewInstance]] | None:
    """The largest set of existing GIs to keep (allocated ones always) that still fits.

    At most 7 GIs per GPU, so trying subsets from the largest down is cheap.
    """
    for size in range(len(optional), -1, -1):
        for extra in combinations(optional, size):
            keep = [*forced, *extra]
            counts = Counter(profile[g.gi_id] for g in keep)
            if any(n > wanted[p] for p, n in counts.items()):
                continue
            create = pack(table, [_ref(table, g) for g in keep],
                          list((wanted - counts).elements()))
            if create is not None:
                return keep, create
    return None


def _blocked(gpu: int, blockers: list[BlockingAllocation], why: str) -> GpuPlan:
    reason = "; ".join(str(b) for b in blockers) + f" ({why})"
    return GpuPlan(gpu=gpu, action="blocked", blockers=tuple(blockers), reason=reason)


def _does_not_fit(gpu: int, config: str, wanted: Counter[str]) -> MigConfigError:
    layout = " + ".join(f"{n}x {p}" for p, n in sorted(wanted.items()))
    return MigConfigError(f"GPU {gpu}: config {config!r} asks for {layout}, which does not fit "
                          f"on one GPU")
