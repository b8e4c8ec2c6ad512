"""``nvidia-smi`` for a simulated node: the commands people script against.

Supported: no command (the summary table), ``-L``,
``--query-gpu=... --format=csv[,noheader,nounits]``,
``topo -m``, ``-i ID -mig 0|1``, ``-i ID -r`` and ``mig`` (``-lgip``,
``-lgipp``, ``-lgi``, ``-lci``, ``-cgi LIST [-C]``, ``-dgi``, ``-cci``,
``-dci``), with NVIDIA's layouts, wording and exit codes. The executable finds
its node from ``--state-dir DIR`` or ``$DGXSIM_STATE_DIR``; it takes the state
directory's lock for the whole command, so concurrent calls serialise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from dgxnode.errors import GpuBusyError, StateError
from dgxnode.node import SimNode
from dgxnode.nvidia_smi import migcmd
from dgxnode.nvidia_smi.errors import INVALID_ARGUMENT, NOT_FOUND, OTHER, SmiError
from dgxnode.nvidia_smi.listing import list_gpus, query_gpu, topo_matrix
from dgxnode.nvidia_smi.summary import summary
from dgxnode.store import NodeStore

STATE_DIR_ENV = "DGXSIM_STATE_DIR"
DRIVER_NOT_LOADED = 9


def select_gpus(node: SimNode, text: str | None) -> list[int]:
    """``-i``: comma-separated indices, PCI bus IDs or UUIDs; all GPUs when absent."""
    if text is None:
        return [g.index for g in node.hardware.gpus]
    chosen = []
    for item in text.split(","):
        match = [g.index for g in node.hardware.gpus
                 if item.strip() in (str(g.index), g.uuid, g.pci_bus_id)]
        if not match:
            raise SmiError(NOT_FOUND, "No devices were found")
        chosen += match
    return chosen


def _take(args: list[str], *names: str) -> str | None:
    """Remove ``--name=value`` or ``--name value`` from ``args``; its value or None."""
    for index, token in enumerate(args):
        for name in names:
            if token == name and index + 1 < len(args):
                value = args[index + 1]
                del args[index:index + 2]
                return value
            if token.startswith(name + "="):
                del args[index]
                return token.split("=", 1)[1]
    return None


def dispatch(node: SimNode, argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args[:1] == ["mig"]:
        parsed = migcmd.parse(args[1:])
        return migcmd.run(node, parsed, select_gpus(node, parsed.gpus))
    if args[:1] == ["topo"]:
        if args[1:] in (["-m"], ["--matrix"]):
            return topo_matrix(node)
        raise SmiError(INVALID_ARGUMENT, "Invalid combination of input arguments. Please run "
                      "'nvidia-smi topo -h' for help.")
    gpus = select_gpus(node, _take(args, "-i", "--id"))
    query, fmt = _take(args, "--query-gpu"), _take(args, "--format")
    mode = _take(args, "-mig", "--multi-instance-gpu")
    if query is not None:
        if fmt is None:
            raise SmiError(INVALID_ARGUMENT, '"--format" is required with "--query-gpu".')
        return _expect_done(args, query_gpu(node, gpus, query, fmt))
    if mode is not None:
        return _expect_done(args, _set_mode(node, gpus, mode))
    command = SIMPLE_COMMANDS.get(tuple(args))
    if command is not None:
        return command(node, gpus)
    raise SmiError(INVALID_ARGUMENT, "Invalid combination of input arguments. Supported here: "
                  "no command, -L, --query-gpu, topo -m, -mig, -r, mig.")


def _expect_done(rest: list[str], lines: list[str]) -> list[str]:
    if rest:
        raise SmiError(INVALID_ARGUMENT, f'Invalid parameter "{rest[0]}".')
    return lines


def _set_mode(node: SimNode, gpus: list[int], value: str) -> list[str]:
    if value not in ("0", "1", "ENABLED", "DISABLED"):
        raise SmiError(INVALID_ARGUMENT, f'Invalid MIG mode "{value}".')
    enabled = value in ("1", "ENABLED")
    lines = []
    for i in gpus:
        bus = node.hardware.gpu(i).pci_bus_id
        try:
            if node.set_mig_mode(i, enabled):
                node.reset_gpu(i)  # bare-metal A100: the driver resets an idle GPU itself
        except GpuBusyError:
            lines.append(f"Warning: MIG mode is in pending {'enable' if enabled else 'disable'}"
                         f" state for GPU {bus}:In use by another client")
            continue
        lines.append(f"{'Enabled' if enabled else 'Disabled'} MIG Mode for GPU {bus}")
    return [*lines, "All done."]


def _reset(node: SimNode, gpus: list[int]) -> list[str]:
    lines = []
    for i in gpus:
        bus = node.hardware.gpu(i).pci_bus_id
        try:
            node.reset_gpu(i)
        except GpuBusyError as err:
            raise SmiError(OTHER, f"Unable to reset GPU {bus} because it's being used by some "
                          f"other process ({err}).") from err
        lines.append(f"GPU {bus} was successfully reset.")
    return [*lines, "All done."]


SIMPLE_COMMANDS: dict[tuple[str, ...], Callable[[SimNode, list[int]], list[str]]] = {
    (): summary, ("-L",): list_gpus, ("--list-gpus",): list_gpus,
    ("-r",): _reset, ("--gpu-reset",): _reset,
}
"""Commands that take nothing but ``-i``: argument list -> what runs it."""


def run(node: SimNode, argv: Sequence[str], out: TextIO) -> int:
    """Run one nvidia-smi command against ``node``; print to ``out``; the exit code."""
    try:
        lines = dispatch(node, argv)
    except SmiError as stop:
        for line in stop.lines:
            print(line, file=out)
        return stop.code
    for line in lines:
        print(line, file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (the ``nvidia-smi`` executable inside containers)."""
    args = list(sys.argv[1:] if argv is None else argv)
    state_dir = _take(args, "--state-dir") or os.environ.get(STATE_DIR_ENV)
    if not state_dir:
        print("NVIDIA-SMI has failed because it couldn't find the simulated node. Set "
              f"{STATE_DIR_ENV} or pass --state-dir.", file=sys.stdout)
        return DRIVER_NOT_LOADED
    store = NodeStore(Path(state_dir))
    try:
        with store.locked():
            node = SimNode.open(store)
            return run(node, args, sys.stdout)
    except StateError as err:
        print(f"NVIDIA-SMI has failed because the node state is unusable: {err}")
        return DRIVER_NOT_LOADED


if __name__ == "__main__":
    sys.exit(main())
