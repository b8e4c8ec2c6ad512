"""Atomic file replacement: the one helper every state file of dgxsim is written with.

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

It lives here because localkube imports nothing of the project and uses only
the standard library, so every package (the node included) may import it.
"""

from __future__ import annotations

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


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
