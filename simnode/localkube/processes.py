"""Start, identify and stop the control plane's processes.

Each process is started in its own session so it outlives ``dgxsim up``, with
its output in a log file. A process is later stopped only by the id recorded
when it was started, and only if that id still belongs to the same process
(same start time in ``/proc``): an id reused by the system is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ProcessRecord(BaseModel):
    """A process dgxsim started: enough to find it again and to read its log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    pid: int
    start_ticks: int
    log: Path
    argv: list[str]
    restarts: int = 0
    """Times the supervisor started it again after it exited."""


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces; fields after it are space separated.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """True if the recorded process still runs (and is not a reused id)."""
    return _start_ticks(record.pid) == record.start_ticks


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
          ) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
    ticks = _start_ticks(proc.pid)
    record = ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks or 0, log=log, argv=argv)
    return record, proc


def stop(record: ProcessRecord, grace_s: float = 10.0) -> None:
    """SIGTERM the recorded process, then SIGKILL after ``grace_s``; reap it if it is ours."""
    if not is_alive(record):
        reap(record.pid)
        return
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.1)
    if is_alive(record):
        os.kill(record.pid, signal.SIGKILL)
    while is_alive(record):
        reap(record.pid)
        time.sleep(0.05)


def reap(pid: int) -> None:
    """Collect the exit status when the process is our child, so no zombie stays."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
