"""Replaying a planned trace against the running cluster, on its simulated clock.

The driver uses the node agent's own clock (its epoch is in the cluster's
state directory), so a pod created at simulated second *t* of the replay is
stamped *t* on the clock the agent stamps its start and finish with. Two
tasks share the event loop: one creates pods at their arrival times, one
samples the cluster every ``poll_s`` wall seconds (:mod:`.snapshot`), prints a
progress line every ``progress_s`` and decides when the replay is over.

It is over once every pod was created and none is bound and unfinished: at
once when nothing waits, else when the waiting pods have made no progress (no
pod bound, started or finished, no node reconfiguring its MIG layout) for
``stall_s`` wall seconds; those are reported unschedulable with the
scheduler's reason. The dynamic policy's operator carves on a delay, so the
stall window must be longer than its damping (seconds, not minutes).

Before the replay the nodes are put under the policy (:func:`apply_policy`);
after it the replay's pods are deleted, so that a second replay (the other
policy) starts from an idle cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dgxnode.clock import Clock
from dgxsim.replay.plan import PlannedPod
from dgxsim.replay.report import PodOutcome, outcome_of
from dgxsim.replay.snapshot import Sample, is_active, node_of, take_sample
from gpumodel.vocabulary import (
    DURATION_ANNOTATION,
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_POLICY,
    NODE_LABEL,
)
from kubewire import ConflictError, KubeClient, KubeError

JSON = dict[str, Any]
Policy = Literal["static", "dynamic"]
REPLAY_LABEL = "dgxsim.io/replay"
"""On the replay's pods: the trace they came from."""
IMAGE = "dgxsim:dev"
UNPARTITIONED = "all-disabled"
"""The layout the dynamic policy starts from: whole GPUs, MIG carved on demand."""


class ReplayError(Exception):
    """The cluster cannot run this replay (nodes missing, a layout failing to apply...)."""


@dataclass(slots=True)
class ReplayOptions:
    namespace: str
    policy: Policy
    mig_config: str | None
    label: str
    poll_s: float = 0.5
    progress_s: float = 5.0
    stall_s: float = 30.0
    prepare_timeout_s: float = 300.0


@dataclass(slots=True)
class ReplayResult:
    outcomes: list[PodOutcome]
    samples: list[Sample]


def pod_body(pod: PlannedPod, namespace: str, label: str) -> JSON:
    """The Pod a planned pod becomes (its run time in the duration annotation)."""
    assert pod.resource is not None, "CPU-only pods are not created"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": namespace, "labels": {REPLAY_LABEL: label},
                     "annotations": {DURATION_ANNOTATION: f"{pod.duration_s:.3f}"}},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "nodeSelector": {NODE_LABEL: "true"},
            "containers": [{"name": "main", "image": IMAGE, "resources": {
                "requests": {"cpu": f"{pod.cpu_milli}m", "memory": f"{pod.memory_mib}Mi"},
                "limits": {pod.resource: str(pod.count)}}}]},
    }


def policy_labels(policy: Policy, mig_config: str | None) -> tuple[JSON, JSON | None]:
    """The node labels that set a layout (first patch) and then the policy (second)."""
    if policy == "static":
        if not mig_config:
            raise ReplayError("the static policy needs a MIG config (--mig-config NAME)")
        return {MIG_POLICY: None, MIG_CONFIG: mig_config, MIG_CONFIG_STATE: "pending"}, None
    start = mig_config or UNPARTITIONED
    return ({MIG_POLICY: None, MIG_CONFIG: start, MIG_CONFIG_STATE: "pending"},
            {MIG_POLICY: "dynamic"})


async def dgx_node_names(kube: KubeClient) -> list[str]:
    nodes = (await kube.list_nodes(label_selector=f"{NODE_LABEL}=true")).items
    return sorted(n["metadata"]["name"] for n in nodes)


async def apply_policy(kube: KubeClient, policy: Policy, mig_config: str | None,
                       timeout_s: float, say: Callable[[str], None]) -> None:
    """Label every DGX node for the policy and wait for its layout to be applied.

    The state label is set to ``pending`` in the same patch as the config, so a
    ``success`` read afterwards is the node agent's answer to this config."""
    names = await dgx_node_names(kube)
    if not names:
        raise ReplayError("the cluster has no DGX nodes (dgxsim up --nodes N)")
    layout, then = policy_labels(policy, mig_config)
    say(f"labelling {len(names)} nodes {MIG_CONFIG}={layout[MIG_CONFIG]} and waiting for "
        f"{MIG_CONFIG_STATE}=success")
    for name in names:
        await kube.patch_node(name, {"metadata": {"labels": layout}})
    await _await_layouts(kube, names, timeout_s)
    if then is not None:
        for name in names:
            await kube.patch_node(name, {"metadata": {"labels": then}})
        say(f"labelled {len(names)} nodes {MIG_POLICY}=dynamic")


