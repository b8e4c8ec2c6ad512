"""Run the operator: kopf with this package's handlers, cluster-wide, without peering.

``dgxsim operator`` calls :func:`run`. Standalone (no peering objects) because
one operator replica is the deployment model; the chart runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import kopf

import migoperator.handlers  # registers the handlers
from migoperator.settings import OperatorSettings

assert migoperator.handlers


async def operate(settings: OperatorSettings, stop: asyncio.Event | None = None,
                  ready: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when none is given)."""
    if settings.kube.kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(settings.kube.kubeconfig)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    health = settings.metrics
    liveness = (f"http://{health.host}:{health.liveness_port}/healthz"
                if health.liveness_port is not None else None)
    await kopf.operator(registry=kopf.get_default_registry(), clusterwide=True,
                        standalone=True, memo=kopf.Memo(settings=settings),
                        stop_flag=stop, ready_flag=ready, liveness_endpoint=liveness)


def run(settings: OperatorSettings) -> None:
    asyncio.run(operate(settings))
