"""Atomic file replacement and journal appends: how every state file of dgxsim is written.

A crash (or a SIGKILL) while a file is rewritten must leave either the old or
the new content, never a torn file: the node's state, the device checkpoint,
the control plane's records and the simulated clock's epoch are all rewritten
this way. The data goes to a temporary file in the same directory, is flushed
and fsynced, renamed over the target, and the directory is fsynced so the
rename itself survives a power loss.

Some records need less: the kubelet's device checkpoint is fsynced but its
directory is not (``sync="file"``, as the kubelet writes it), and a record the
node rebuilds at start from others (who holds which device) is only renamed
into place (``sync="none"``): still never torn, for any reader and if the
writer is killed, but a power loss may leave the previous content.

A journal (the device checkpoint, the holdings beside a node's state) is
created whole this way and then grows by :func:`append_bytes`: one ``write`` of
a complete line, never fsynced; its reader ignores or refuses a torn last line.

It lives here because localkube imports nothing of the project and uses only
the standard library, so every package (the node included) may import it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Literal

Sync = Literal["file-and-directory", "file", "none"]


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None,
                       sync: Sync = "file-and-directory") -> None:
    """Replace ``path`` with ``data`` in one step; ``mode`` sets its permissions and
    ``sync`` what is fsynced (the module's docstring)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:  # the first write into a new directory
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync != "none":
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync == "file-and-directory":
        _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int | None = None,
                      sync: Sync = "file-and-directory") -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode, sync)


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` to the existing ``path`` in one write, not fsynced: a journal's
    line, on disk once this returns, which a killed writer cannot undo. A journal is
    created whole (:func:`atomic_write_bytes`); a missing one raises FileNotFoundError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a full disk mid-line: the line is torn, say so
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes appended")
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
