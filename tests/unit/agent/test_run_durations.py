"""dgxsim.io/duration reads every unit its help names, milliseconds included."""

from __future__ import annotations

import pytest

from dgxnode.agent.errors import AnnotationError
from dgxnode.agent.workload import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("2m30s", 150.0), ("1h", 3600.0), ("500ms", 0.5),
    ("10ms", 0.01), ("1m500ms", 60.5), ("0.25", 0.25),
])
def test_durations_in_every_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "ms", "1h2", "-5s", "0"])
def test_what_is_not_a_positive_duration_is_refused(text: str) -> None:
    with pytest.raises(AnnotationError, match=r"dgxsim\.io/duration"):
        parse_duration(text)
