"""Kubelet-less mode: N simulated DGX nodes, each with its device plugin, in one process.

This is the only place where simnode and the device plugin meet, and they
meet as they would on a real node: the plugin reads the node's inventory (an
in-process feed of simnode's published document) and speaks the kubelet gRPC
API over Unix sockets to the node agent's device manager, which plays the
kubelet. Per node:

    SimNode --inventory--> InventoryFeed --> NodePlugin (gRPC servers)
                                                 |  Register / ListAndWatch / Allocate
    NodeController, PodController <------ DeviceManager (kubelet.sock)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from draplugin.server import DraNodePlugin

from deviceplugin.server import NodePlugin
from deviceplugin.servicer import AllocateContext
from deviceplugin.source import InventoryFeed
from deviceplugin.strategy import advertised_counts
from dgxnode.agent.checkpoint import CHECKPOINT_FILE, Checkpoint
from dgxnode.agent.dra import CLAIMS_FILE, ClaimManager
from dgxnode.agent.kube import Kube
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.agent.nodes import NodeController
from dgxnode.agent.recovery import epoch_from_pods
from dgxnode.agent.runner import POD_SELECTOR, NodeAgent
from dgxnode.clock import CLOCK_FILE, RealtimeClock, open_clock, rebase
from dgxnode.dcgm import (
    ActivityBook,
    DcgmCollector,
    PodActivities,
    WatchLiveness,
    serve_metrics,
)
from dgxnode.endpoint import NodeEndpoint
from dgxnode.errors import SimnodeError
from dgxnode.node import SimNode
from dgxnode.prediction import activity_estimator, predictor_for
from dgxnode.store import NodeStore
from dgxsim.drahost import SimNodeHost
from dgxsim.statedir import node_dir
from gpumodel.dra import device_classes
from gpumodel.labels import leaf_switch
from gpumodel.systems import system
from gpumodel.vocabulary import (
    DEFAULT_MIG_STRATEGY,
    DEFAULT_NODE_KIND,
    LEAF_SWITCH,
    DraMode,
    MigStrategy,
)
from kubewire import ConflictError
from localkube.dirwatch import DirWatcher, dir_watcher

log = logging.getLogger(__name__)
YOUNG_GC_THRESHOLD = 20_000
"""Allocations between two collections of the youngest generation (Python's default 700)."""


def settle_heap() -> None:
    """Keep the cycle collector off what every node holds for the process's life.

    The nodes' models, inventories and plugin servers, built at start, are most of
    the heap, and each full collection walked them all again: a fifth of the
    agent's CPU in a pod burst. Frozen after one collection, they are left out of
    every later one. A pod's short-lived objects mostly die by reference count, so
    the youngest generation is collected less often than Python's default.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)


def raise_open_file_limit() -> None:
    """Each node keeps a few files open (its state file, lock, journal, plugin
    sockets): lift the soft limit on open files to the hard one, as Go programs
    (the kubelet, KWOK) do at start, so a thousand nodes fit under a default of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class AgentOptions:
    """What ``dgxsim agent`` (and ``dgxsim up --nodes``) runs."""

    state_dir: Path
    kubeconfig: Path
    nodes: int
    kind: str = DEFAULT_NODE_KIND
    strategy: MigStrategy = DEFAULT_MIG_STRATEGY
    mig_config: str | None = None
    time_scale: float = 1.0
    name_prefix: str = "dgx"
    metrics_port: int | None = None
    """Serve the nodes' DCGM metrics on 127.0.0.1 at this port (0: any free port)."""
    dra: DraMode | None = None
    """Offer the GPUs through DRA (``gpu.nvidia.com``) in this mode instead of the device
    plugin; a node never offers the same GPUs both ways."""


def node_names(options: AgentOptions) -> list[str]:
    return [f"{options.name_prefix}-{i}" for i in range(options.nodes)]


def runtime_dir(state_dir: Path) -> Path:
    """A short directory for Unix sockets (paths are limited to 107 bytes)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dgxsim-{digest}"


def open_node(state_dir: Path, name: str, kind: str) -> SimNode:
    store = NodeStore(node_dir(state_dir, name))
    if store.exists():
        return SimNode.open(store)
    return SimNode.create(name, kind, store)


def open_node_files(state_dir: Path, name: str, kind: str
                    ) -> tuple[SimNode, Checkpoint, list[str]]:
    """The node and its device checkpoint, and what of them was damaged.

    A file that cannot be read is set aside (``*.damaged``) and starts fresh; the
    agent rebuilds what it held from the API server before admitting any pod
    (:meth:`dgxnode.agent.pods.PodController.reconcile`)."""
    store = NodeStore(node_dir(state_dir, name))
    checkpoint_path = node_dir(state_dir, name) / CHECKPOINT_FILE
    damage = [why for why in [store.set_aside_if_damaged()] if why]
    if not store.exists() and checkpoint_path.exists():
        damage.append(f"node state {store.path.name} was missing")
    sim = open_node(state_dir, name, kind)
    if not checkpoint_path.exists() and sim.state.allocations:
        damage.append(f"device checkpoint {CHECKPOINT_FILE} was missing")
    checkpoint = Checkpoint(checkpoint_path)
    damage += [checkpoint.damaged] if checkpoint.damaged else []
    return sim, checkpoint, damage


@dataclass
class NodeWiring:
    sim: SimNode
    feed: InventoryFeed
    plugin: NodePlugin | None
    """The device plugin; None on a node that offers its GPUs through DRA."""
    devices: DeviceManager
    controller: NodeController
    damage: list[str]
    """What of the node's files could not be used at start (rebuilt from the API server)."""
    dra: DraNodePlugin | None = None
    claims: ClaimManager | None = None
    follower: asyncio.Task[None] | None = None
    unfollow_file: Callable[[], None] | None = None


async def feed_from(sim: SimNode, feed: InventoryFeed) -> None:
    """Give the device plugins each new layout; a change of owners alone (every pod's
    start and end) is nothing they advertise, so it is not sent."""
    queue, unsubscribe = sim.changes()
    try:
        _, inventory, last = sim.published()
        if inventory is not feed.snapshot():  # changed since the feed was made
            await feed.publish(inventory)
        while True:
            await queue.get()
            while not queue.empty():
                queue.get_nowait()
            if sim.state.layout_key() == last:
                continue  # owners alone: the inventory is not even built
            _, inventory, last = sim.published()
            await feed.publish(inventory)
    finally:
        unsubscribe()


REFRESH_S = 0.25
"""Commits to a state file within this time are read back once."""
COMMIT_THREADS = 32
API_CONNECTIONS = 24
"""The agent's API requests in flight at once (its watches included), each on a TLS
connection of its own that stays open for the next. A burst of pods queues hundreds
of small writes in a moment; a two-core API server takes no more of them for being
sent a hundred at once, and every connection past those already open costs both
sides a TLS handshake."""


def follow_state_file(sim: SimNode, watcher: DirWatcher) -> Callable[[], None] | None:
    """Pick up changes other processes commit to the node's state file; returns the
    function that stops following it.

    ``dgxsim fault inject``, ``dgxsim mig apply`` and ``nvidia-smi mig -cgi`` run
    as separate processes on the same state directory; the agent follows them.
    Every commit replaces the file by a rename or appends to the store's journal,
    which the process's one inotify watcher reports: nothing polls while nothing
    changes, whatever the node count. The agent's own commits are reported too:
    the files are then still the ones the store wrote, and nothing is read.
    Otherwise the reload runs in a worker thread (it waits for the node's lock).
    """
    store = sim.store
    if store is None:
        return None
    path = store.path
    loop = asyncio.get_running_loop()
    state: dict[str, asyncio.TimerHandle | asyncio.Task[None] | bool | None] = {
        "timer": None, "task": None, "again": False}

    async def reload() -> None:
        try:
            await asyncio.to_thread(sim.refresh)
        except SimnodeError as err:
            log.error("%s: cannot reload %s: %s", sim.name, path, err)
        finally:
            state["task"] = None
            if state["again"]:  # committed again while it was being read
                state["again"] = False
                schedule()

    def fire() -> None:
        state["timer"] = None
        if store.unchanged():  # the agent's own commit (a stat, no thread, no read)
            return
        state["task"] = loop.create_task(reload(), name=f"reload {sim.name}")

    def schedule() -> None:
        if state["timer"] is None:
            state["timer"] = loop.call_later(REFRESH_S, fire)

    def changed(name: str) -> None:
        if name not in names:
            return
        if state["task"] is not None:
            state["again"] = True
        else:
            schedule()

    names = {path.name, store.journal.name}
    path.parent.mkdir(parents=True, exist_ok=True)
    unwatch = watcher.watch(path.parent, changed, modified=True)

    def stop() -> None:
        unwatch()
        for key in ("timer", "task"):
            item = state[key]
            if isinstance(item, asyncio.TimerHandle | asyncio.Task):
                item.cancel()

    return stop


def endpoint_socket(sockets: Path) -> Path:
    return sockets / "endpoint.sock"


def wire_node(kube: Kube, options: AgentOptions, name: str, sockets: Path,
              index: int = 0) -> NodeWiring:
    sim, checkpoint, damage = open_node_files(options.state_dir, name, options.kind)
    plugin_dir = sockets / name
    devices = DeviceManager(name, plugin_dir, checkpoint)
    feed = InventoryFeed(sim.inventory())
    smi = shutil.which("nvidia-smi")
    context = AllocateContext(name, f"unix://{endpoint_socket(sockets)}", smi)
    leaf = leaf_switch(system(options.kind).nodes_per_leaf, index)
    labels = {LEAF_SWITCH: leaf} if leaf else {}
    if options.dra is not None:
        # The kubelet's layout: registration in plugins_registry, the service in plugins.
        dra = DraNodePlugin(name, options.dra, SimNodeHost(sim), kube,
                            plugin_dir / "plugins_registry", plugin_dir / "plugins",
                            node_dir(options.state_dir, name))
        claims = ClaimManager(name, plugin_dir / "plugins_registry", kube,
                              node_dir(options.state_dir, name) / CLAIMS_FILE)
        controller = NodeController(kube, sim, devices, options.strategy, options.mig_config,
                                    initial_labels=labels)
        return NodeWiring(sim, feed, None, devices, controller, damage, dra, claims)
    plugin = NodePlugin(feed, plugin_dir, options.strategy, context)
    controller = NodeController(
        kube, sim, devices, options.strategy, options.mig_config, initial_labels=labels,
        advertised=lambda inventory: advertised_counts(inventory, options.strategy))
    return NodeWiring(sim, feed, plugin, devices, controller, damage)


async def ensure_device_classes(kube: Kube) -> None:
    """NVIDIA's DeviceClasses, created once (a cluster's own are left as they are)."""
    for body in device_classes():
        with contextlib.suppress(ConflictError):
            await kube.create_device_class(body)


async def follow_for_dra(sim: SimNode, dra: DraNodePlugin) -> None:
    """Tell the DRA plugin about every change of its node (it publishes anew)."""
    queue, unsubscribe = sim.changes()
    try:
        while True:
            await queue.get()
            dra.inventory_changed()
    finally:
        unsubscribe()


async def agent_clock(kube: Kube, options: AgentOptions, wirings: list[NodeWiring]
                      ) -> RealtimeClock:
    """The agent's simulated clock; a damaged clock file, or one missing while pods
    run on these nodes, is rebuilt from the start times the API server records on
    the running pods, and every node's report of damaged files says so."""
    missing = not (options.state_dir / CLOCK_FILE).exists()
    clock, damaged = open_clock(options.state_dir, options.time_scale)
    if damaged is None and not missing:
        return clock
    names = {w.sim.name for w in wirings}
    listed = await kube.list_pods(field_selector=POD_SELECTOR)
    pods = [p for p in listed.items if p["spec"].get("nodeName") in names]
    epoch = epoch_from_pods(pods, clock.scale)
    if damaged is None:
        if epoch is None:  # a new agent, or nothing runs on the old timeline
            return clock
        damaged = f"clock file {CLOCK_FILE} was missing"
    if epoch is None:
        damaged += "; no running pod recorded the old timeline, a new one starts now"
    else:
        rebase(options.state_dir, clock, epoch)
        damaged += ("; its epoch was rebuilt from the start times of the running pods "
                    "the API server records")
    log.warning("%s", damaged)
    for w in wirings:
        w.damage.append(damaged)
    return clock


async def run_agent(options: AgentOptions, stop: asyncio.Event | None = None) -> None:
    """Run every node until ``stop`` is set (or SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    raise_open_file_limit()
    # Node commits wait on fsync in worker threads: more of them than the default
    # (cores + 4) lets many nodes reconfigure at once.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=COMMIT_THREADS,
                                                 thread_name_prefix="node-commit"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    kube = await Kube.connect(options.kubeconfig, connections=API_CONNECTIONS)
    sockets = runtime_dir(options.state_dir)
    wirings = [wire_node(kube, options, name, sockets, index)
               for index, name in enumerate(node_names(options))]
    predictor = predictor_for(system(options.kind).gpu)
    clock = await agent_clock(kube, options, wirings)
    book = ActivityBook()
    gpu = system(options.kind).gpu
    agent = NodeAgent.build(kube, [w.controller for w in wirings], clock, predictor,
                            PodActivities(book, activity_estimator(gpu)),
                            damage={w.sim.name: w.damage for w in wirings},
                            claims={w.sim.name: w.claims for w in wirings if w.claims})
    endpoint = NodeEndpoint({w.sim.name: w.sim for w in wirings}, predictor,
                            options.time_scale)
    try:
        await endpoint.serve(endpoint_socket(sockets))
        if options.metrics_port is not None:
            serve_metrics(DcgmCollector({w.sim.name: w.sim for w in wirings}, book),
                          "127.0.0.1", options.metrics_port, WatchLiveness(agent.live))
        if options.dra is not None:
            await ensure_device_classes(kube)
        for w in wirings:
            await _start_node(w)
        await _wait_registered(wirings)
        await agent.start()
        for w in wirings:
            if w.dra is not None:  # the Node exists now: its slices can be published
                w.dra.inventory_changed()
        settle_heap()
        log.info("%d nodes up", len(wirings))
        print(f"node agent ready: {len(wirings)} nodes", flush=True)
        await stop.wait()
    finally:
        await endpoint.close()
        await agent.stop()
        for w in wirings:
            await _stop_node(w)
        await kube.close()
        shutil.rmtree(sockets, ignore_errors=True)


async def _start_node(w: NodeWiring) -> None:
    """The node's kubelet side and its device plugin or DRA plugin."""
    await w.devices.start()
    if w.plugin is not None:
        await w.plugin.start()
        w.follower = asyncio.create_task(feed_from(w.sim, w.feed))
    if w.dra is not None and w.claims is not None:
        await w.dra.start()
        await w.claims.start()
        w.follower = asyncio.create_task(follow_for_dra(w.sim, w.dra))
    w.unfollow_file = follow_state_file(w.sim, dir_watcher())


async def _stop_node(w: NodeWiring) -> None:
    if w.follower is not None:
        w.follower.cancel()
    if w.unfollow_file is not None:
        w.unfollow_file()
    if w.plugin is not None:
        await w.plugin.stop()
    if w.claims is not None:
        await w.claims.stop()
    if w.dra is not None:
        await w.dra.stop()
    await w.devices.stop()


async def _wait_registered(wirings: list[NodeWiring], timeout_s: float = 30.0) -> None:
    """Wait until each node's device manager has heard every advertised resource once."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    for w in wirings:
        if w.plugin is None:
            if w.claims is not None and w.claims.stub is None:
                raise TimeoutError(f"{w.sim.name}: the DRA plugin did not register")
            continue
        while set(w.devices.endpoints) != set(w.plugin.servers) or not all(
                e.first_list.is_set() for e in w.devices.endpoints.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{w.sim.name}: device plugins did not register in time")
            await asyncio.sleep(0.01)
