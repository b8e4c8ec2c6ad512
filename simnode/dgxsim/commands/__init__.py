"""Command groups of the ``dgxsim`` CLI and what they share.

Every command module is imported to build the parser, for ``--help`` as for a
prediction, so a module's top level imports only what registering its parsers
needs; what a command needs to run (the Kubernetes clients, the node, the
performance model, matplotlib) is imported inside the function that runs it.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

PLOT_EXTRA_HINT = "pip install 'dgxsim[plot]'"


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit code 1 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LazyChoices:
    """argparse ``choices`` that come from the domain model, loaded when first needed.

    argparse only tests membership (when the option is given) and iterates (for an
    error or the command's help), so building the parser loads nothing. Give the
    option a ``metavar``: without one argparse iterates the choices to name it.
    """

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load

    @cached_property
    def values(self) -> tuple[str, ...]:
        return tuple(self._load())

    def __contains__(self, item: object) -> bool:
        return item in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)


def default_state_dir() -> Path:
    """``$DGXSIM_STATE_DIR``, else ``$XDG_STATE_HOME/dgxsim`` (``~/.local/state/dgxsim``)."""
    explicit = os.environ.get("DGXSIM_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dgxsim"


def system_namespace() -> str:
    """Where the MIG ConfigMap and the operator's objects live: ``$POD_NAMESPACE`` (an
    installed chart's release namespace, from the downward API), else ``dgxsim-system``."""
    from gpumodel.vocabulary import NAMESPACE_ENV, SYSTEM_NAMESPACE

    return os.environ.get(NAMESPACE_ENV) or SYSTEM_NAMESPACE


def add_namespace(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--namespace", default=None, metavar="NS",
        help=f"namespace of {what} (default: $POD_NAMESPACE, else dgxsim-system)")


def namespace_of(args: argparse.Namespace) -> str:
    return str(args.namespace) if args.namespace else system_namespace()


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=None, metavar="DIR",
        help="where the cluster keeps its state (default: $DGXSIM_STATE_DIR or "
             "~/.local/state/dgxsim)")


def state_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir is not None else default_state_dir()


def node_state_dir(state_dir: Path, node: str | None) -> Path:
    """The folder holding the state of the node a command addresses.

    ``--node NAME`` picks a node of a cluster state dir (``dgxsim up --nodes N``);
    without it a single-node state dir is the node, and a cluster of one node
    is that node. A name that is not there, or several nodes and no name, fail
    with the names that are there. A state dir with no node at all is returned
    as it is, for the caller's "no node state" error.
    """
    from dgxsim.statedir import cluster_nodes, has_single_node, node_dir

    names = cluster_nodes(state_dir)
    if node is not None:
        if node not in names:
            raise CommandError(f"--node {node}: no such node in {state_dir} (nodes: "
                               f"{', '.join(names) or 'none'})")
        return node_dir(state_dir, node)
    if has_single_node(state_dir) or not names:
        return state_dir
    if len(names) > 1:
        raise CommandError(f"{state_dir} holds {len(names)} nodes: pass --node NAME "
                           f"(nodes: {', '.join(names)})")
    return node_dir(state_dir, names[0])


MAX_NODES = 10_000
"""The most simulated nodes one command starts or one prediction spans: a DGX SuperPOD
is 140 nodes, the largest clusters a few thousand; more is a typo."""
MAX_TIME_SCALE = 1e6
"""Simulated seconds per wall second: a year passes in half a minute at this scale."""
MAX_WAIT_S = 366 * 86400.0
"""The longest a command waits (a year)."""


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number in [low, high]; argparse names the flag on error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {value}")
        return value

    parse.__name__ = f"int {low}..{high}"
    return parse


def float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (``(low, high]`` with ``low_open``);
    ``nan``, ``inf`` and ``1e400`` are refused with the range."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bound = "more than" if low_open else "at least"
            raise argparse.ArgumentTypeError(
                f"must be a finite number {bound} {low:g} and at most {high:g}, got {text}")
        return value

    parse.__name__ = f"number {low:g}..{high:g}"
    return parse


non_negative_int = int_in(0, 2**31 - 1)
"""argparse type: an integer >= 0 with a clear message otherwise."""
port_number = int_in(0, 65535)
"""argparse type: a TCP port, 0 for any free one."""
node_count = int_in(0, MAX_NODES)
positive_time_scale = float_in(0.0, MAX_TIME_SCALE, low_open=True)
wait_seconds = float_in(0.0, MAX_WAIT_S)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported when a picture
    is drawn; matplotlib is the optional ``plot`` extra, so say how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise CommandError("drawing needs matplotlib, which is not installed: "
                           f"{PLOT_EXTRA_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
