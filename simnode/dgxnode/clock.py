"""Simulated time: one clock the node agent runs its pods on, real or virtual.

A pod's run time is decided in simulated seconds (the performance model's
prediction, or the ``dgxsim.io/duration`` annotation) and the cluster runs
``time_scale`` simulated seconds per wall second. Sleeping a wall time scaled
by a float and reading it back from Kubernetes timestamps of one-second
resolution loses precision (at 60x a second of wall time is a minute of
simulated time), so the agent asks a clock instead, as KWOK and SimPy do:

* :class:`RealtimeClock` in the daemon: simulated seconds since the clock's
  epoch (kept in the agent's state directory, so a restarted agent continues
  the same timeline), advancing ``scale`` times faster than the wall clock.
* :class:`VirtualClock` in tests: time stands still until the test advances it,
  and sleepers wake in deadline order, ties broken by arrival; a unit test of
  a day-long pod runs in microseconds.

Both answer ``now()`` in simulated seconds and ``sleep_until(t)`` on that scale.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgxnode.errors import StateError
from localkube.files import atomic_write_text


class Clock(Protocol):
    """Simulated time for the pod lifecycle."""

    scale: float
    """Simulated seconds per wall second (for messages)."""

    def now(self) -> float:
        """Simulated seconds since the clock's epoch."""
        ...

    def from_wall(self, wall_s: float) -> float:
        """The simulated time of a wall-clock instant (Unix seconds)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class RealtimeClock:
    """Simulated time that runs ``scale`` times faster than the wall clock."""

    def __init__(self, scale: float = 1.0, epoch_wall_s: float | None = None) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        self.epoch_wall_s = time.time() if epoch_wall_s is None else epoch_wall_s

    def now(self) -> float:
        return self.from_wall(time.time())

    def from_wall(self, wall_s: float) -> float:
        return (wall_s - self.epoch_wall_s) * self.scale

    async def sleep_until(self, deadline: float) -> None:
        # The loop's timer and the wall clock drift apart by microseconds: sleep again
        # for what is left rather than wake a hair before the deadline.
        while (left := deadline - self.now()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left / self.scale)


class _Epoch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "v1"
    epoch_wall_s: float = Field(gt=0)


CLOCK_FILE = "clock.json"


def _read_epoch(path: Path) -> float:
    return _Epoch.model_validate(json.loads(path.read_bytes())).epoch_wall_s


def persistent_clock(state_dir: Path, scale: float) -> RealtimeClock:
    """A real-time clock whose epoch is kept in ``state_dir/clock.json``: an agent
    restarted on the same state directory continues the same simulated timeline.
    A damaged file is refused (commands); the agent uses :func:`open_clock`."""
    path = state_dir / CLOCK_FILE
    if path.exists():
        try:
            return RealtimeClock(scale, _read_epoch(path))
        except (ValueError, ValidationError) as err:
            raise StateError(f"clock file {path} is unreadable ({type(err).__name__}); "
                             "it was left in place: inspect or remove it") from err
    return new_epoch(state_dir, RealtimeClock(scale))


def open_clock(state_dir: Path, scale: float) -> tuple[RealtimeClock, str | None]:
    """The node agent's clock, and why its file could not be used, if it could not.

    A clock file that cannot be read is set aside as ``clock.json.damaged`` and
    a new epoch starts now; the agent then moves the epoch back to the one its
    running pods were started on (:func:`dgxnode.agent.recovery.epoch_from_pods`,
    :func:`rebase`), as it rebuilds the other files of its nodes."""
    path = state_dir / CLOCK_FILE
    if not path.exists():
        return new_epoch(state_dir, RealtimeClock(scale)), None
    try:
        return RealtimeClock(scale, _read_epoch(path)), None
    except (ValueError, ValidationError) as err:
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        why = (f"clock file {path.name} was unreadable ({type(err).__name__}) and was set "
               f"aside as {aside.name}")
        return new_epoch(state_dir, RealtimeClock(scale)), why


def new_epoch(state_dir: Path, clock: RealtimeClock) -> RealtimeClock:
    """Record ``clock``'s epoch in ``state_dir`` and return the clock."""
    atomic_write_text(state_dir / CLOCK_FILE,
                      _Epoch(epoch_wall_s=clock.epoch_wall_s).model_dump_json())
    return clock


def rebase(state_dir: Path, clock: RealtimeClock, epoch_wall_s: float) -> None:
    """Move ``clock`` to the epoch ``epoch_wall_s`` and record it."""
    clock.epoch_wall_s = epoch_wall_s
    new_epoch(state_dir, clock)


class VirtualClock:
    """Time that moves only when :meth:`advance` moves it (tests)."""

    def __init__(self, start: float = 0.0, scale: float = 1.0) -> None:
        self.scale = scale
        self._now = start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def from_wall(self, wall_s: float) -> float:
        return wall_s

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        await future

    @property
    def sleeping(self) -> int:
        """How many sleepers wait (cancelled ones included until they are due)."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose deadline passed, in order,
        and let the woken tasks run before returning."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run (each round one pass of the event loop)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
