"""Persistence of a node's state: one JSON file, written atomically.

A node must come back after a restart exactly as it was (MIG layout and
allocations), and a damaged file must never be mistaken for "no node": that
would hand out devices that containers still hold. So writes go to a
temporary file in the same directory, are flushed to disk and renamed over the
old file; reads that fail to parse raise :class:`StateCorruptError` and leave
the file where it is. A lock file serialises processes that share a state
directory (the daemon, ``dgxsim`` commands, ``nvidia-smi`` in containers).

Every change of a node first takes in what other processes committed, so the
store remembers the file it last read or wrote and can tell, from one ``stat``,
that the file has not been replaced since: it keeps that file open, so its inode
cannot be freed and handed to a later file while the two are compared.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from dgxnode.errors import StateCorruptError, StateError, StateNotFoundError
from dgxnode.state import NodeState
from localkube.files import atomic_write_text

STATE_FILE = "node.json"
LOCK_FILE = ".node.lock"


class NodeStore:
    """The state file of one node in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STATE_FILE
        self._known = _KnownFile()
        self._lock_key: Path | None = None
        weakref.finalize(self, self._known.forget)

    def exists(self) -> bool:
        return self.path.exists()

    def unchanged(self) -> bool:
        """True if the file is still the one this store last read or wrote (no other
        process has committed since); False when in doubt."""
        return self._known.matches(self.path)

    def load(self) -> NodeState:
        """The stored state; typed errors for a missing or unreadable file."""
        try:
            with self.path.open("rb") as handle:
                data = handle.read()
                self._known.remember(handle.fileno())
        except FileNotFoundError:
            self._known.forget()
            raise StateNotFoundError(self.path) from None
        except OSError as err:
            self._known.forget()
            raise StateError(f"cannot read node state {self.path}: {err.strerror}") from err
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            self._known.forget()
            raise StateCorruptError(self.path, f"not valid JSON after {len(data)} bytes: "
                                    f"{err}") from err
        try:
            return NodeState.model_validate(raw)
        except ValidationError as err:
            self._known.forget()
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise StateCorruptError(self.path, f"{where}: {first['msg']}") from err

    def set_aside_if_damaged(self) -> str | None:
        """Move a file that cannot be loaded to ``node.json.damaged``; say why, or None.

        Only the node agent does this, at start, because it can rebuild what the file
        held from the API server; commands keep refusing a damaged file."""
        if not self.path.exists():
            return None
        try:
            self.load()
        except StateCorruptError as err:
            aside = self.path.with_name(self.path.name + ".damaged")
            self.path.replace(aside)
            return f"node state {self.path.name} was unreadable ({err}); set aside as {aside.name}"
        return None

    def save(self, state: NodeState, durable: bool = True) -> None:
        """Replace the file with ``state`` in one atomic step; fsynced with its directory
        unless not ``durable`` (a change the node rebuilds at start from its device
        checkpoint and the API server: who holds which device)."""
        # World-readable: job containers (any user) read it for nvidia-smi, as they
        # would query a real driver; the node's layout is no secret.
        self._known.forget()
        atomic_write_text(self.path, state.model_dump_json(indent=2) + "\n", mode=0o644,
                          sync="file-and-directory" if durable else "none")
        # Callers hold the directory's lock, so the file just renamed into place is ours.
        with self.path.open("rb") as handle:
            self._known.remember(handle.fileno())

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (blocking) for a read-modify-write.

        Re-entrant within a thread (a command that holds it may call node methods
        that take it again); other threads of this process and other processes
        wait for it: a thread lock per directory, then the file lock.
        """
        key = self._lock_key
        if key is None:  # resolved once: every change of the node takes this lock
            self.state_dir.mkdir(parents=True, exist_ok=True)
            key = self._lock_key = (self.state_dir / LOCK_FILE).resolve()
        with _thread_lock(key):
            depth: dict[Path, int] = _local.__dict__.setdefault("depth", {})
            if depth.get(key):
                depth[key] += 1
                try:
                    yield
                finally:
                    depth[key] -= 1
                return
            with _open_lock_file(key) as handle:
                if handle is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                depth[key] = 1
                try:
                    yield
                finally:
                    depth[key] = 0
                    if handle is not None:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _open_lock_file(key: Path) -> Iterator[BinaryIO | None]:
    """The lock file, created if need be. A node state mounted read-only (``nvidia-smi``
    in a container) is locked through a read-only descriptor, which flock accepts; with
    no lock file there only readers come, and every file is replaced in one rename."""
    handle: BinaryIO
    try:
        try:
            handle = open(key, "a+b")  # noqa: SIM115
        except FileNotFoundError:  # the directory was removed since: made again
            key.parent.mkdir(parents=True, exist_ok=True)
            handle = open(key, "a+b")  # noqa: SIM115
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES):
            raise
        try:
            handle = open(key, "rb")  # noqa: SIM115
        except FileNotFoundError:
            yield None
            return
    with handle:
        yield handle


class _KnownFile:
    """The state file as last read or written, held open so its inode stays its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seen: tuple[int, int, int, int] | None = None

    def remember(self, fd: int) -> None:
        held = os.dup(fd)
        st = os.fstat(held)
        with self._lock:
            old, self._fd = self._fd, held
            self._seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if old is not None:
            os.close(old)

    def forget(self) -> None:
        with self._lock:
            old, self._fd, self._seen = self._fd, None, None
        if old is not None:
            os.close(old)

    def matches(self, path: Path) -> bool:
        with self._lock:
            if self._fd is None or self._seen is None:
                return False
            try:
                st = os.stat(path)
                held = os.fstat(self._fd)
            except OSError:
                return False
            now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            # The same inode (it cannot have been reused: it is held open), not rewritten
            # in place since (size and modification time as when it was read or written).
            return now == self._seen == (held.st_dev, held.st_ino, held.st_size,
                                         held.st_mtime_ns)


_local = threading.local()
"""Per thread: the lock files it holds, with their nesting depth."""
_locks: dict[Path, threading.RLock] = {}
_locks_guard = threading.Lock()


def _thread_lock(key: Path) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())
