"""Maximal MIG layouts: 12 with the base profiles, 28 with 1g.10gb (DESIGN §5)."""

from __future__ import annotations

from gpumodel.geometries import maximal_geometries
from gpumodel.mig import profile_table
from gpumodel.placement import PlacedInstance, check_create, remaining_capacity

T = profile_table("a100-40gb")


def test_base_profiles_give_12() -> None:
    layouts = maximal_geometries(T)
    assert len(layouts) == 12
    labels = {g.label() for g in layouts}
    assert {"7g.40gb", "4g.20gb + 3g.20gb", "2x 3g.20gb", "7x 1g.5gb",
            "3g.20gb + 2g.10gb + 2x 1g.5gb"} <= labels


def test_with_1g10gb_gives_28() -> None:
    assert len(maximal_geometries(T, [*T.base_profile_names(), "1g.10gb"])) == 28


def test_80gb_has_the_same_count() -> None:
    assert len(maximal_geometries(profile_table("a100-80gb"))) == 12


def test_each_layout_is_placeable_and_maximal() -> None:
    names = T.base_profile_names()
    for geometry in maximal_geometries(T):
        placed: list[PlacedInstance] = []
        for p in geometry.placements:
            placed.append(check_create(0, T, placed, p.profile, p.start))
        assert sum(geometry.profiles.values()) == len(placed)
        assert all(remaining_capacity(T, placed, n) == 0 for n in names), geometry.label()
