"""Exactness of dynamic DRA publication: counters allow exactly what the MIG engine accepts.

For each MIG-capable GPU kind, every set of published devices of one GPU that fits
under its CounterSet (what kube-scheduler's allocator may pick together) is a
layout the node's MIG engine creates slot for slot, and every layout the engine
accepts fits under the counters. The maximal layouts over the base profiles
are the 12 (and with 1g.10gb the 28) geometries of ``dgxsim mig geometries``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from dgxnode import engine
from dgxnode.errors import SimnodeError
from dgxnode.state import GpuState
from gpumodel.dra import gpu_counters, slot_consumption, slots
from gpumodel.errors import GpuModelError
from gpumodel.geometries import maximal_geometries
from gpumodel.mig import ProfileTable, profile_table

Slot = tuple[str, int]
WHOLE: Slot = ("whole", -1)


def counter_layouts(table: ProfileTable) -> set[frozenset[Slot]]:
    """Every set of one GPU's devices the counters allow together (the whole GPU too)."""
    capacity = gpu_counters(table)
    devices: list[tuple[Slot, dict[str, int]]] = [(WHOLE, dict(capacity))]
    devices += [((p.name, s), slot_consumption(p, s)) for p, s in slots(table)]
    found: set[frozenset[Slot]] = set()

    def visit(i: int, left: dict[str, int], chosen: list[Slot]) -> None:
        if i == len(devices):
            found.add(frozenset(chosen))
            return
        visit(i + 1, left, chosen)
        slot, used = devices[i]
        if all(left[k] >= v for k, v in used.items()):
            chosen.append(slot)
            visit(i + 1, {k: left[k] - used.get(k, 0) for k in left}, chosen)
            chosen.pop()

    visit(0, capacity, [])
    return found


def engine_layouts(table: ProfileTable) -> set[frozenset[Slot]]:
    """Every set of explicit (profile, start) creations the MIG engine accepts on a GPU in
    MIG mode, plus the GPU used whole (MIG off, nothing else)."""
    options = [(p.name, s) for p, s in slots(table)]
    found: set[frozenset[Slot]] = {frozenset({WHOLE})}

    def visit(i: int, gpu: GpuState, chosen: list[Slot]) -> None:
        if i == len(options):
            found.add(frozenset(chosen))
            return
        visit(i + 1, gpu, chosen)
        name, start = options[i]
        try:
            grown, gi = engine.create_gi(gpu, table, name, start)
        except (SimnodeError, GpuModelError):
            return
        assert gi.start == start
        chosen.append((name, start))
        visit(i + 1, grown, chosen)
        chosen.pop()

    visit(0, GpuState(index=0, mig_enabled=True), [])
    return found


def maximal_counts(layouts: set[frozenset[Slot]], names: tuple[str, ...]
                   ) -> set[tuple[tuple[str, int], ...]]:
    """The profile counts of the layouts over ``names`` to which no instance of any of
    them can be added in any placement (how the geometries are counted)."""
    counts = {tuple(sorted(Counter(n for n, _ in layout).items())) for layout in layouts
              if layout and WHOLE not in layout and all(n in names for n, _ in layout)}

    def grown(key: tuple[tuple[str, int], ...], name: str) -> tuple[tuple[str, int], ...]:
        more = Counter(dict(key))
        more[name] += 1
        return tuple(sorted(more.items()))

    return {k for k in counts if not any(grown(k, n) in counts for n in names)}


@pytest.mark.parametrize("gpu", ["a100-40gb", "a100-80gb"])
def test_counters_allow_exactly_the_layouts_the_mig_engine_accepts(gpu: str) -> None:
    table = profile_table(gpu)
    by_counters = counter_layouts(table)
    by_engine = engine_layouts(table)
    assert by_counters - by_engine == set(), "the scheduler could pick a layout the GPU refuses"
    assert by_engine - by_counters == set(), "the scheduler would refuse a layout the GPU takes"
    assert len(by_counters) > 1000


@pytest.mark.parametrize(("gpu", "extra", "count"), [
    ("a100-40gb", (), 12), ("a100-40gb", ("1g.10gb",), 28),
    ("a100-80gb", (), 12), ("a100-80gb", ("1g.20gb",), 28)])
def test_maximal_counter_layouts_are_the_mig_geometries(gpu: str, extra: tuple[str, ...],
                                                         count: int) -> None:
    table = profile_table(gpu)
    names = table.base_profile_names() + extra
    geometries = {tuple(sorted(g.profiles.items()))
                  for g in maximal_geometries(table, names)}
    assert len(geometries) == count
    assert maximal_counts(counter_layouts(table), names) == geometries


def test_a_slot_consumes_exactly_its_memory_slices() -> None:
    table = profile_table("a100-40gb")
    used = slot_consumption(table.get("3g.20gb"), 4)
    assert {k for k in used if k.startswith("memory-slice-")} == {
        "memory-slice-4", "memory-slice-5", "memory-slice-6", "memory-slice-7"}
    assert used["multiprocessors"] == 42
    assert gpu_counters(table)["multiprocessors"] == 98
