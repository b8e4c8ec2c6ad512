"""Once its nodes are up, the agent keeps the cycle collector off what they hold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dgxsim.kubeletless import YOUNG_GC_THRESHOLD, settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Held:
    """An object in a reference cycle, as node models and their listeners are."""

    def __init__(self) -> None:
        self.me = self


def test_what_is_alive_at_start_leaves_the_collected_generations(collector: None) -> None:
    kept = [Held() for _ in range(100)]
    assert all(gc.is_tracked(k) for k in kept)
    frozen = gc.get_freeze_count()
    settle_heap()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_threshold()[0] >= YOUNG_GC_THRESHOLD


def test_cycles_made_later_are_still_collected(collector: None) -> None:
    settle_heap()
    Held()
    assert gc.collect() >= 1
