"""``dgxsim nvidia-smi [--state-dir D] ...``: the node's nvidia-smi from the host.

Everything after ``nvidia-smi`` is passed to :mod:`dgxnode.nvidia_smi`
unchanged (the subcommand declares no options of its own, so ``-L`` or
``--query-gpu=...`` reach nvidia-smi intact); ``--state-dir`` defaults to
dgxsim's state directory. ``dgxsim nvidia-smi --state-dir D mig -lgip`` prints
what ``nvidia-smi mig -lgip`` prints inside a container of that node (the
container's executable reads ``$DGXSIM_STATE_DIR``).
"""

from __future__ import annotations

import argparse
from typing import Any

from dgxsim.commands import default_state_dir


def register(sub: Any) -> None:
    smi = sub.add_parser("nvidia-smi", help="run the node's emulated nvidia-smi "
                         "([--state-dir D] ARGS...)", prefix_chars="+", add_help=False)
    smi.add_argument("smi_args", nargs=argparse.REMAINDER, metavar="ARGS")
    smi.set_defaults(func=cmd_nvidia_smi)


def cmd_nvidia_smi(args: argparse.Namespace) -> int:
    from dgxnode import nvidia_smi

    smi_args = list(args.smi_args)
    if not any(a == "--state-dir" or a.startswith("--state-dir=") for a in smi_args):
        smi_args = ["--state-dir", str(default_state_dir()), *smi_args]
    return nvidia_smi.main(smi_args)
