"""The ``dgxsim`` command: one entry point, one module per command group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` that adds
its subcommands and sets ``func`` on them; ``func(args)`` returns the exit code.
Errors a user can act on are raised as :class:`CommandError` and printed as one
line on stderr with exit code 1 (argparse usage errors exit with 2).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dgxsim.commands import CommandError

COMMAND_MODULES = (
    "dgxsim.commands.cluster",
    "dgxsim.commands.node",
    "dgxsim.commands.mig",
    "dgxsim.commands.nvidia_smi",
    "dgxsim.commands.fault",
    "dgxsim.commands.workload",
    "dgxsim.commands.jobs",
    "dgxsim.commands.perf",
    "dgxsim.commands.operator",
    "dgxsim.commands.show",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgxsim", description="Emulated NVIDIA DGX A100 nodes for Kubernetes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as err:
        print(f"dgxsim {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"dgxsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
