"""Persistence of a node's state: one JSON file, written atomically, and a journal
of who holds which device.

A node must come back after a restart exactly as it was (MIG layout and
allocations), and a damaged file must never be mistaken for "no node": that
would hand out devices that containers still hold. So writes go to a
temporary file in the same directory, are flushed to disk and renamed over the
old file; reads that fail to parse raise :class:`StateCorruptError` and leave
the file where it is. A lock file serialises processes that share a state
directory (the daemon, ``dgxsim`` commands, ``nvidia-smi`` in containers).

Every pod's start and end changes only who holds which device
(:data:`dgxnode.state.HOLDINGS`). Such a change is appended to the journal
``node.holdings`` as one line (the holdings whole, and the generation of the
``node.json`` they extend) instead of rewriting ``node.json``: one small write,
where a rename costs the file system a journal transaction. The last complete
line of the journal that extends the current ``node.json`` holds the node's
holdings; any other change (layout, health, mode) rewrites ``node.json`` whole
and removes the journal, as does a journal grown past :data:`JOURNAL_LIMIT`.
Lines are not fsynced (the node agent rebuilds holdings at start from its
device checkpoint and the API server); every change of the node itself is,
with its directory.

Every change of a node first takes in what other processes committed, so the
store remembers the files it last read or wrote and can tell, from a ``stat``
of each, that neither has changed since: it keeps ``node.json`` open, so its
inode cannot be freed and handed to a later file while the two are compared,
and the journal only grows between rewrites of ``node.json``.
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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgxnode.errors import StateCorruptError, StateError, StateNotFoundError
from dgxnode.state import HOLDINGS, NodeState
from localkube.files import atomic_write_text

STATE_FILE = "node.json"
JOURNAL_FILE = "node.holdings"
LOCK_FILE = ".node.lock"
JOURNAL_LIMIT = 64 * 1024
"""Bytes past which the journal is folded into ``node.json``."""


class _Holdings(BaseModel):
    """One line of the journal: the node's holdings after a change."""

    model_config = ConfigDict(extra="forbid")

    base: int = Field(ge=0)
    """The generation of the ``node.json`` these holdings extend."""
    generation: int = Field(ge=0)
    allocations: dict[str, str]
    kubelet_assigned: tuple[str, ...]


class NodeStore:
    """The state file of one node in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STATE_FILE
        self.journal = self.state_dir / JOURNAL_FILE
        self._known = _KnownFile()
        self._base: NodeState | None = None
        """``node.json`` as last read or written (holdings in the journal extend it)."""
        self._lock_key: Path | None = None
        self._files = _OpenFiles()
        weakref.finalize(self, self._known.forget)
        weakref.finalize(self, self._files.close)

    def exists(self) -> bool:
        return self.path.exists()

    def unchanged(self) -> bool:
        """True if the file is still the one this store last read or wrote (no other
        process has committed since); False when in doubt."""
        return self._known.matches(self.path, self.journal)

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
            base = _parse(self.path, data)
            holdings = self._read_journal(base.generation)
        except StateError:
            self._known.forget()
            raise
        self._base = base
        if holdings is None:
            return base
        return base.model_copy(update=holdings.model_dump(exclude={"base"}))

    def _read_journal(self, base: int) -> _Holdings | None:
        """The holdings the journal records on top of ``node.json`` of generation
        ``base``: its last complete line, if it extends that file."""
        try:
            with self.journal.open("rb") as handle:
                data = handle.read()
                ino = os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            self._known.remember_journal(None)
            return None
        except OSError as err:
            raise StateError(f"cannot read {self.journal}: {err.strerror}") from err
        self._known.remember_journal((ino, len(data)))
        lines = data.split(b"\n")[:-1]  # a last line without its newline is torn: not one
        if not lines:
            return None
        try:
            holdings = _Holdings.model_validate_json(lines[-1])
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise StateCorruptError(self.journal, f"line {len(lines)}: {where}: "
                                    f"{first['msg']}") from err
        return holdings if holdings.base == base and holdings.generation > base else None

    def set_aside_if_damaged(self) -> str | None:
        """Move a file that cannot be loaded to ``node.json.damaged``; say why, or None.

        Only the node agent does this, at start, because it can rebuild what the file
        held from the API server; commands keep refusing a damaged file."""
        if not self.path.exists():
            return None
        try:
            self.load()
        except StateCorruptError as err:
            aside = err.path.with_name(err.path.name + ".damaged")
            err.path.replace(aside)
            what = "node state" if err.path == self.path else "device holdings journal"
            return f"{what} {err.path.name} was unreadable ({err}); set aside as {aside.name}"
        return None

    def save(self, state: NodeState) -> None:
        """Commit ``state``: a change of holdings alone is appended to the journal;
        anything else replaces ``node.json`` in one atomic step, fsynced with its
        directory, and removes the journal. Callers hold the directory's lock."""
        base = self._base
        if base is not None and base.node == state.node and (
                state.layout_key() == base.layout_key()):
            line = _Holdings.model_construct(base=base.generation, **{
                k: getattr(state, k) for k in HOLDINGS}).model_dump_json().encode() + b"\n"
            if self._known.journal_size() + len(line) <= JOURNAL_LIMIT:
                self._append(line)
                return
            self._replace(state, durable=False)  # holdings alone: folded in, no fsync
            return
        self._replace(state, durable=True)

    def _append(self, line: bytes) -> None:
        fd = self._files.journal(self.journal, self._known.journal_ino())
        written = os.write(fd, line)
        st = os.fstat(fd)
        self._known.remember_journal((st.st_ino, st.st_size))
        if written != len(line):  # a full disk mid-line: a torn line, which the next
            self._base = None     # commit must not extend: it rewrites node.json instead
            raise StateError(f"cannot write {self.journal}: only {written} of {len(line)} "
                             f"bytes written")

    def _replace(self, state: NodeState, durable: bool) -> None:
        # World-readable: job containers (any user) read it for nvidia-smi, as they
        # would query a real driver; the node's layout is no secret.
        self._known.forget()
        self._base = None
        atomic_write_text(self.path, state.model_dump_json(indent=2) + "\n", mode=0o644,
                          sync="file-and-directory" if durable else "none")
        # Its holdings are in the file now: lines that extend an older one go.
        self._files.close_journal()
        self.journal.unlink(missing_ok=True)
        # Callers hold the directory's lock, so the file just renamed into place is ours.
        with self.path.open("rb") as handle:
            self._known.remember(handle.fileno())
        self._known.remember_journal(None)
        self._base = state

    @contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[None]:
        """Hold the directory's lock for a read-modify-write.

        Re-entrant within a thread (a command that holds it may call node methods
        that take it again); other threads of this process and other processes
        wait for it: a thread lock per directory, then the file lock. Without
        ``wait``, :class:`LockBusyError` instead of waiting.
        """
        key = self._lock_key
        if key is None:  # resolved once: every change of the node takes this lock
            self.state_dir.mkdir(parents=True, exist_ok=True)
            key = self._lock_key = (self.state_dir / LOCK_FILE).resolve()
        lock = _thread_lock(key)
        if not lock.acquire(blocking=wait):
            raise LockBusyError(f"{key} is held by another thread")
        try:
            depth: dict[Path, int] = _local.__dict__.setdefault("depth", {})
            if depth.get(key):
                depth[key] += 1
                try:
                    yield
                finally:
                    depth[key] -= 1
                return
            handle = self._files.lock_file(key)
            if handle is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise LockBusyError(f"{key} is held by another process") from None
            depth[key] = 1
            try:
                yield
            finally:
                depth[key] = 0
                if handle is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            lock.release()


