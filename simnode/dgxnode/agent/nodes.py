"""One simulated node's side of the API server: its Node object, Lease and MIG label protocol.

A :class:`NodeController` keeps the Node object true to the node: labels as
gpu-feature-discovery writes them, the inventory annotation the operator
reads, capacity and allocatable from the device plugins' ListAndWatch (through
the device manager) plus cpu, memory and pods from the hardware. It renews the
node's Lease every 10 s as the kubelet does. In the role of NVIDIA's
mig-manager it answers the ``nvidia.com/mig.config`` label: state ``pending``,
then the per-GPU plan through the MIG engine (``rebooting`` while a GPU resets
into or out of MIG mode), then ``success``, or ``failed`` with an event that
names what blocked it. Under a real kubelet the devices it assigned count as held
(:mod:`dgxnode.holdings`), read from the kubelet just before each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dgxnode.agent.errors import AgentError
from dgxnode.agent.kube import Kube
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.agent.objects import attestation_condition, node_object, node_status
from dgxnode.errors import ApplyBlockedError, SimnodeError
from dgxnode.holdings import KubeletHoldings
from dgxnode.node import SimNode
from dgxnode.publishing import Published
from dgxnode.state import LayoutKey
from gpumodel.inventory import NodeInventory
from gpumodel.labels import gfd_labels, label_patch, security_labels
from gpumodel.migparted import MigPartedConfig, parse_mig_parted_config
from gpumodel.vocabulary import (
    INVENTORY_ANNOTATION,
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_CONFIGMAP_KEY,
    MIG_CONFIGMAP_NAME,
    SYSTEM_NAMESPACE,
    UNTRUSTED_TAINT,
    MigStrategy,
)
from kubewire import InvalidError, or_none

log = logging.getLogger(__name__)
JSON = dict[str, Any]
LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
LEASE_JITTER = 0.04
"""The kubelet renews its Lease every quarter of its duration with this jitter; the first
renewal after registration comes at a random point of the period, so a thousand nodes
started together do not renew in the same instant."""
STATUS_HEARTBEAT_S = 300.0
"""An unchanged node status is reported this often, as the kubelet's
nodeStatusReportFrequency (5 min); the Lease says the node is alive meanwhile."""
OWNERS_REPORT_S = 10.0
"""Under a real kubelet, which pod holds which device changes with every pod: a change of
owners alone goes into the inventory annotation at most this often per node (the
kubelet's nodeStatusUpdateFrequency); a layout, label or status change goes at once.
Readers of owners (the operator) count pods bound to the node meanwhile. Kubelet-less
the annotation carries no owners: each pod's ``dgxsim.io/devices`` says what it holds."""
DEBOUNCE_S = 0.1
"""Changes within this time go out as one Node update: a burst of pod admissions
rewrites the inventory annotation once, not once per pod."""
READVERTISE_TIMEOUT_S = 10.0
APPLY_CONCURRENCY = 32
"""MIG reconfigurations in flight at once across the nodes of one agent: a relabel of
every node proceeds in parallel, bounded so a thousand nodes do not queue a thousand
commits on the worker threads at the same moment."""

Advertised = Callable[[NodeInventory], dict[str, int]]
"""What the node's device plugins advertise for an inventory: count per resource."""


@functools.lru_cache(maxsize=8)
def _parsed(text: str, where: str) -> MigPartedConfig:
    """A mig-parted ConfigMap's configs, parsed once per content (a relabel of every node
    reads the same ConfigMap a thousand times; the parsed configs are immutable)."""
    return parse_mig_parted_config(text, where)


@dataclass
class NodeController:
    """The API-server side of one simulated node."""

    kube: Kube
    sim: SimNode
    devices: DeviceManager | None
    """The simulated kubelet's device manager; None under a real kubelet (kind mode),
    which then owns the Node's status and Lease while this controller keeps to
    labels, the inventory annotation and the MIG label protocol."""
    strategy: MigStrategy
    initial_mig_config: str | None = None
    initial_labels: dict[str, str] = field(default_factory=dict)
    """Labels the Node gets when this controller creates it (its leaf switch); like the
    initial MIG config, the cluster's admins may change them afterwards."""
    advertised: Advertised | None = None
    """Set where the plugins' strategy is known: a MIG change then reaches ``success``
    only once the device manager holds the re-advertised devices, so capacity and
    allocatable are current when the label says the layout is in place."""
    config_namespace: str = SYSTEM_NAMESPACE
    """Namespace of the mig-parted ConfigMap (an installed chart's release namespace)."""
    holdings: KubeletHoldings | None = None
    """Under a real kubelet: the devices it assigned, asked again before every MIG change
    so the change sees each pod's devices as held (None: the node's own records only)."""
    uid: str | None = None
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _other_change: bool = True
    """Something besides the node's own state changed since the last update (the Node
    as watched, the plugins' devices, a timer, a failed update): the next update
    looks at everything, not only at the state."""
    _synced_key: LayoutKey | None = None
    """The layout of the state the last update looked at."""
    _sent_resources: tuple[dict[str, int], dict[str, int], str | None] | None = None
    """Capacity, allocatable and attestation failure as last reported (None: report)."""
    _sent_conditions: dict[str, str] = field(default_factory=dict)
    """Condition type -> status, as this node last reported them."""
    _resend: bool = False
    """Another writer changed those conditions: the next update reports them again."""
    _labels: dict[str, str] = field(default_factory=dict)
    _annotation: str | None = None
    _sent_layout: LayoutKey | None = None
    """The layout of the inventory last sent (all of it but owners and generation)."""
    _labels_for: tuple[LayoutKey, dict[str, str]] | None = None
    """The labels of the last layout: they do not change with owners."""
    _owners_sent: float = 0.0
    _owners_timer: asyncio.TimerHandle | None = None
    _applying: asyncio.Lock = field(default_factory=asyncio.Lock)
    _readvertising: bool = False
    _taints: list[JSON] = field(default_factory=list)
    _sent_attestation: str | None = None
    """The attestation condition last sent (kind mode sends it on its own)."""
    _refused: JSON | None = None
    """The last Node update the API server refused as invalid: never sent again as is."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    apply_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """Bounds the MIG reconfigurations in flight; the agent shares one among its nodes."""
    _apply_task: asyncio.Task[None] | None = None
    _apply_wanted: str | None = None
    _advertised: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the device manager's view of the plugins' devices changes."""

    @property
    def name(self) -> str:
        return self.sim.name

    def mark_dirty(self) -> None:
        self._other_change = True
        self._dirty.set()

    def _state_committed(self) -> None:
        """The node's state changed (a commit of this process or of another)."""
        self._dirty.set()

    @property
    def _publishes_owners(self) -> bool:
        """Whether the inventory annotation names who holds each device: under a real
        kubelet (the Node is where the cluster sees them), not kubelet-less (the pods
        this node starts record their devices themselves)."""
        return self.devices is None

    def _owners_wait(self) -> bool:
        """True when nothing but owners changed since the last update and there is no
        report of them due (kubelet-less never; else its timer is set): a pod's start
        or end then costs the node nothing, however many pods come and go."""
        return (not self._other_change
                and (not self._publishes_owners or self._owners_timer is not None)
                and self.sim.state.layout_key() == self._synced_key)

    def devices_changed(self) -> None:
        """The device manager's devices changed (a plugin re-advertised)."""
        self._advertised.set()
        self.mark_dirty()

    async def start(self) -> None:
        await self._ensure_node()
        await self._sync()
        # Changes may be committed from worker threads; the flag lives on this loop.
        loop, on_loop = asyncio.get_running_loop(), threading.get_ident()

        def changed(_event: object) -> None:
            if threading.get_ident() == on_loop:
                self._state_committed()
            else:
                loop.call_soon_threadsafe(self._state_committed)

        self.sim.subscribe(changed)
        self._tasks = [asyncio.create_task(self._status_loop(), name=f"status {self.name}")]
        if self.devices is not None:
            self._tasks.append(asyncio.create_task(self._lease_loop(), name=f"lease {self.name}"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._apply_task] if self._apply_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ensure_node(self) -> None:
        node = await or_none(self.kube.read_node(self.name))
        if node is None and self.devices is None:
            raise AgentError(f"Node {self.name} does not exist; under a real kubelet the "
                             "kubelet registers it")
        if node is None:
            extra = {**self.initial_labels,
                     **({MIG_CONFIG: self.initial_mig_config} if self.initial_mig_config
                        else {})}
            body = node_object(self.sim.hardware, {**self._wanted_labels(), **extra},
                               {INVENTORY_ANNOTATION: self._inventory_json()})
            node = await self.kube.create_node(body)
            log.info("created Node %s", self.name)
        self.uid = node["metadata"]["uid"]
        self._labels = dict(node["metadata"].get("labels") or {})
        self._taints = list((node.get("spec") or {}).get("taints") or [])
        self._annotation = (node["metadata"].get("annotations") or {}).get(INVENTORY_ANNOTATION)
        self._sent_layout = None

    def _wanted_labels(self) -> dict[str, str]:
        return self._labels_of(self.sim.published())

    def _labels_of(self, now: Published) -> dict[str, str]:
        if self._labels_for is not None and self._labels_for[0] == now.layout:
            return self._labels_for[1]
        gpu = self.sim.hardware.gpus[0].device
        labels = {**gfd_labels(now.inventory, self.strategy, gpu),
                  **security_labels(now.state.kind, now.state.attestation_failure is None,
                                    now.state.drives_locked)}
        self._labels_for = (now.layout, labels)
        return labels

    def _wanted_taints(self) -> list[JSON] | None:
        """The Node's taints with the untrusted taint exactly while attestation fails;
        None when they are already so."""
        others = [t for t in self._taints if t.get("key") != UNTRUSTED_TAINT]
        failure = self.sim.state.attestation_failure
        wanted = others + ([{"key": UNTRUSTED_TAINT, "value": "attestation-failed",
                             "effect": "NoSchedule"}] if failure else [])
        return None if wanted == self._taints else wanted

    def _inventory_json(self, inventory: NodeInventory | None = None) -> str:
        """The inventory annotation's text (the current inventory unless given)."""
        inventory = self.sim.inventory() if inventory is None else inventory
        if not self._publishes_owners:
            inventory = inventory.model_copy(update={"devices": tuple(
                d.model_copy(update={"owner": None}) if d.owner else d
                for d in inventory.devices)})
        return inventory.model_dump_json(exclude_none=True)

    def _owners_only(self, layout: LayoutKey, labels: JSON, taints: list[JSON] | None
                     ) -> bool:
        """True when the inventory differs from the one sent in its owners alone and
        either the annotation names no owners (kubelet-less) or the last one went out
        less than :data:`OWNERS_REPORT_S` ago: it waits (a timer marks the node dirty
        when it is due)."""
        if labels or taints is not None or layout != self._sent_layout:
            return False
        if not self._publishes_owners:
            return True  # the annotation names no owners: nothing in it changed
        due = self._owners_sent + OWNERS_REPORT_S
        now = time.monotonic()
        if now >= due:
            return False
        if self._owners_timer is None:
            def fire() -> None:
                self._owners_timer = None
                self.mark_dirty()

            self._owners_timer = asyncio.get_running_loop().call_later(due - now, fire)
        return True

    async def _sync(self) -> None:
        """Send status, labels and the inventory annotation, where they changed.

        Kubelet-less they go in one write; under a real kubelet status goes first.
        Either way a reader who sees a new layout in the labels finds its devices in
        allocatable.
        """
        patch: JSON = {}
        self._other_change = False
        now = self.sim.published()
        current, layout = now.inventory, now.layout
        self._synced_key = layout
        labels = label_patch(self._labels, self._labels_of(now))
        state = current.mig_config_state
        if state == "success" and self._readvertising:
            state = None  # published once the plugins have re-advertised
        if state and self._labels.get(MIG_CONFIG_STATE) != state:
            labels[MIG_CONFIG_STATE] = state
        if labels:
            patch["labels"] = labels
        taints = self._wanted_taints()
        inventory = None
        if not self._owners_only(layout, labels, taints):
            inventory = self._inventory_json(current)
            if inventory != self._annotation:
                patch["annotations"] = {INVENTORY_ANNOTATION: inventory}
            else:
                self._sent_layout = layout  # the annotation already shows this layout
        body: JSON = {"metadata": patch} if patch else {}
        if taints is not None:
            body["spec"] = {"taints": taints}
        wanted = bool(body) and body != self._refused
        try:
            if wanted and self.devices is not None and taints is None:
                # Kubelet-less, the node owns its status: status, labels and annotation go
                # in one write of the status subresource (which takes metadata, as the
                # kubelet's own status patches do), so they also arrive together.
                node = await self._send_status(force=False, metadata=patch)
            else:
                await self._send_status(force=False)
                node = await self.kube.patch_node(self.name, body) if wanted else None
            if node is not None:
                self._labels = dict(node["metadata"].get("labels") or {})
                self._taints = list((node.get("spec") or {}).get("taints") or [])
                if "annotations" in patch:
                    self._annotation, self._sent_layout = inventory, layout
                    self._owners_sent = time.monotonic()
        except InvalidError as err:
            self._refused = body
            self._sent_resources = None  # what was refused with it goes again, alone
            self.mark_dirty()
            await self._refusal(err)

    async def _refusal(self, err: InvalidError) -> None:
        """The API server refused labels or status: a MIG change in flight ends ``failed``.

        Retrying an update the server calls invalid cannot succeed, so the node
        reports the server's reason (an event, the state label) and stops.
        """
        log.error("%s: the API server refused the Node update: %s", self.name, err)
        name = self.sim.state.mig_config
        node = await or_none(self.kube.read_node(self.name))
        if node is not None:
            await self.kube.event(node, "NodeUpdateRefused", str(err)[:1000], "Warning",
                                  host=self.name)
        if name and self._labels.get(MIG_CONFIG_STATE) != "failed":
            await self._fail(name)

    async def _send_status(self, force: bool, metadata: JSON | None = None) -> JSON | None:
        """Patch the Node's status where it changed (always with ``force``), carrying
        ``metadata`` (labels, annotations) in the same write; the Node if one was sent."""
        failure = self.sim.state.attestation_failure
        if self.devices is None:
            # A real kubelet owns the status: only the attestation condition is ours.
            if failure != self._sent_attestation or force or self._resend:
                attested = attestation_condition(failure)
                await self.kube.patch_node_status(self.name, {"status": {
                    "conditions": [attested]}})
                self._sent_attestation = failure
                self._sent_conditions = {attested["type"]: attested["status"]}
                self._resend = False
            return None
        capacity, allocatable = self.devices.capacity(), self.devices.allocatable()
        resources = (capacity, allocatable, failure)
        if not (force or self._resend or metadata) and self._sent_resources == resources:
            return None
        status = node_status(self.sim.hardware, capacity, allocatable,
                             attestation_failure=failure)
        node = await self.kube.patch_node_status(
            self.name, {**status, "metadata": metadata} if metadata else status)
        self._sent_resources = resources
        self._sent_conditions = {c["type"]: c["status"] for c in status["status"]["conditions"]}
        self._resend = False
        return node

    async def _status_loop(self) -> None:
        while True:
            try:
                try:
                    await asyncio.wait_for(self._dirty.wait(), timeout=STATUS_HEARTBEAT_S)
                except TimeoutError:  # nothing changed for a while: the heartbeat
                    await self._send_status(force=True)
                    continue
                await asyncio.sleep(DEBOUNCE_S)
                # A MIG change in flight reports the node once, when it ends; what
                # changes meanwhile (its commits, the plugins re-advertising) waits.
                async with self._applying:
                    self._dirty.clear()
                    if not self._owners_wait():
                        await self._sync()
            except Exception:
                log.exception("%s: status update failed; retrying", self.name)
                await asyncio.sleep(1.0)
                self.mark_dirty()

    async def _lease_loop(self) -> None:
        first = True
        while True:
            try:
                await self.kube.renew_lease(self.name, LEASE_DURATION_S, self.uid)
            except Exception:
                log.exception("%s: lease renewal failed", self.name)
            # Jitter, not secrets.
            period = LEASE_RENEW_S * (random.random() if first else  # noqa: S311
                                      random.uniform(1 - LEASE_JITTER, 1 + LEASE_JITTER))  # noqa: S311
            first = False
            await asyncio.sleep(period)

    # ------------------------------------------------------------ Node watch

    async def on_node_event(self, kind: str, node: JSON) -> None:
        """React to our Node object as seen by the watch: deletion, MIG config label."""
        if kind == "DELETED":
            log.warning("Node %s was deleted; registering it again", self.name)
            self._labels, self._annotation, self._sent_resources = {}, None, None
            await self._ensure_node()
            await self._sync()
            return
        self._labels = dict(node["metadata"].get("labels") or {})
        self._taints = list((node.get("spec") or {}).get("taints") or [])
        self._notice_overwritten_conditions(node)
        wanted = self._labels.get(MIG_CONFIG)
        if wanted and (wanted != self.sim.state.mig_config
                       or self._labels.get(MIG_CONFIG_STATE) is None):
            self._start_apply(wanted, node)
        else:
            self.mark_dirty()

    def _notice_overwritten_conditions(self, node: JSON) -> None:
        """Where the Node's conditions say other than this node last reported (the node
        lifecycle controller marks Ready ``Unknown`` when it heard nothing within its
        grace period, after an agent or API server outage), report them again with the
        next update, as the kubelet does when its status differs from the API
        server's, instead of waiting for the 5-minute heartbeat."""
        if not self._sent_conditions:
            return
        seen = {c.get("type"): c.get("status")
                for c in (node.get("status") or {}).get("conditions") or []}
        # A condition not there at all is an echo of the Node before this node's first
        # report (its creation), not a change by someone else.
        changed = sorted(kind for kind, status in self._sent_conditions.items()
                         if kind in seen and seen[kind] != status)
        if not changed:
            return
        log.info("%s: the Node's %s condition was changed by another writer; reporting "
                 "the node's own again", self.name, ", ".join(changed))
        self._sent_conditions = {}
        self._resend = True
        self.mark_dirty()

    def _start_apply(self, name: str, node: JSON) -> None:
        """Reconfigure in a task of its own, so the Node watch goes on to the next node
        (a relabel of every node runs in parallel, bounded by :attr:`apply_gate`)."""
        running = self._apply_task is not None and not self._apply_task.done()
        if running and self._apply_wanted == name:
            return
        previous = self._apply_task if running else None
        self._apply_wanted = name

        async def apply() -> None:
            if previous is not None:  # a newer label waits for the change in flight
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            try:
                async with self.apply_gate:
                    await self.apply_mig_config(name, node)
            except Exception:
                log.exception("%s: applying MIG config %s failed", self.name, name)

        self._apply_task = asyncio.create_task(apply(), name=f"mig config {self.name}")

    async def apply_mig_config(self, name: str, node: JSON) -> None:
        async with self._applying:
            if name == self.sim.state.mig_config and self.sim.state.mig_config_state in (
                    "success", "failed") and self._labels.get(MIG_CONFIG_STATE) is not None:
                return
            await self.kube.patch_node(self.name, {"metadata": {"labels": {
                MIG_CONFIG_STATE: "pending"}}})
            try:
                config = await self._load_configs()
                if self.holdings is not None:
                    await self.holdings.refresh()
                self._readvertising = True
                try:
                    # Every GPU's change is a locked, fsynced commit: off the loop.
                    plan = await asyncio.to_thread(self.sim.apply, name, config)
                    await self._await_readvertised()
                finally:
                    self._readvertising = False
                await self.kube.event(node, "MigConfigApplied", plan.describe()[:1000],
                                      host=self.name)
            except ApplyBlockedError as err:
                owners = sorted({b.owner for b in err.blockers})
                await self.kube.event(
                    node, "MigConfigBlocked",
                    f"{err}; blocking pods: {', '.join(owners)}", "Warning", host=self.name)
                await self._fail(name)
            except (SimnodeError, ValueError, KeyError) as err:
                await self.kube.event(node, "MigConfigFailed", str(err), "Warning",
                                      host=self.name)
                await self._fail(name)
            await self._sync()

    async def _await_readvertised(self) -> None:
        """Wait until the device manager's view matches what the plugins must advertise."""
        if self.devices is None or self.advertised is None:
            return
        wanted = {r: n for r, n in self.advertised(self.sim.inventory()).items() if n}
        deadline = time.monotonic() + READVERTISE_TIMEOUT_S
        while True:
            self._advertised.clear()
            held = {r: n for r, n in self.devices.capacity().items() if n}
            if held == wanted:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%s: plugins still advertise %s, expected %s after %.0f s; "
                            "reporting the layout anyway", self.name, held, wanted,
                            READVERTISE_TIMEOUT_S)
                return
            # Woken by the device manager (devices_changed), not by polling.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advertised.wait(), left)

    async def _fail(self, name: str) -> None:
        await self.kube.patch_node(self.name, {"metadata": {"labels": {
            MIG_CONFIG_STATE: "failed"}}})
        self._labels[MIG_CONFIG_STATE] = "failed"
        await asyncio.to_thread(self.sim.mark_config_failed, name)

    async def _load_configs(self) -> MigPartedConfig | None:
        """The mig-parted ConfigMap if it exists (parse errors raise), else the defaults."""
        where = f"ConfigMap {self.config_namespace}/{MIG_CONFIGMAP_NAME}"
        cm = await or_none(self.kube.read_configmap(self.config_namespace, MIG_CONFIGMAP_NAME))
        if cm is None:
            return None
        text = (cm.get("data") or {}).get(MIG_CONFIGMAP_KEY)
        if text is None:
            raise ValueError(f"{where} has no {MIG_CONFIGMAP_KEY}")
        return _parsed(text, where)
