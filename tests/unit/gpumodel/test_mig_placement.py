"""MIG placement rules and the driver's slot choice (DESIGN §5, NVIDIA's MIG guide)."""

from __future__ import annotations

import pytest

from gpumodel.errors import (
    InvalidPlacementError,
    NoFreePlacementError,
    PlacementError,
    ProfileLimitError,
    SliceConflictError,
)
from gpumodel.mig import profile_table
from gpumodel.placement import (
    PlacedInstance,
    check_create,
    driver_preference,
    gi_id_for,
    remaining_capacity,
)

T = profile_table("a100-40gb")


def build(*items: str | tuple[str, int]) -> list[PlacedInstance]:
    """Create GIs in order: a name (driver's choice) or (name, start)."""
    placed: list[PlacedInstance] = []
    for item in items:
        name, start = (item, None) if isinstance(item, str) else item
        placed.append(check_create(0, T, placed, name, start))
    return placed


@pytest.mark.parametrize("layout", [
    [("4g.20gb", 0), ("3g.20gb", 4)],
    [("3g.20gb", 0), ("2g.10gb", 4), ("1g.5gb", 6)],
    ["1g.5gb"] * 7,
])
def test_valid_examples(layout: list[str | tuple[str, int]]) -> None:
    assert len(build(*layout)) == len(layout)


@pytest.mark.parametrize(("layout", "last"), [
    (["3g.20gb", "3g.20gb"], "1g.5gb"),
    (["4g.20gb"], "4g.20gb"),
    (["7g.40gb"], "1g.5gb"),
    (["1g.5gb"], "7g.40gb"),
])
def test_invalid_examples(layout: list[str], last: str) -> None:
    placed = build(*layout)
    with pytest.raises(PlacementError):
        check_create(0, T, placed, last)


def test_anything_with_7g_is_refused() -> None:
    seven = build("7g.40gb")
    for name in T.names():
        with pytest.raises(PlacementError):
            check_create(0, T, seven, name)


def ids_of(seq: list[int]) -> list[tuple[int, int]]:
    placed: list[PlacedInstance] = []
    for profile_id in seq:
        placed.append(check_create(0, T, placed, T.get(profile_id).name))
    return [(p.gi_id, p.start) for p in placed]


def test_order_dependence_19_19_14_9_fails() -> None:
    placed: list[PlacedInstance] = []
    for pid in (19, 19, 14):
        placed.append(check_create(0, T, placed, T.get(pid).name))
    assert [(p.gi_id, p.start) for p in placed] == [(13, 6), (11, 4), (3, 0)]
    with pytest.raises(NoFreePlacementError, match="Insufficient Resources"):
        check_create(0, T, placed, T.get(9).name)


def test_order_dependence_9_19_14_19_succeeds_as_in_nvidia_guide() -> None:
    assert ids_of([9, 19, 14, 19]) == [(2, 4), (7, 0), (4, 2), (8, 1)]


def test_guide_examples_gi_ids() -> None:
    assert ids_of([19] * 7) == [(13, 6), (11, 4), (12, 5), (7, 0), (8, 1), (9, 2), (10, 3)]
    assert ids_of([14, 19, 19, 19, 19, 19]) == [(5, 4), (13, 6), (7, 0), (8, 1), (9, 2), (10, 3)]
    assert ids_of([19, 14, 5]) == [(13, 6), (5, 4), (1, 0)]
    assert ids_of([9, 9]) == [(2, 4), (1, 0)]


def test_driver_preference_rule() -> None:
    assert driver_preference(T, "1g.5gb") == (6, 4, 5, 0, 1, 2, 3)
    assert driver_preference(T, "2g.10gb") == (4, 0, 2)
    assert driver_preference(T, "3g.20gb") == (4, 0)


def test_gi_ids_are_tree_nodes() -> None:
    assert [gi_id_for(0, 8, 8), gi_id_for(0, 4, 8), gi_id_for(4, 4, 8)] == [0, 1, 2]
    assert [gi_id_for(s, 2, 8) for s in (0, 2, 4, 6)] == [3, 4, 5, 6]
    assert [gi_id_for(s, 1, 8) for s in range(8)] == list(range(7, 15))


def test_conflict_message_names_gpu_profile_and_holder() -> None:
    placed = [check_create(3, T, [], "1g.5gb", 6)]
    with pytest.raises(SliceConflictError) as err:
        check_create(3, T, placed, "3g.20gb", 4)
    assert str(err.value) == "GPU 3: 3g.20gb needs memory slices 4-7; slice 6 is held by " \
                             "1g.5gb (GI 13)"
    assert (err.value.gpu, err.value.profile) == (3, "3g.20gb")


def test_invalid_start_and_limits() -> None:
    with pytest.raises(InvalidPlacementError, match=r"placements are \{0,4\}:4"):
        check_create(1, T, [], "3g.20gb", 2)
    with pytest.raises(InvalidPlacementError):
        check_create(1, T, [], "1g.5gb", 7)
    one = build("1g.5gb+me")
    with pytest.raises(ProfileLimitError, match=r"GPU 0: 1g.5gb\+me: at most 1 per GPU"):
        check_create(0, T, one, "1g.5gb+me")


def test_remaining_capacity() -> None:
    assert remaining_capacity(T, [], "1g.5gb") == 7
    assert remaining_capacity(T, [], "1g.5gb+me") == 1
    placed = build("3g.20gb")
    assert remaining_capacity(T, placed, "3g.20gb") == 1
    assert remaining_capacity(T, placed, "1g.5gb") == 4
    assert remaining_capacity(T, placed, "4g.20gb") == 1
    assert remaining_capacity(T, placed, "7g.40gb") == 0
