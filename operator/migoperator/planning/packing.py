"""Fewest-GPU packing of MIG instances onto empty GPUs: an exact search with a budget.

Why not first-fit decreasing: MIG placement rules make greedy packing miss.
For 7g.40gb + 2x 3g.20gb + 4x 2g.10gb greedy puts both 3g.20gb on one GPU
(they fit exactly in memory) and then needs two GPUs for the 2g.10gb, four in
all; the best is three (7g; 3g + 2g + 2g; 3g + 2g + 2g). The search here
tries, for the largest instance left, every way to fill one GPU around it
with what is left (only fillings that nothing else left could join), tries
the fewest GPUs first (from a lower bound on memory, compute and per-GPU
maxima) and remembers dead ends. A budget of expansions caps its cost; past
it, the greedy packing is the answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

from gpumodel.mig import ProfileTable
from migoperator.planning.slices import place_all

Multiset = tuple[tuple[str, int], ...]
DEFAULT_BUDGET = 20_000


def _key(counts: Counter[str]) -> Multiset:
    return tuple(sorted((k, v) for k, v in counts.items() if v))


@cache
def fits_one_gpu(table: ProfileTable, key: Multiset) -> bool:
    return place_all(table, [], [n for n, c in key for _ in range(c)]) is not None


def lower_bound(table: ProfileTable, counts: Counter[str]) -> int:
    if not sum(counts.values()):
        return 0
    memory = sum(table.get(n).memory_slices * c for n, c in counts.items())
    compute = sum(table.get(n).compute_slices * c for n, c in counts.items())
    per_max = max(-(-c // table.get(n).max_per_gpu) for n, c in counts.items())
    return max(-(-memory // table.memory_slices), -(-compute // table.compute_slices), per_max)


def _fillings(table: ProfileTable, left: Counter[str], first: str) -> list[Counter[str]]:
    """Maximal sub-multisets of ``left`` holding ``first`` that fit one GPU."""
    names = sorted(left, key=lambda n: (-table.get(n).memory_slices, n))
    found: list[Counter[str]] = []

    def grow(i: int, current: Counter[str]) -> None:
        if i == len(names):
            if all(current[n] == left[n] or not fits_one_gpu(
                    table, _key(current + Counter({n: 1}))) for n in names):
                found.append(Counter(current))
            return
        name = names[i]
        low = 1 if name == first else 0
        for k in range(min(left[name], table.get(name).max_per_gpu), low - 1, -1):
            trial = current + Counter({name: k}) if k else Counter(current)
            if k and not fits_one_gpu(table, _key(trial)):
                continue
            grow(i + 1, trial)

    grow(0, Counter())
    return found


def _greedy(table: ProfileTable, counts: Counter[str]) -> list[Counter[str]]:
    bins: list[Counter[str]] = []
    order = sorted(counts.elements(), key=lambda n: (-table.get(n).memory_slices,
                                                     -table.get(n).compute_slices, n))
    for name in order:
        for b in bins:
            if fits_one_gpu(table, _key(b + Counter({name: 1}))):
                b[name] += 1
                break
        else:
            bins.append(Counter({name: 1}))
    return bins


def pack_fewest(table: ProfileTable, names: Sequence[str], budget: int = DEFAULT_BUDGET
                ) -> list[Counter[str]]:
    """GPU fillings (one Counter per GPU) holding ``names`` on as few GPUs as the search finds."""
    counts = Counter(names)
    greedy = _greedy(table, counts)
    expansions = 0
    dead: set[tuple[Multiset, int]] = set()

    def solve(left: Counter[str], gpus: int) -> list[Counter[str]] | None:
        nonlocal expansions
        if not sum(left.values()):
            return []
        key = (_key(left), gpus)
        if gpus < lower_bound(table, left) or key in dead or expansions > budget:
            return None
        expansions += 1
        first = max(left.elements(), key=lambda n: (table.get(n).memory_slices,
                                                     table.get(n).compute_slices, n))
        for filling in _fillings(table, left, first):
            rest = solve(left - filling, gpus - 1)
            if rest is not None:
                return [filling, *rest]
        dead.add(key)
        return None

    for gpus in range(lower_bound(table, counts), len(greedy)):
        found = solve(Counter(counts), gpus)
        if found is not None:
            return found
        if expansions > budget:
            break
    return greedy
