"""The cluster's API for commands that read it once and print: synchronous, one line on failure.

A command (``dgxsim jobs``, ``dgxsim show``, the readiness checks of
``dgxsim up``) runs a few reads and exits, so it opens a
:class:`kubewire.KubeClient`, runs the reads in one event loop and closes it.
A failure is never "no data": it is the :class:`kubewire.KubeError` naming the
call, which :func:`read_cluster` turns into a one-line
:class:`~dgxsim.commands.CommandError`. Imported by the commands that need it
when they run, so the client library is not loaded for ``--help``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dgxsim.commands import CommandError
from kubewire import KubeClient, KubeError

T = TypeVar("T")
Reads = Callable[[KubeClient], Awaitable[T]]


def run_reads(kubeconfig: Path, reads: Reads[T]) -> T:
    """``reads`` with a client for ``kubeconfig``; a failure raises its KubeError."""

    async def run() -> T:
        kube = await KubeClient.connect(kubeconfig)
        try:
            return await reads(kube)
        finally:
            await kube.close()

    return asyncio.run(run())


def read_cluster(kubeconfig: Path, reads: Reads[T]) -> T:
    """``reads`` with a client for ``kubeconfig``; a failure is a one-line CommandError."""
    try:
        return run_reads(kubeconfig, reads)
    except KubeError as err:
        raise CommandError(f"cannot read the cluster: {err}") from err
