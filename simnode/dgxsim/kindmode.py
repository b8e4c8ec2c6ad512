"""Kind mode: one simulated DGX node beside a real kubelet (the chart's DaemonSet).

The real kubelet runs the containers and owns the Node's status and Lease. This
process is the node's GPU stack: the device plugin registers with the
kubelet's socket and advertises the simulated GPUs and MIG devices; the node's
state and MIG engine answer ``nvidia.com/mig.config`` as NVIDIA's mig-manager
does; the labels follow as gpu-feature-discovery writes them; and job
containers reach the node through its endpoint socket, which Allocate mounts
into them together with the node's state (for ``nvidia-smi``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deviceplugin.cdi import spec_for, write_spec
from deviceplugin.dirwatch import dir_watcher
from deviceplugin.server import NodePlugin
from deviceplugin.servicer import AllocateContext
from deviceplugin.source import InventoryFeed
from dgxnode.agent.kube import Kube
from dgxnode.agent.nodes import NodeController
from dgxnode.agent.runner import NodeAgent
from dgxnode.dcgm import ActivityBook, DcgmCollector, serve_metrics
from dgxnode.endpoint import NodeEndpoint
from dgxnode.node import SimNode
from dgxnode.prediction import predictor_for
from dgxnode.store import NodeStore
from dgxsim.kubeletless import feed_from, follow_state_file
from gpumodel.systems import system
from gpumodel.vocabulary import SYSTEM_NAMESPACE, MigStrategy

log = logging.getLogger(__name__)
CONTAINER_RUN_DIR = "/run/dgxsim"
CONTAINER_STATE_DIR = "/var/lib/dgxsim"


@dataclass(frozen=True)
class NodeRunOptions:
    node: str
    state_dir: Path
    kind: str
    strategy: MigStrategy
    plugin_dir: Path
    time_scale: float = 1.0
    kubeconfig: Path | None = None
    namespace: str = SYSTEM_NAMESPACE
    """Where the mig-parted ConfigMap is: the chart's release namespace."""
    metrics_port: int | None = None
    """Serve the node's DCGM metrics at this port (None: none)."""
    metrics_host: str = "127.0.0.1"
    cdi_dir: Path | None = None
    """Where the runtime reads CDI specifications (``/var/run/cdi``); None writes none."""


def allocate_context(options: NodeRunOptions) -> AllocateContext:
    run_dir = options.state_dir / "run"
    return AllocateContext(
        options.node, f"unix://{CONTAINER_RUN_DIR}/node.sock", None,
        extra_mounts=((str(run_dir), CONTAINER_RUN_DIR, False),
                      (str(options.state_dir), CONTAINER_STATE_DIR, True)),
        extra_envs=(("DGXSIM_STATE_DIR", CONTAINER_STATE_DIR),))


async def keep_cdi_spec(feed: InventoryFeed, directory: Path, context: AllocateContext
                        ) -> None:
    """Write the node's CDI specification, and again on every change of its devices, so
    the runtime resolves every name Allocate returns."""
    path = write_spec(directory, spec_for(feed.snapshot(), context))
    log.info("CDI specification for %d devices in %s", len(feed.snapshot().devices), path)
    async for snapshot in feed.watch():
        write_spec(directory, spec_for(snapshot, context))


async def run_node(options: NodeRunOptions, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = NodeStore(options.state_dir)
    sim = SimNode.open(store) if store.exists() else SimNode.create(
        options.node, options.kind, store)
    feed = InventoryFeed(sim.inventory())
    plugin = NodePlugin(feed, options.plugin_dir, options.strategy, allocate_context(options))
    endpoint = NodeEndpoint({sim.name: sim}, predictor_for(system(options.kind).gpu),
                            options.time_scale)
    kube = await Kube.connect(options.kubeconfig)
    agent = NodeAgent.beside_kubelet(kube, NodeController(
        kube, sim, None, options.strategy, config_namespace=options.namespace))
    tasks = []
    unfollow: Callable[[], None] | None = None
    try:
        await endpoint.serve(options.state_dir / "run" / "node.sock")
        if options.metrics_port is not None:
            # Pods a real kubelet runs are not timed here: a held device counts as busy.
            serve_metrics(DcgmCollector({sim.name: sim}, ActivityBook()),
                          options.metrics_host, options.metrics_port)
        await plugin.start()
        tasks = [asyncio.create_task(feed_from(sim, feed))]
        unfollow = follow_state_file(sim, dir_watcher())
        if options.cdi_dir is not None:
            tasks.append(asyncio.create_task(
                keep_cdi_spec(feed, options.cdi_dir, allocate_context(options))))
        await agent.start()
        print(f"node {options.node} ready: {len(plugin.servers)} resources advertised",
              flush=True)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        if unfollow is not None:
            unfollow()
        await agent.stop()
        await plugin.stop()
        await endpoint.close()
        await kube.close()
