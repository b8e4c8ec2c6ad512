"""One GPU's memory slices as the planners see them: fit, usability and fragmentation.

Why a separate module: the partitioner decides *which* GPUs change and the
start slot of each new GPU instance, the metrics report how fragmented each
node is, and ``dgxsim show`` draws the same picture; all three need the same
notion of "how usable are the free slices of this GPU". Usability is the
vector of how many more instances of each base profile still fit, largest
profile first, compared lexicographically: a layout that can still take a
4g.20gb beats one that can only take more 1g.5gb, whatever the counts. A
GPU's fragmentation compares the largest instance that still fits with the
largest its free memory and compute slices would hold without placement rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from gpumodel.mig import ProfileTable
from gpumodel.placement import driver_preference, overlaps, remaining_capacity


@dataclass(frozen=True, slots=True)
class Instance:
    """A GPU instance: profile name and memory-slice range; ``busy`` if anything holds it."""

    profile: str
    start: int
    size: int
    busy: bool = False
    gi_id: int = 0


def _profile_order(table: ProfileTable) -> tuple[str, ...]:
    names = table.base_profile_names()
    return tuple(sorted(names, key=lambda n: (-table.get(n).memory_slices,
                                              -table.get(n).compute_slices)))


def usability(table: ProfileTable, placed: Sequence[Instance]) -> tuple[int, ...]:
    """How many more of each base profile fit, largest profile first (module doc)."""
    return tuple(remaining_capacity(table, placed, name) for name in _profile_order(table))


def free_slices(table: ProfileTable, placed: Iterable[Instance]) -> int:
    return table.memory_slices - sum(i.size for i in placed)


def largest_fit_slices(table: ProfileTable, placed: Sequence[Instance]) -> int:
    """Memory slices of the largest base profile that still fits (0 if none)."""
    sizes = [table.get(n).memory_slices for n in _profile_order(table)
             if remaining_capacity(table, placed, n) > 0]
    return max(sizes, default=0)


def fragmentation(table: ProfileTable, placed: Sequence[Instance]) -> float:
    """How much of the free space placement rules make unusable (0..1).

    The largest base instance the free memory and compute slices could hold
    if slices were interchangeable, against the largest that placement
    actually allows: ``1 - actual / ideal`` (0 when nothing more would fit anyway).
    """
    free_memory = free_slices(table, placed)
    free_compute = table.compute_slices - sum(table.get(i.profile).compute_slices
                                              for i in placed)
    ideal = max((table.get(n).memory_slices for n in _profile_order(table)
                 if table.get(n).memory_slices <= free_memory
                 and table.get(n).compute_slices <= free_compute), default=0)
    if ideal == 0:
        return 0.0
    return 1.0 - largest_fit_slices(table, placed) / ideal


def can_add(table: ProfileTable, placed: Sequence[Instance], name: str) -> bool:
    return remaining_capacity(table, placed, name) > 0


def best_start(table: ProfileTable, placed: Sequence[Instance], name: str) -> int | None:
    """The free start of ``name`` that leaves the rest most usable (ties: driver's order)."""
    if not can_add(table, placed, name):
        return None
    spec = table.get(name)
    best: tuple[tuple[int, ...], int] | None = None
    for rank, start in enumerate(driver_preference(table, name)):
        if any(overlaps(start, spec.memory_slices, p.start, p.size) for p in placed):
            continue
        after = [*placed, Instance(name, start, spec.memory_slices)]
        key = (usability(table, after), -rank)
        if best is None or key > (best[0], -best[1]):
            best = (key[0], rank)
    if best is None:
        return None
    return driver_preference(table, name)[best[1]]


def place_all(table: ProfileTable, placed: Sequence[Instance], names: Sequence[str]
              ) -> tuple[Instance, ...] | None:
    """Add ``names`` (largest first) around ``placed``; None if they do not all fit.

    Each instance goes where it leaves the most usable space; when that greedy
    choice dead-ends, the search backtracks over the other free starts, with
    dead ends remembered, so the answer is exact and quick (a GPU has at most a
    few thousand placements).
    """
    order = tuple(sorted(names, key=lambda n: (-table.get(n).memory_slices,
                                               -table.get(n).compute_slices, n)))
    if not _may_fit(table, placed, order):
        return None
    dead: set[frozenset[tuple[str, int]]] = set()

    def place(current: tuple[Instance, ...], i: int) -> tuple[Instance, ...] | None:
        if i == len(order):
            return current
        key = frozenset((p.profile, p.start) for p in current)
        if key in dead:
            return None
        name = order[i]
        size = table.get(name).memory_slices
        for start in _starts_by_preference(table, current, name):
            found = place((*current, Instance(name, start, size)), i + 1)
            if found is not None:
                return found
        dead.add(key)
        return None

    return place(tuple(placed), 0)


def _may_fit(table: ProfileTable, placed: Sequence[Instance], order: Sequence[str]) -> bool:
    """Cheap necessary conditions: memory, compute and per-profile maxima."""
    every = [*(p.profile for p in placed), *order]
    specs = [table.get(n) for n in every]
    if sum(s.memory_slices for s in specs) > table.memory_slices:
        return False
    if sum(s.compute_slices for s in specs) > table.compute_slices:
        return False
    return all(n <= table.get(name).max_per_gpu for name, n in Counter(every).items())


@cache
def _starts_by_preference(table: ProfileTable, placed: tuple[Instance, ...], name: str
                          ) -> tuple[int, ...]:
    if not can_add(table, placed, name):
        return ()
    first = best_start(table, placed, name)
    if first is None:
        return ()
    spec = table.get(name)
    rest = [s for s in driver_preference(table, name) if s != first and not any(
        overlaps(s, spec.memory_slices, p.start, p.size) for p in placed)]
    return (first, *rest)


def counts(instances: Iterable[Instance]) -> dict[str, int]:
    return dict(sorted(Counter(i.profile for i in instances).items()))
