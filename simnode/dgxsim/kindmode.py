"""Kind mode: one simulated DGX node beside a real kubelet (the chart's DaemonSet).

The real kubelet runs the containers and owns the Node's status and Lease. This
process is the node's GPU stack: the device plugin registers with the
kubelet's socket and advertises the simulated GPUs and MIG devices; the node's
state and MIG engine answer ``nvidia.com/mig.config`` as NVIDIA's mig-manager
does; the labels follow as gpu-feature-discovery writes them; and job
containers reach the node through its endpoint socket, which Allocate mounts
into them together with the node's state (for ``nvidia-smi``). Which devices
the kubelet gave to which pod the node reads from the kubelet's PodResources
API, so a MIG change never destroys a device a pod holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from draplugin.server import DraNodePlugin

from deviceplugin.cdi import spec_file, spec_for, write_spec
from deviceplugin.podresources import PodResourcesClient
from deviceplugin.server import NodePlugin
from deviceplugin.servicer import AllocateContext
from deviceplugin.source import InventoryFeed
from dgxnode.agent.kube import Kube
from dgxnode.agent.nodes import NodeController
from dgxnode.agent.runner import NodeAgent
from dgxnode.dcgm import ActivityBook, DcgmCollector, serve_metrics
from dgxnode.endpoint import NodeEndpoint
from dgxnode.holdings import KubeletHoldings
from dgxnode.node import SimNode
from dgxnode.prediction import predictor_for
from dgxnode.store import NodeStore
from dgxsim.drahost import SimNodeHost
from dgxsim.kubeletless import feed_from, follow_for_dra, follow_state_file
from gpumodel.systems import system
from gpumodel.vocabulary import SYSTEM_NAMESPACE, DraMode, MigStrategy
from kubeletapi.podresources.v1.constants import POD_RESOURCES_SOCKET
from localkube.dirwatch import dir_watcher

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
    pod_resources_socket: Path | None = Path(POD_RESOURCES_SOCKET)
    """The kubelet's PodResources socket, asked which devices pods hold (None: not asked)."""
    dra: DraMode | None = None
    """Offer the GPUs through DRA in this mode instead of the device plugin."""
    registry_dir: Path = Path("/var/lib/kubelet/plugins_registry")
    """The kubelet's plugin watcher directory (the DRA plugin's registration socket)."""
    kubelet_plugins_dir: Path = Path("/var/lib/kubelet/plugins")
    """Where the DRA plugin's service socket goes (``<dir>/gpu.nvidia.com/dra.sock``)."""


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
    name = spec_file(context.node)
    path = write_spec(directory, spec_for(feed.snapshot(), context), name)
    log.info("CDI specification for %d devices in %s", len(feed.snapshot().devices), path)
    async for snapshot in feed.watch():
        write_spec(directory, spec_for(snapshot, context), name)


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
    plugin = None if options.dra else NodePlugin(feed, options.plugin_dir, options.strategy,
                                                 allocate_context(options))
    endpoint = NodeEndpoint({sim.name: sim}, predictor_for(system(options.kind).gpu),
                            options.time_scale)
    kube = await Kube.connect(options.kubeconfig)
    holdings = (None if options.pod_resources_socket is None else
                KubeletHoldings(sim, PodResourcesClient(options.pod_resources_socket)))
    agent = NodeAgent.beside_kubelet(kube, NodeController(
        kube, sim, None, options.strategy, config_namespace=options.namespace,
        holdings=holdings))
    dra = None if options.dra is None else DraNodePlugin(
        options.node, options.dra, SimNodeHost(sim), kube, options.registry_dir,
        options.kubelet_plugins_dir, options.state_dir)
    tasks = []
    unfollow: Callable[[], None] | None = None
    try:
        await endpoint.serve(options.state_dir / "run" / "node.sock")
        if options.metrics_port is not None:
            # Pods a real kubelet runs are not timed here: a held device counts as busy.
            serve_metrics(DcgmCollector({sim.name: sim}, ActivityBook()),
                          options.metrics_host, options.metrics_port)
        tasks = [asyncio.create_task(feed_from(sim, feed))]
        unfollow = follow_state_file(sim, dir_watcher())
        if plugin is not None:
            await plugin.start()
        if dra is not None:
            await dra.start()
            tasks.append(asyncio.create_task(follow_for_dra(sim, dra)))
        if holdings is not None:
            await holdings.refresh()
            tasks.append(asyncio.create_task(holdings.run()))
        if options.cdi_dir is not None:
            tasks.append(asyncio.create_task(
                keep_cdi_spec(feed, options.cdi_dir, allocate_context(options))))
        await agent.start()
        what = (f"{len(plugin.servers)} resources advertised" if plugin is not None
                else f"DRA driver registered for the kubelet ({options.dra})")
        print(f"node {options.node} ready: {what}", flush=True)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        if unfollow is not None:
            unfollow()
        await agent.stop()
        if plugin is not None:
            await plugin.stop()
        if dra is not None:
            await dra.stop()
        await endpoint.close()
        await kube.close()
