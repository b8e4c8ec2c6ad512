"""nvidia-smi sessions published for an A100-SXM4-40GB, replayed byte for byte.

Each ``*.txt`` under ``nvidia/`` holds commands (``$ nvidia-smi ...``) and the
driver's exact output (sources in ``nvidia/SOURCES.md``). The test builds the
node the session started from, runs every command against it in order and
compares the whole transcript.
"""

from __future__ import annotations

import io
import shlex
from pathlib import Path

from dgxnode.node import SimNode
from dgxnode.nvidia_smi import run

GOLDEN = Path(__file__).parent / "nvidia"


def replay(node: SimNode, transcript: str) -> str:
    """The transcript's commands run on ``node``, with dgxsim's output in place of the driver's."""
    out: list[str] = []
    for line in transcript.splitlines():
        if not line.startswith("$ nvidia-smi "):
            continue
        out.append(line)
        buffer = io.StringIO()
        run(node, shlex.split(line)[2:], buffer)
        out.extend(buffer.getvalue().splitlines())
    return "\n".join(out) + "\n"


def test_lcip_session_on_two_3g_20gb_instances() -> None:
    node = SimNode.create("golden")
    node.set_mig_mode(0, True)
    node.reset_gpu(0)
    expected = (GOLDEN / "nvidia-smi-mig-lcip-a100-40gb.txt").read_text()
    assert replay(node, expected) == expected
