"""What the real-node tests share: the root requirement and looking for leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def cmdline_mentions(proc: Path, *texts: str) -> bool:
    """Whether the live (not zombie) process ``proc`` of /proc names any of ``texts``."""
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and any(t in cmdline for t in texts)


def mounts_under(path: Path) -> list[str]:
    """Mount points of this mount namespace below ``path``."""
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]