class LockBusyError(Exception):
    """The node's lock is held elsewhere, and the caller asked not to wait for it."""


class _OpenFiles:
    """The lock file and the journal a store keeps open between commits: every pod's
    start and end takes the lock and appends a line, and opening a file costs more
    than the write. Each is checked against the path before use (the directory may
    have been removed and made again: a lock on a removed file locks nothing)."""

    def __init__(self) -> None:
        self._lock: BinaryIO | None = None
        self._journal: int | None = None
        self._journal_ino = -1

    def lock_file(self, key: Path) -> BinaryIO | None:
        handle = self._lock
        if handle is not None and _same_file(key, handle.fileno()):
            return handle
        self._lock = None
        if handle is not None:
            handle.close()
        self._lock = _open_lock_file(key)
        return self._lock

    def journal(self, path: Path, ino: int | None) -> int:
        """A descriptor appending to ``path``; ``ino`` is the journal's inode as the
        caller's commit found it on disk (None: there was none, so one is made)."""
        if self._journal is not None and ino == self._journal_ino:
            return self._journal
        self.close_journal()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._journal, self._journal_ino = fd, os.fstat(fd).st_ino
        return fd

    def close_journal(self) -> None:
        fd, self._journal, self._journal_ino = self._journal, None, -1
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.close_journal()
        handle, self._lock = self._lock, None
        if handle is not None:
            handle.close()


def _same_file(path: Path, fd: int) -> bool:
    try:
        st, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _open_lock_file(key: Path) -> BinaryIO | None:
    """The lock file, created if need be. A node state mounted read-only (``nvidia-smi``
    in a container) is locked through a read-only descriptor, which flock accepts; with
    no lock file there only readers come, and every file is replaced in one rename."""
    try:
        try:
            return open(key, "a+b")
        except FileNotFoundError:  # the directory was removed since: made again
            key.parent.mkdir(parents=True, exist_ok=True)
            return open(key, "a+b")
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES):
            raise
        try:
            return open(key, "rb")
        except FileNotFoundError:
            return None


class _KnownFile:
    """The state file as last read or written, held open so its inode stays its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seen: tuple[int, int, int, int] | None = None
        self._journal: tuple[int, int] | None = None
        """The journal's inode and size as last read or written (None: there was none)."""

    def remember_journal(self, seen: tuple[int, int] | None) -> None:
        with self._lock:
            self._journal = seen

    def journal_size(self) -> int:
        with self._lock:
            return 0 if self._journal is None else self._journal[1]

    def journal_ino(self) -> int | None:
        with self._lock:
            return None if self._journal is None else self._journal[0]

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

    def matches(self, path: Path, journal: Path) -> bool:
        with self._lock:
            if self._fd is None or self._seen is None:
                return False
            try:
                st = os.stat(path)
                held = os.fstat(self._fd)
            except OSError:
                return False
            try:
                js = os.stat(journal)
                journal_now: tuple[int, int] | None = (js.st_ino, js.st_size)
            except FileNotFoundError:
                journal_now = None
            except OSError:
                return False
            if journal_now != self._journal:
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


def _parse(path: Path, data: bytes) -> NodeState:
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StateCorruptError(path, f"not valid JSON after {len(data)} bytes: "
                                f"{err}") from err
    try:
        return NodeState.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise StateCorruptError(path, f"{where}: {first['msg']}") from err
