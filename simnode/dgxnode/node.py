"""SimNode: one simulated DGX node, the facade the rest of dgxsim talks to.

It owns the node's :class:`NodeState`, applies every change through the MIG
engine, persists it (when given a :class:`NodeStore`) and tells subscribers.
Every mutating method follows the same path: build the new state from the old
one, raise a typed error if any rule says no (the old state stays), otherwise
save, swap in and publish one :class:`NodeEvent`. With a store, a mutation is a
transaction: it holds the state directory's lock and first takes in what other
processes committed (the node agent, ``dgxsim`` commands and ``nvidia-smi``
share one file), so no process writes over another's change. Readers use
:meth:`SimNode.inventory` for the published :class:`NodeInventory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from dgxnode import engine
from dgxnode.applying import execute
from dgxnode.devices import MigDevice, mig_devices
from dgxnode.errors import AllocationError, ApplyBlockedError, Blocker, GpuBusyError, MigModeError
from dgxnode.events import ChangeFeed, EventKind, NodeEvent, Subscriber
from dgxnode.planning import NodePlan, allocated_gis, plan_gpu
from dgxnode.publishing import Published, build_inventory, with_owners
from dgxnode.state import CiState, ConfigState, GiState, GpuState, NodeState, PendingApply
from dgxnode.store import LockBusyError, NodeStore
from gpumodel.gpus import device
from gpumodel.inventory import NodeInventory
from gpumodel.mig import ProfileTable, profile_table
from gpumodel.migexport import CurrentGpu
from gpumodel.migparted import GpuTarget, MigPartedConfig, default_mig_configs
from gpumodel.node import NodeHardware, build_node_hardware
from gpumodel.systems import system
from gpumodel.vocabulary import DEFAULT_NODE_KIND

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class KubeletHolding:
    """What one answer of a real kubelet changed in the node's allocations."""

    added: tuple[str, ...]
    """Devices now recorded as held (newly, or by another owner than before)."""
    released: tuple[str, ...]
    """Devices the kubelet no longer lists, released."""
    foreign: tuple[str, ...]
    """Devices the kubelet lists that the node records as allocated to someone else."""

    def describe(self) -> str:
        parts = [f"{len(self.added)} held" if self.added else "",
                 f"{len(self.released)} released" if self.released else ""]
        return "kubelet's devices: " + (", ".join(p for p in parts if p) or "unchanged")


