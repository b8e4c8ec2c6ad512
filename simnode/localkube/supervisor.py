"""Restart what ``dgxsim up`` started when it dies, as an init system would.

``dgxsim up`` starts etcd, the API server, the controller manager, the
scheduler, the node agent and the operator as detached processes and records
them in ``controlplane.json``. Without a supervisor a component killed by the
OOM killer or a stray signal stays dead while ``dgxsim status`` is the only
witness. The supervisor is one more recorded process (started last by ``up``,
stopped first by ``down``) that polls the records: a component that is gone is
started again with the same command line, ports and log, after a back-off that
doubles while it keeps dying quickly; the component's log gets a line saying
it exited and its restart count, the supervisor's log gets the tail of the
dead component's log, and the record gets the new pid and the restart count
that ``dgxsim status`` shows. The supervisor ends when the state file is gone
(``dgxsim down``) or on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from types import FrameType

from localkube.cluster import ControlPlane, ControlPlaneState
from localkube.processes import ProcessRecord, is_alive, log_tail, reap, spawn, stop

log = logging.getLogger(__name__)
SUPERVISOR = "supervisor"
POLL_S = 0.5
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_S = 10.0
"""A component that ran this long before dying is restarted after the first delay: it
was killed, not crash-looping (one that dies sooner waits twice as long each time)."""


@dataclass
class Backoff:
    """When a component may be started again, per component name."""

    delay_s: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)

    def wait_s(self, name: str, now: float) -> float:
        """How long to wait before restarting ``name``, which just died."""
        ran = now - self.started_at.get(name, 0.0)
        delay = FIRST_DELAY_S if ran >= STABLE_S else min(
            MAX_DELAY_S, self.delay_s.get(name, FIRST_DELAY_S / 2) * 2)
        self.delay_s[name] = delay
        return delay

    def started(self, name: str, now: float) -> None:
        self.started_at[name] = now


@dataclass
class Supervisor:
    """Keeps every recorded process of one control plane running."""

    plane: ControlPlane
    backoff: Backoff = field(default_factory=Backoff)
    due: dict[str, float] = field(default_factory=dict)
    stopping: bool = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        now = time.monotonic()
        for name in self._names():
            self.backoff.started(name, now)
        while not self.stopping:
            state = self.plane.load_state()
            if state is None or not any(p.name == SUPERVISOR for p in state.processes):
                log.info("the control plane was stopped; the supervisor ends")
                return
            self.check(state)
            time.sleep(POLL_S)

    def _names(self) -> list[str]:
        state = self.plane.load_state()
        return [p.name for p in state.processes] if state else []

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def check(self, state: ControlPlaneState) -> None:
        """Restart each dead component whose back-off has passed."""
        now = time.monotonic()
        for record in state.processes:
            if record.name == SUPERVISOR or is_alive(record):
                continue
            reap(record.pid)
            if record.name not in self.due:
                wait = self.backoff.wait_s(record.name, now)
                self.due[record.name] = now + wait
                self._report_death(record, wait)
            if now >= self.due[record.name]:
                self._restart(record)

    def _report_death(self, record: ProcessRecord, wait_s: float) -> None:
        tail = log_tail(record.log, 10) or "(no output)"
        log.warning("%s (pid %d) exited; restarting in %.1f s. Last lines of %s:\n%s",
                    record.name, record.pid, wait_s, record.log, tail)

    def _restart(self, record: ProcessRecord) -> None:
        restarts = record.restarts + 1
        with open(record.log, "a") as out:
            out.write(f"\n--- dgxsim supervisor: {record.name} (pid {record.pid}) exited; "
                      f"restart {restarts} ---\n")
        new, _ = spawn(record.name, record.argv, record.log)
        new = new.model_copy(update={"restarts": restarts})
        self.due.pop(record.name, None)
        self.backoff.started(record.name, time.monotonic())
        state = self.plane.load_state()
        if state is None:  # stopped meanwhile: do not leave the new process behind
            stop(new)
            return
        processes = [new if p.name == record.name else p for p in state.processes]
        self.plane.save_state(state.model_copy(update={"processes": processes}))
        log.warning("%s restarted as pid %d (restart %d)", record.name, new.pid, restarts)
