"""``dgxsim nvidia-smi [--state-dir D] [--node NAME] ...``: a node's nvidia-smi from the host.

Everything after ``nvidia-smi`` is passed to :mod:`dgxnode.nvidia_smi`
unchanged (the subcommand declares no options of its own, so ``-L`` or
``--query-gpu=...`` reach nvidia-smi intact) except the two options that say
which node: ``--state-dir`` (default: dgxsim's state directory) and, for a
cluster started with ``dgxsim up --nodes N``, ``--node NAME``. ``dgxsim
nvidia-smi --state-dir D --node dgx-1 mig -lgip`` prints what ``nvidia-smi mig
-lgip`` prints inside a container on dgx-1 (the container's executable reads
``$DGXSIM_STATE_DIR``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dgxsim.commands import CommandError, default_state_dir, node_state_dir


def register(sub: Any) -> None:
    smi = sub.add_parser("nvidia-smi", help="run a node's emulated nvidia-smi "
                         "([--state-dir D] [--node NAME] ARGS...)", prefix_chars="+",
                         add_help=False)
    smi.add_argument("smi_args", nargs=argparse.REMAINDER, metavar="ARGS")
    smi.set_defaults(func=cmd_nvidia_smi)


def take_option(args: list[str], name: str) -> str | None:
    """Remove ``NAME VALUE`` or ``NAME=VALUE`` from ``args``; the value, or None."""
    for index, token in enumerate(args):
        if token.startswith(name + "="):
            del args[index]
            return token.split("=", 1)[1]
        if token == name:
            if index + 1 == len(args):
                raise CommandError(f"{name} needs a value")
            value = args[index + 1]
            del args[index:index + 2]
            return value
    return None


def cmd_nvidia_smi(args: argparse.Namespace) -> int:
    from dgxnode import nvidia_smi

    smi_args = list(args.smi_args)
    state_dir = take_option(smi_args, "--state-dir")
    node = take_option(smi_args, "--node")
    root = Path(state_dir) if state_dir is not None else default_state_dir()
    return nvidia_smi.main(["--state-dir", str(node_state_dir(root, node)), *smi_args])
