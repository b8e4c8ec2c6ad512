"""Changes in a kubelet plugin directory, as the kubelet's own plugin watcher sees them.

The plugin must notice two things: ``kubelet.sock`` recreated (a kubelet
restart: register again) and its own socket removed (the kubelet clears the
directory when it restarts: serve again). Polling ``stat`` for every socket of
every node every 100 ms costs CPU that grows with the node count even when
nothing happens, so one inotify descriptor per event loop watches every
plugin directory of the process and wakes only the node whose directory
changed (the kubelet itself uses inotify, through fsnotify, for the same
directory). Where inotify is missing (not Linux), a poll of the watched
directories' listings stands in, at one task for the whole process.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IN_MODIFY, IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x100, 0x200, 0x40, 0x80
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
WATCHED = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
EVENT = struct.Struct("iIII")
POLL_INTERVAL_S = 1.0

Listener = Callable[[str], None]
"""Called with the name of the entry that appeared or went, or (for a directory watched
with ``modified``) was written to, in the loop's thread."""


@dataclass
class DirWatcher:
    """Every watched directory of one event loop, on one inotify descriptor."""

    loop: asyncio.AbstractEventLoop
    _fd: int | None = None
    _dirs: dict[int, Path] = field(default_factory=dict)
    _listeners: dict[Path, list[Listener]] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None
    _listings: dict[Path, set[str]] = field(default_factory=dict)
    _modified: set[Path] = field(default_factory=set)

    def watch(self, directory: Path, listener: Listener, modified: bool = False
              ) -> Callable[[], None]:
        """Call ``listener`` for each entry created in or removed from ``directory``
        (and, with ``modified``, each write to a file in it: a journal's appends);
        returns the function that stops it. The polling stand-in sees no writes."""
        directory = directory.resolve()
        first = directory not in self._listeners
        self._listeners.setdefault(directory, []).append(listener)
        if first or (modified and directory not in self._modified):
            if modified:
                self._modified.add(directory)
            self._add(directory)

        def unwatch() -> None:
            listeners = self._listeners.get(directory, [])
            if listener in listeners:
                listeners.remove(listener)
            if not any(self._listeners.values()):
                self.close()

        return unwatch

    def close(self) -> None:
        """Stop watching everything (the last listener went)."""
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        self._dirs.clear()
        self._modified.clear()
        self._listeners.clear()
        self._listings.clear()
        if _WATCHERS.get(self.loop) is self:
            del _WATCHERS[self.loop]

    def _add(self, directory: Path) -> None:
        if self._fd is None and self._poller is None:
            self._fd = _inotify_init()
            if self._fd is not None:
                self.loop.add_reader(self._fd, self._read)
            else:
                self._poller = self.loop.create_task(self._poll(), name="plugin-dir-poll")
        if self._fd is not None and _LIBC is not None:
            mask = WATCHED | (IN_MODIFY if directory in self._modified else 0)
            wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(directory), mask)
            if wd >= 0:
                self._dirs[wd] = directory
                return
            log.warning("cannot watch %s with inotify (errno %d); polling it",
                        directory, ctypes.get_errno())
            if self._poller is None:
                self._poller = self.loop.create_task(self._poll(), name="plugin-dir-poll")
        self._listings[directory] = _listing(directory)

    def _read(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + EVENT.size <= len(data):
            wd, _mask, _cookie, length = EVENT.unpack_from(data, offset)
            raw = data[offset + EVENT.size: offset + EVENT.size + length]
            offset += EVENT.size + length
            directory = self._dirs.get(wd)
            if directory is not None:
                self._tell(directory, os.fsdecode(raw.rstrip(b"\0")))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            for directory, before in list(self._listings.items()):
                now = _listing(directory)
                self._listings[directory] = now
                for name in sorted(before ^ now):
                    self._tell(directory, name)

    def _tell(self, directory: Path, name: str) -> None:
        for listener in list(self._listeners.get(directory, [])):
            try:
                listener(name)
            except Exception:
                log.exception("plugin directory listener failed on %s", name)


def _listing(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def _inotify_init() -> int | None:
    if _LIBC is None:
        return None
    fd = int(_LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    return fd if fd >= 0 else None


_WATCHERS: dict[asyncio.AbstractEventLoop, DirWatcher] = {}


def dir_watcher() -> DirWatcher:
    """The watcher of the running event loop (one per loop, shared by every node)."""
    loop = asyncio.get_running_loop()
    watcher = _WATCHERS.get(loop)
    if watcher is None or watcher.loop.is_closed():
        watcher = _WATCHERS[loop] = DirWatcher(loop)
    return watcher