async def _await_layouts(kube: KubeClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = (await kube.list_nodes(label_selector=f"{NODE_LABEL}=true")).items
        states = {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(MIG_CONFIG_STATE)
                  for n in nodes}
        failed = sorted(n for n in names if states.get(n) == "failed")
        if failed:
            raise ReplayError(f"the MIG config failed to apply on {', '.join(failed)} "
                              "(kubectl describe node: MigConfig events)")
        if all(states.get(n) == "success" for n in names):
            return
        if time.monotonic() > deadline:
            waiting = sorted(n for n in names if states.get(n) != "success")
            raise ReplayError(f"MIG config not applied after {timeout_s:.0f} s on "
                              f"{', '.join(waiting)}")
        await asyncio.sleep(0.5)


async def ensure_namespace(kube: KubeClient, namespace: str) -> None:
    """Create the namespace; refuse one that still holds pods of an earlier replay."""
    try:
        await kube.create_namespace(namespace)
    except ConflictError:
        left = (await kube.list_pods(namespace=namespace,
                                     label_selector=REPLAY_LABEL)).items
        if left:
            raise ReplayError(f"namespace {namespace} still holds {len(left)} replay pods; "
                              f"delete them or pass another --namespace") from None


@dataclass(slots=True)
class _State:
    created: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    pods: dict[str, JSON] = field(default_factory=dict)
    fingerprint: tuple[object, ...] = ()
    changed_wall: float = field(default_factory=time.monotonic)


def _unschedulable(pod: JSON) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions") or [])


class Replayer:
    """One replay of planned pods on the cluster ``kube`` reaches, on ``clock``."""

    def __init__(self, kube: KubeClient, clock: Clock, pods: list[PlannedPod],
                 options: ReplayOptions, *, gpus_per_node: int, slices_per_gpu: int,
                 say: Callable[[str], None]) -> None:
        self.kube, self.clock, self.pods, self.options = kube, clock, pods, options
        self.gpus_per_node, self.slices_per_gpu, self.say = gpus_per_node, slices_per_gpu, say
        self.state = _State()
        self.origin = 0.0

    def now(self) -> float:
        """Simulated seconds since the replay began."""
        return round(self.clock.now() - self.origin, 3)

    async def run(self) -> ReplayResult:
        """Create, watch until over, read the outcomes, delete the pods."""
        self.origin = self.clock.now()
        creator = asyncio.create_task(self._create_all())
        try:
            await self._monitor(creator)
        finally:
            creator.cancel()
            await asyncio.gather(creator, return_exceptions=True)
        outcomes = [outcome_of(p, self.state.pods.get(p.name), self.state.created.get(p.name),
                               self.origin, self.state.errors.get(p.name)) for p in self.pods]
        await self._clean_up()
        return ReplayResult(outcomes, self.state.samples)

    async def _create_all(self) -> None:
        for pod in self.pods:
            if pod.skipped:
                continue
            await self.clock.sleep_until(self.origin + pod.submit_s)
            body = pod_body(pod, self.options.namespace, self.options.label)
            try:
                await self.kube.create_pod(self.options.namespace, body)
            except KubeError as err:
                self.state.errors[pod.name] = f"not created: {err}"
                continue
            self.state.created[pod.name] = self.now()

    async def _monitor(self, creator: asyncio.Task[None]) -> None:
        shown = float("-inf")
        while True:
            nodes = (await self.kube.list_nodes()).items
            pods = (await self.kube.list_pods()).items
            self._record(nodes, pods)
            if time.monotonic() - shown >= self.options.progress_s:
                self.say(self.progress_line())
                shown = time.monotonic()
            if creator.done():
                creator.result()  # a failure of the creator is the replay's failure
                if self._over():
                    self.say(self.progress_line())
                    return
            await asyncio.sleep(self.options.poll_s)

    def _record(self, nodes: list[JSON], pods: list[JSON]) -> None:
        ns, label = self.options.namespace, self.options.label
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("namespace") == ns and (meta.get("labels") or {}).get(
                    REPLAY_LABEL) == label:
                self.state.pods[meta["name"]] = pod
        self.state.samples.append(take_sample(self.now(), nodes, pods, self.gpus_per_node,
                                              self.slices_per_gpu))
        fingerprint = (
            tuple(sorted((n, p.get("status", {}).get("phase"), node_of(p))
                         for n, p in self.state.pods.items())),
            tuple(sorted((n["metadata"].get("labels") or {}).get(MIG_CONFIG_STATE, "")
                         + (n["metadata"].get("labels") or {}).get(MIG_CONFIG, "")
                         for n in nodes)))
        if fingerprint != self.state.fingerprint:
            self.state.fingerprint, self.state.changed_wall = fingerprint, time.monotonic()

    def _active(self) -> list[JSON]:
        return [p for name in self.state.created
                if (p := self.state.pods.get(name)) is not None and is_active(p)]

    def _over(self) -> bool:
        """All created, none bound and unfinished, and any waiting ones stalled."""
        if any(self.state.pods.get(name) is None for name in self.state.created):
            return False  # created but not yet listed
        active = self._active()
        if any(node_of(p) is not None for p in active):
            return False
        stalled = time.monotonic() - self.state.changed_wall >= self.options.stall_s
        return not active or stalled

    def progress_line(self) -> str:
        """created / running / succeeded / failed / pending (unschedulable) and allocation."""
        pods = [self.state.pods[n] for n in self.state.created if n in self.state.pods]
        phases = [p.get("status", {}).get("phase") for p in pods]
        active = self._active()
        waiting = [p for p in active if node_of(p) is None]
        alloc = self.state.samples[-1].allocation_ratio if self.state.samples else 0.0
        total = sum(1 for p in self.pods if not p.skipped)
        return (f"[{self.options.policy}] t={self.now():8.1f}s  created {len(self.state.created)}"
                f"/{total}  running {len(active) - len(waiting)}  succeeded "
                f"{phases.count('Succeeded')}  failed {phases.count('Failed')}  pending "
                f"{len(waiting)}  unschedulable {sum(map(_unschedulable, waiting))}  "
                f"GPU allocation {alloc:.0%}")

    async def _clean_up(self) -> None:
        """Delete the replay's pods, so the cluster is idle for the next replay."""
        for name in self.state.created:
            try:
                await self.kube.delete_pod(self.options.namespace, name, grace_period_s=0,
                                           missing_ok=True)
            except KubeError as err:
                self.say(f"could not delete pod {self.options.namespace}/{name}: {err}")