def transaction(method: Callable[Concatenate[SimNode, P], R]
                ) -> Callable[Concatenate[SimNode, P], R]:
    """Run a mutating method under the store's lock, on the latest committed state.

    Safe from any thread: the node agent commits from worker threads (the fsync stays
    off its event loop) while the loop reads :attr:`SimNode.state`, which is replaced,
    never changed in place."""
    @functools.wraps(method)
    def locked(node: SimNode, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with node.mutex:
            if node.store is None:
                return method(node, *args, **kwargs)
            with node.store.locked():
                node.refresh()
                return method(node, *args, **kwargs)
    return locked


class SimNode:
    """One node: hardware (fixed) plus state (changing), persisted and observable."""

    def __init__(self, state: NodeState, store: NodeStore | None = None) -> None:
        self._state = state
        self._inventory: Published | None = None
        self.store = store
        self.mutex = threading.RLock()
        """Held by every change and reload, so threads never interleave them."""
        self.feed = ChangeFeed()
        self.hardware: NodeHardware = build_node_hardware(state.node, state.kind)
        gpu_kind = device(system(state.kind).gpu)
        self.table: ProfileTable | None = profile_table(gpu_kind.name) if gpu_kind.mig else None

    @classmethod
    def create(cls, name: str, kind: str = DEFAULT_NODE_KIND,
               store: NodeStore | None = None) -> SimNode:
        """A fresh node: every GPU present, MIG disabled, nothing allocated."""
        gpus = tuple(GpuState(index=slot.index) for slot in system(kind).gpus)
        node = cls(NodeState(node=name, kind=kind, gpus=gpus), store)
        if store is not None:
            store.save(node.state)
        return node

    @classmethod
    def open(cls, store: NodeStore) -> SimNode:
        """The node stored in ``store`` (typed errors if missing or corrupt)."""
        return cls(store.load(), store)

    @property
    def state(self) -> NodeState:
        return self._state

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """Hold the node's locks if they are free now, else :class:`LockBusyError`.

        Changes made inside (on this thread) take them again without waiting: the node
        agent records a pod's devices on its event loop this way (an append of one
        line), and in a worker thread only when another thread or process holds the
        node, so a wait never stalls the loop."""
        if not self.mutex.acquire(blocking=False):
            raise LockBusyError(f"node {self.name} is held by another thread")
        try:
            if self.store is None:
                yield
            else:
                with self.store.locked(wait=False):
                    yield
        finally:
            self.mutex.release()

    @property
    def name(self) -> str:
        return self._state.node

    def refresh(self) -> bool:
        """Reload from the store if another process committed since; True if it did."""
        if self.store is None:
            return False
        with self.mutex:
            if self.store.unchanged():
                return False
            stored = self.store.load()
            if stored.generation == self._state.generation:
                return False
            self._state = stored
        self.feed.publish(NodeEvent(node=self.name, generation=stored.generation, kind="init",
                                    message="reloaded from the state file"))
        return True

    # -- observation -------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(NodeEvent)`` after every committed change; returns unsubscribe."""
        return self.feed.subscribe(callback)

    def changes(self) -> tuple[asyncio.Queue[NodeEvent], Callable[[], None]]:
        """An asyncio queue of :class:`NodeEvent` for the running loop, and its unsubscribe."""
        return self.feed.queue()

    def inventory(self) -> NodeInventory:
        """The published view of the current state; built once per state (states are
        frozen and replaced on every commit), as the Node's status, labels and every
        device plugin ask for it after each change."""
        return self.published().inventory

    def published(self) -> Published:
        """The current state with its inventory and layout key (all of one state).

        A state that differs from the last one only in who holds which device (each
        pod's start and end) reuses that inventory with the owners changed."""
        state = self._state
        cached = self._inventory
        if cached is not None and cached.state is state:
            return cached
        key = state.layout_key()
        if cached is not None and cached.layout == key:
            inventory = with_owners(cached.inventory, state)
        else:
            inventory = build_inventory(self.hardware, self.table, state)
        self._inventory = Published(state, inventory, key)
        return self._inventory

    def mig_devices(self, gpu: int) -> list[MigDevice]:
        if self.table is None:
            return []
        return mig_devices(self.name, self.table, self._state.gpu(gpu))

    def _require_table(self, gpu: int, what: str) -> ProfileTable:
        if self.table is None:
            raise MigModeError(gpu, what, f"{self.hardware.gpu(gpu).product_name} does not "
                               f"support MIG")
        return self.table

    def _commit(self, state: NodeState, kind: EventKind, gpu: int | None = None,
                message: str = "", persist: bool = True) -> None:
        """Swap in ``state`` (saved first, unless ``persist`` is False: a step that the
        same transaction's next commit supersedes, which subscribers still see).

        A change of who holds which device alone (each pod's start and end) goes to
        the store's journal, one line not fsynced: the node agent rebuilds it at start
        from the device checkpoint and the pods the API server records, so a power
        loss costs nothing, and a pod's start costs the disk no rename. Every other
        change rewrites the state file, fsynced (:mod:`dgxnode.store`)."""
        state = state.model_copy(update={"generation": self._state.generation + 1})
        if self.store is not None and persist:
            self.store.save(state)
        self._state = state
        self.feed.publish(NodeEvent(node=self.name, generation=state.generation, kind=kind,
                                    gpu=gpu, message=message))

    # -- MIG mode and resets -----------------------------------------------------------
    def _gpu_allocations(self, gpu: int) -> list[Blocker]:
        found = [Blocker(gpu, b.device_id, b.profile, b.owner, b.gi_id) for items in
                 allocated_gis(self.name, self.table, self._state.gpu(gpu),
                               self._state.allocations).values() for b in items]
        uuid = self.hardware.gpu(gpu).uuid
        if uuid in self._state.allocations:
            found.append(Blocker(gpu, uuid, "GPU", self._state.allocations[uuid]))
        return found

    def _require_idle(self, gpu: int, action: str) -> None:
        busy = self._gpu_allocations(gpu)
        if busy:
            raise GpuBusyError(f"GPU {gpu}: {action} needs an idle GPU; "
                               + "; ".join(str(b).split(": ", 1)[1] for b in busy))

    @transaction
    def set_mig_mode(self, gpu: int, enabled: bool) -> bool:
        """Ask for MIG on or off; True if a GPU reset is now needed for it to take effect."""
        self._require_table(gpu, "MIG")
        self._require_idle(gpu, ("enabling" if enabled else "disabling") + " MIG mode")
        new = engine.set_mig_mode(self._state.gpu(gpu), enabled)
        self._commit(self._state.with_gpu(new), "mode", gpu,
                     f"MIG mode {'enabled' if enabled else 'disabled'} pending reset"
                     if new.reset_pending else "MIG mode unchanged")
        return new.reset_pending

    @transaction
    def reset_gpu(self, gpu: int) -> None:
        """A GPU reset (``nvidia-smi -r``): pending mode takes effect, instances are gone."""
        self._require_idle(gpu, "a GPU reset")
        self._commit(self._state.with_gpu(engine.reset(self._state.gpu(gpu))), "reset", gpu,
                     "GPU reset")

    @transaction
    def reboot(self) -> None:
        """A node reboot: containers are gone, MIG modes persist, GIs and CIs do not."""
        gpus = tuple(engine.reset(g) for g in self._state.gpus)
        self._commit(self._state.model_copy(update={"gpus": gpus, "allocations": {},
                                                    "kubelet_assigned": (), "last_xid": {}}),
                     "reset", None, "node rebooted")

    # -- GPU and compute instances -----------------------------------------------------
    def _busy_gis(self, gpu: int) -> set[int]:
        return set(allocated_gis(self.name, self.table, self._state.gpu(gpu),
                                 self._state.allocations))

    @transaction
    def create_gi(self, gpu: int, profile: str | int, start: int | None = None,
                  default_ci: bool = False) -> GiState:
        """Create a GPU instance (``nvidia-smi mig -cgi``), optionally with its default CI."""
        table = self._require_table(gpu, str(profile))
        new, gi = engine.create_gi(self._state.gpu(gpu), table, table.get(profile).name, start)
        if default_ci:
            new, _ = engine.create_ci(new, table, gi.gi_id)
            gi = new.gi(gi.gi_id) or gi
        self._commit(self._state.with_gpu(new), "mig", gpu,
                     f"created {gi.profile} (GI {gi.gi_id} at {gi.start}:{gi.size})")
        return gi

    @transaction
    def destroy_gi(self, gpu: int, gi_id: int) -> None:
        """Destroy an empty GPU instance no container holds (``-dgi``)."""
        new = engine.destroy_gi(self._state.gpu(gpu), gi_id, self._busy_gis(gpu))
        self._commit(self._state.with_gpu(new), "mig", gpu, f"destroyed GI {gi_id}")

    @transaction
    def create_ci(self, gpu: int, gi_id: int, slices: int | None = None) -> CiState:
        """Create a compute instance (``-cci``); default size is the whole GI."""
        table = self._require_table(gpu, f"GI {gi_id}")
        new, ci = engine.create_ci(self._state.gpu(gpu), table, gi_id, slices)
        self._commit(self._state.with_gpu(new), "mig", gpu,
                     f"created CI {ci.ci_id} in GI {gi_id}")
        return ci

    @transaction
    def destroy_ci(self, gpu: int, gi_id: int, ci_id: int) -> None:
        """Destroy a compute instance whose MIG device no container holds (``-dci``)."""
        ids = {(d.gi.gi_id, d.ci.ci_id): d.uuid for d in self.mig_devices(gpu)}
        busy = ids.get((gi_id, ci_id)) in self._state.allocations
        new = engine.destroy_ci(self._state.gpu(gpu), gi_id, ci_id, busy)
        self._commit(self._state.with_gpu(new), "mig", gpu, f"destroyed CI {ci_id} of GI {gi_id}")

    # -- allocations and health --------------------------------------------------------
    @transaction
    def allocate(self, device_id: str, owner: str) -> None:
        """Record that ``owner`` holds ``device_id`` (what the kubelet's Allocate means)."""
        entry = next((d for d in self.inventory().devices if d.id == device_id), None)
        if entry is None:
            raise AllocationError(f"no device {device_id} on node {self.name}")
        if not entry.usable:
            raise AllocationError(f"{device_id} (GPU {entry.gpu_index}) is in MIG mode; "
                                  f"allocate its MIG devices instead")
        if entry.owner == owner:
            return
        if entry.owner is not None:
            raise AllocationError(f"{device_id} is already allocated to {entry.owner}")
        if entry.health != "Healthy":
            raise AllocationError(f"{device_id} is unhealthy")
        allocations = {**self._state.allocations, device_id: owner}
        self._commit(self._state.model_copy(update={"allocations": allocations}), "allocation",
                     entry.gpu_index, f"{device_id} allocated to {owner}")

    @transaction
    def release(self, device_id: str) -> None:
        """Free ``device_id``; a config apply waiting on it resumes."""
        if device_id not in self._state.allocations:
            raise AllocationError(f"{device_id} is not allocated")
        allocations = {k: v for k, v in self._state.allocations.items() if k != device_id}
        assigned = tuple(d for d in self._state.kubelet_assigned if d != device_id)
        self._commit(self._state.model_copy(update={"allocations": allocations,
                                                    "kubelet_assigned": assigned}),
                     "allocation", None, f"{device_id} released")
        if self._state.pending_apply is not None:
            self._resume()

    @transaction
    def hold_for_kubelet(self, assigned: Mapping[str, str]) -> KubeletHolding:
        """Make the node's allocations agree with what a real kubelet has assigned.

        ``assigned`` is the kubelet's whole answer (device ID -> owner
        ``namespace/pod/container``). Each device it lists is recorded as allocated to
        that owner, so a MIG change that would destroy it is blocked exactly as one in
        use by a pod of the node agent; each device recorded from an earlier answer
        that the kubelet no longer lists is released, and a config apply waiting on
        it resumes. Allocations the node made itself are left alone: a device the
        kubelet lists that is already allocated to someone else is reported, not taken.
        """
        known = {d.id for d in self.inventory().devices}
        allocations = dict(self._state.allocations)
        previous = [d for d in self._state.kubelet_assigned if d in allocations]
        released = [d for d in previous if d not in assigned]
        for device_id in released:
            del allocations[device_id]
        ours = set(previous) - set(released)
        added: list[str] = []
        foreign: list[str] = []
        for device_id, owner in sorted(assigned.items()):
            if device_id not in known:
                continue  # not this node's, or gone with an earlier layout
            if device_id in ours or device_id not in allocations:
                if allocations.get(device_id) != owner:
                    added.append(device_id)
                allocations[device_id] = owner
                ours.add(device_id)
            elif allocations[device_id] == owner:
                ours.add(device_id)  # the workload itself recorded it first
            else:
                foreign.append(device_id)
        change = KubeletHolding(tuple(added), tuple(released), tuple(foreign))
        kept = tuple(sorted(ours))
        if allocations == self._state.allocations and kept == self._state.kubelet_assigned:
            return change
        self._commit(self._state.model_copy(update={"allocations": allocations,
                                                    "kubelet_assigned": kept}),
                     "allocation", None, change.describe())
        if released and self._state.pending_apply is not None:
            self._resume()
        return change

    @transaction
    def set_health(self, device_id: str, healthy: bool, xid: int | None = None) -> None:
        """Mark a device (or a whole GPU) healthy or unhealthy; both directions work.
        ``xid`` records the XID error that made it unhealthy."""
        current = set(self._state.unhealthy)
        updated = current - {device_id} if healthy else current | {device_id}
        last_xid = dict(self._state.last_xid)
        if xid is not None and not healthy:
            last_xid[device_id] = xid
        if updated != current or last_xid != self._state.last_xid:
            self._commit(self._state.model_copy(update={
                "unhealthy": tuple(sorted(updated)), "last_xid": last_xid}),
                "health", None, f"{device_id} {'healthy' if healthy else 'unhealthy'}")

    @transaction
    def set_attestation(self, failure: str | None) -> None:
        """Measured boot fails (``failure`` says why) or verifies again (None)."""
        if failure != self._state.attestation_failure:
            self._commit(self._state.model_copy(update={"attestation_failure": failure}),
                         "health", None, f"attestation {'failed: ' + failure if failure else 'ok'}")

    # -- named configs (mig-manager's role) --------------------------------------------
    def current_gpus(self) -> list[CurrentGpu]:
        """Each GPU's MIG mode and MIG devices by profile, as mig-parted ``export`` reads them."""
        return [CurrentGpu(index=g.index, pci_device_id=g.pci_device_id,
                           mig_enabled=self._state.gpu(g.index).mig_enabled,
                           devices=dict(Counter(d.profile for d in self.mig_devices(g.index))))
                for g in self.hardware.gpus]

    def targets(self, name: str, config: MigPartedConfig | None = None) -> dict[int, GpuTarget]:
        gpus = [(g.index, g.pci_device_id) for g in self.hardware.gpus]
        return (config or default_mig_configs()).targets(name, gpus)

    def plan(self, name: str, config: MigPartedConfig | None = None,
             targets: dict[int, GpuTarget] | None = None) -> NodePlan:
        """The per-GPU plan for applying config ``name`` now (nothing changes)."""
        chosen = self.targets(name, config) if targets is None else targets
        return NodePlan(config=name, gpus=tuple(
            plan_gpu(self.name, self.table, g, chosen.get(g.index), self._state.allocations,
                     self.hardware.gpu(g.index).uuid, name) for g in self._state.gpus))

    @transaction
    def apply(self, name: str, config: MigPartedConfig | None = None,
              wait: bool = False) -> NodePlan:
        """Apply config ``name``: all GPUs change together or none does.

        If allocations block some GPUs, raise :class:`ApplyBlockedError` naming
        them (nothing changes) or, with ``wait``, apply the others and finish the
        blocked ones as their allocations are released (state ``pending``).
        """
        targets = self.targets(name, config)
        plan = self.plan(name, targets=targets)
        if plan.blocked and not wait:
            self._set_config_state(name, "failed", None)
            blockers = [Blocker(p.gpu, b.device_id, b.profile, b.owner, b.gi_id)
                        for p in plan.blocked for b in p.blockers]
            raise ApplyBlockedError(name, blockers, [f"GPU {p.gpu}: {p.reason}"
                                                     for p in plan.blocked])
        # Within one transaction: the steps before the outcome are published, and only
        # the outcome is written (no other process can read the file in between).
        saved = self._state
        self._set_config_state(name, "pending", None, persist=False)
        try:
            self._execute(plan, targets)
        except BaseException:
            if self.store is not None:  # back to what the file holds
                self._commit(saved, "init", None, "MIG config not applied", persist=False)
            raise
        return plan

    @transaction
    def mark_config_failed(self, name: str) -> None:
        """Record that config ``name`` could not be applied (e.g. the config file is bad)."""
        if (self._state.mig_config, self._state.mig_config_state) != (name, "failed"):
            self._set_config_state(name, "failed", None)

    def _set_config_state(self, name: str, state: ConfigState,
                          pending: PendingApply | None, persist: bool = True) -> None:
        update = {"mig_config": name, "mig_config_state": state, "pending_apply": pending}
        self._commit(self._state.model_copy(update=update), "config", None,
                     f"MIG config {name}: {state}", persist)

    def _execute(self, plan: NodePlan, targets: dict[int, GpuTarget]) -> None:
        if any(p.mode for p in plan.gpus if p.action == "reconfigure"):
            self._set_config_state(plan.config, "rebooting", None, persist=False)
        new = self._state
        for gpu_plan in plan.gpus:
            target = targets.get(gpu_plan.gpu)
            if gpu_plan.action == "reconfigure" and target is not None:
                new = new.with_gpu(execute(gpu_plan, new.gpu(gpu_plan.gpu), self.table,
                                           target.mig_enabled))
        blocked = {p.gpu: targets[p.gpu] for p in plan.blocked}
        pending = PendingApply(config=plan.config, targets=blocked) if blocked else None
        self._commit(new.model_copy(update={
            "mig_config": plan.config, "mig_config_state": "pending" if blocked else "success",
            "pending_apply": pending}), "config", None, plan.describe())

    def _resume(self) -> None:
        pending = self._state.pending_apply
        if pending is None:
            return
        plan = self.plan(pending.config, targets=pending.targets)
        if len(plan.blocked) < len(pending.targets):
            self._execute(plan, pending.targets)
