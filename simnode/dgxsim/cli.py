"""The ``dgxsim`` command: one entry point, one module per command group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` that adds
its subcommands and sets ``func`` on them; ``func(args)`` returns the exit code.
Errors a user can act on are raised as :class:`CommandError` and printed as one
line on stderr with exit code 1 (argparse usage errors exit with 2); so is a
pydantic ``ValidationError`` of the values a command was given, naming the flag
the user typed (:mod:`dgxsim.flagerrors`).
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
    "dgxsim.commands.replay",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgxsim", description="Emulated NVIDIA DGX A100 nodes for Kubernetes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as err:
        print(f"dgxsim {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except ValueError as err:
        message = _invalid_values(err, argv)
        if message is None:
            raise
        print(f"dgxsim {args.command}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dgxsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


def _invalid_values(err: ValueError, argv: Sequence[str]) -> str | None:
    """One line for a ValidationError of the values given on the command line; None for any
    other ValueError (a bug, shown with its traceback). pydantic is imported here, where
    an error from it is already loaded, so that starting the CLI does not import it."""
    from pydantic import ValidationError

    from dgxsim.flagerrors import describe

    return describe(err, argv) if isinstance(err, ValidationError) else None


if __name__ == "__main__":
    sys.exit(main())
