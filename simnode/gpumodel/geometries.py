"""Maximal MIG layouts of one GPU: the geometries a user can choose between.

A layout is a multiset of GPU-instance profiles that can be placed together
(no overlap, each at one of its starts, within the per-GPU maxima). It is
*maximal* when no instance of any considered profile can be added. NVIDIA's
A100 tables count these: with the base profiles (1g.5gb, 2g.10gb, 3g.20gb,
4g.20gb, 7g.40gb) there are 12; adding 1g.10gb gives 28. The enumeration is
exhaustive over placements (a few thousand states), so it is exact rather
than relying on the driver's placement order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from gpumodel.mig import ProfileTable
from gpumodel.placement import PlacedInstance, gi_id_for

Multiset = tuple[tuple[str, int], ...]


class Geometry(BaseModel):
    """One maximal layout: profile counts and one placement that realises it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: dict[str, int]
    placements: tuple[PlacedInstance, ...]

    @property
    def instances(self) -> int:
        return sum(self.profiles.values())

    def label(self) -> str:
        """``3g.20gb + 2g.10gb + 2x 1g.5gb``, largest first."""
        return " + ".join(name if n == 1 else f"{n}x {name}" for name, n in self.profiles.items())


def _feasible(table: ProfileTable, names: tuple[str, ...]) -> dict[Multiset, tuple[
        PlacedInstance, ...]]:
    """Every placeable multiset of ``names`` with one placement of it."""
    options = [(table.get(n), s) for n in names for s in table.get(n).starts]
    found: dict[Multiset, tuple[PlacedInstance, ...]] = {}

    def visit(i: int, used: int, compute: int, chosen: list[PlacedInstance]) -> None:
        if i == len(options):
            key = tuple(sorted(Counter(p.profile for p in chosen).items()))
            found.setdefault(key, tuple(chosen))
            return
        visit(i + 1, used, compute, chosen)
        spec, start = options[i]
        mask = ((1 << spec.memory_slices) - 1) << start
        count = sum(1 for p in chosen if p.profile == spec.name)
        if (used & mask or compute + spec.compute_slices > table.compute_slices
                or count >= spec.max_per_gpu):
            return
        gi = gi_id_for(start, spec.memory_slices, table.memory_slices)
        chosen.append(PlacedInstance(gi_id=gi, profile=spec.name, start=start,
                                     size=spec.memory_slices))
        visit(i + 1, used | mask, compute + spec.compute_slices, chosen)
        chosen.pop()

    visit(0, 0, 0, [])
    return found


def maximal_geometries(table: ProfileTable, names: Iterable[str] | None = None
                       ) -> list[Geometry]:
    """The maximal layouts over ``names`` (default: the table's base profiles).

    Sorted with the fewest, largest instances first, so ``7g.40gb`` leads and
    seven ``1g.5gb`` come last.
    """
    chosen = tuple(dict.fromkeys(table.get(n).name for n in (names or table.base_profile_names())))
    feasible = _feasible(table, chosen)

    def grown(key: Multiset, name: str) -> Multiset:
        counts = Counter(dict(key))
        counts[name] += 1
        return tuple(sorted(counts.items()))

    maximal = [k for k in feasible if k and not any(grown(k, n) in feasible for n in chosen)]
    size = {n: table.get(n).memory_slices * 10 + table.get(n).compute_slices for n in chosen}

    def order(key: Multiset) -> tuple[int, list[int]]:
        return (sum(c for _, c in key),
                sorted((-size[n] for n, c in key for _ in range(c))))

    result = []
    for key in sorted(maximal, key=order):
        counts = dict(sorted(key, key=lambda kv: -size[kv[0]]))
        placements = tuple(sorted(feasible[key], key=lambda p: p.start))
        result.append(Geometry(profiles=counts, placements=placements))
    return result
