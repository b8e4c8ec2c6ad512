"""MIG profile strings parse and print back; the profile tables hold NVIDIA's figures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpumodel.errors import ProfileParseError, UnknownProfileError
from gpumodel.mig import MigProfile, profile_table


@pytest.mark.parametrize("text", ["1g.5gb", "3g.20gb", "7g.40gb", "1g.5gb+me", "1c.3g.20gb",
                                  "2c.7g.80gb", "1c.2g.10gb", "4g.40gb", "1g.24gb+gfx",
                                  "1g.24gb+me.all", "1g.24gb-me", "2g.48gb+gfx,me"])
def test_round_trip(text: str) -> None:
    assert str(MigProfile.parse(text)) == text


def test_fields() -> None:
    p = MigProfile.parse("1c.3g.20gb")
    assert (p.compute_slices, p.gpu_slices, p.memory_gb) == (1, 3, 20)
    assert not p.is_gpu_instance
    assert str(p.gpu_instance) == "3g.20gb"
    assert MigProfile.parse("1g.5gb+me").attributes == ("me",)
    assert MigProfile.parse("1g.24gb+me.all").attributes == ("me.all",)
    minus = MigProfile.parse("1g.24gb-me")
    assert (minus.attributes, minus.negative_attributes) == ((), ("me",))


@pytest.mark.parametrize("text", ["", " 1g.5gb", "1g.5gb ", "1g", "1g.5", "g.5gb", "0g.5gb",
                                  "1g.05gb", "3c.20gb", "4c.3g.20gb", "1x.1g.5gb",
                                  "1g.5gb+", "1g.5gb+me,me", "1.2.3.4",
                                  "1c.2c.3g.20gb", "-1g.5gb", "1g.5gb+me-gfx", "1g.5gb+1me",
                                  "1g.5gb+.me", "1g.5gb+me.", "1g.5gb+m_e", "1g.5gb+me,",
                                  "1g.5gb-"])
def test_malformed(text: str) -> None:
    with pytest.raises(ProfileParseError):
        MigProfile.parse(text)


@settings(max_examples=200, deadline=None)
@given(g=st.integers(1, 8), c=st.integers(1, 8), gb=st.integers(1, 200), me=st.booleans(),
       explicit=st.booleans())
def test_round_trip_property(g: int, c: int, gb: int, me: bool, explicit: bool) -> None:
    c = min(c, g)
    text = (f"{c}c." if explicit and c != g else "") + f"{g}g.{gb}gb" + ("+me" if me else "")
    parsed = MigProfile.parse(text)
    assert str(parsed) == text
    assert MigProfile.parse(str(parsed)) == parsed


def test_a100_40gb_table_matches_design() -> None:
    t = profile_table("a100-40gb")
    rows = {p.name: (p.profile_id, p.memory_mib, p.sms, p.compute_slices, p.memory_slices,
                     p.max_per_gpu, p.starts) for p in t.profiles}
    assert rows == {
        "1g.5gb": (19, 4864, 14, 1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
        "1g.5gb+me": (20, 4864, 14, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        "1g.10gb": (15, 9984, 14, 1, 2, 4, (0, 2, 4, 6)),
        "2g.10gb": (14, 9984, 28, 2, 2, 3, (0, 2, 4)),
        "3g.20gb": (9, 20096, 42, 3, 4, 2, (0, 4)),
        "4g.20gb": (5, 20096, 56, 4, 4, 1, (0,)),
        "7g.40gb": (0, 40448, 98, 7, 8, 1, (0,)),
    }
    seven = t.get("7g.40gb")
    assert (seven.copy_engines, seven.decoders, seven.jpeg_decoders, seven.ofa) == (7, 5, 1, 1)
    assert t.base_profile_names() == ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")


def test_a100_80gb_names_and_lookup() -> None:
    t = profile_table("a100-80gb")
    assert t.names() == ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb",
                         "7g.80gb")
    assert t.get(9).name == "3g.40gb"
    assert t.get("MIG 7g.80gb").profile_id == 0
    assert t.get("3g.40gb").resource_name == "nvidia.com/mig-3g.40gb"


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UnknownProfileError, match=r"known: 1g\.5gb"):
        profile_table("a100-40gb").get("3g.40gb")
    with pytest.raises(UnknownProfileError):
        profile_table("v100-16gb")


def test_compute_instance_profile_ids() -> None:
    t = profile_table("a100-40gb")
    assert [t.ci_profile_id(c) for c in (1, 2, 3, 4, 7)] == [0, 1, 2, 3, 4]
    assert t.ci_slices_for_id(2) == 3


def test_full_size_compute_instance_prints_short_form() -> None:
    assert str(MigProfile.parse("1c.1g.10gb+me")) == "1g.10gb+me"
