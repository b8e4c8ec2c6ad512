"""DGXJobs: admit (validate and predict), place as a gang, bind, follow to the end.

Placement is crash-safe by construction:

1. the chosen nodes are written to ``status.placement`` (phase ``Placing``)
   before any pod exists; that record is the reservation;
2. the pods get deterministic names (``<job>-r<i>``), ``schedulerName``
   ``dgxsim-scheduler`` (nothing else binds them) and an owner reference to
   the job; creating one that exists returns the existing one;
3. each pod is bound to its recorded node through the Binding API; one
   already bound there is left alone;
4. the phase becomes ``Scheduled``.

An operator that stops anywhere in between finds the job in ``Placing`` at
start and finishes steps 2-4 for the recorded nodes, so no replica is ever
placed twice. If a bind is refused (the node went away, the pod was bound
elsewhere), every pod of the job is deleted and the job goes back to
``Pending``: all replicas or none. The same happens when a node refuses a
replica at admission (``UnexpectedAdmissionError``, ``OutOf<resource>``: its
devices went to another pod between the placement and the kubelet's
admission), up to ``max_requeues`` times before the job fails. A job that went
back is placed again once the pods of the earlier placement are gone, by a
small loop that retries while such jobs wait. A job whose replica fails or
disappears once running is Failed, and its other replicas are stopped. One
lock serialises placement rounds and status updates, so two jobs never get
the same devices.

A job that claims its devices through DRA (``allocation: DRA``) is placed the
same way on DRA nodes, counted from their ResourceSlices and the allocated
ResourceClaims; its pods claim from a ResourceClaimTemplate the operator
writes (:mod:`migoperator.apply.claims`) and are pinned to their nodes rather
than bound, so that kube-scheduler allocates each claim on the chosen node.
Until a replica's pod is bound, its devices count as promised. A replica whose
claims kube-scheduler cannot allocate on its node is treated as a refusal at
admission: the gang goes back to Pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gpumodel.errors import GpuModelError
from gpumodel.mig import MigProfile, profile_table
from gpumodel.vocabulary import (
    DURATION_ANNOTATION,
    JOB_LABEL,
    QUEUE_LABEL,
    REPLICA_LABEL,
    WORKLOAD_ANNOTATION,
)
from kubewire import ConflictError, KubeError, UnavailableError
from migoperator.apply.claims import claim_pod, claim_template
from migoperator.apply.kube import Kube, now_rfc3339
from migoperator.errors import InvalidJobError, NotReadyError
from migoperator.metrics import Metrics
from migoperator.models import (
    GROUP,
    KIND,
    VERSION,
    DGXJobSpec,
    DGXJobStatus,
    ReplicaPlacement,
    job_key,
    pod_name,
)
from migoperator.planning.dra_pools import DraPool, dra_key, dra_pools
from migoperator.planning.job_placer import (
    Placement,
    job_request_of,
    node_capacities,
    place_jobs,
)
from migoperator.planning.prediction import Estimate, estimate, human
from migoperator.planning.views import (
    group_pods_by_node,
    job_admitted,
    job_phase,
    job_spec,
    node_view,
    timestamp,
)
from migoperator.settings import OperatorSettings

log = logging.getLogger(__name__)
JSON = dict[str, Any]
MIG_GPU_KINDS = ("a100-40gb", "a100-80gb")
DEFAULT_GPU = "a100-40gb"
TERMINAL = ("Succeeded", "Failed")
SYNC_PATIENCE_S = 120.0
"""How long a job's sync is retried while the API server does not answer."""
SYNC_RETRY_S, SYNC_RETRY_MAX_S = 0.25, 2.0
ADMISSION_REFUSED = "UnexpectedAdmissionError"
"""The reason a kubelet gives a pod it refuses because device allocation failed."""
TERMINATING = "the pods of an earlier placement are still terminating"
CLAIMS_REFUSED = "cannot allocate all claims"
"""kube-scheduler's words when a pod's ResourceClaims cannot be allocated on a node."""


def check_profile(spec: DGXJobSpec) -> None:
    """A MIG profile must exist on some MIG-capable GPU kind."""
    if spec.mig_profile is None:
        return
    gi = str(MigProfile.parse(spec.mig_profile).gpu_instance)
    for kind in MIG_GPU_KINDS:
        try:
            profile_table(kind).get(gi)
            return
        except GpuModelError:
            continue
    names = sorted({n for k in MIG_GPU_KINDS for n in profile_table(k).names()})
    raise InvalidJobError(f"no MIG profile {spec.mig_profile!r} on A100 GPUs; known: "
                          f"{', '.join(names)}", "UnknownMigProfile")


def spec_problem(err: ValidationError) -> str:
    """The first problem of a spec, named by the field as the resource spells it
    (``spec.durationSeconds: Input should be ...``)."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"spec.{where}: {first['msg']}" if where else f"spec: {first['msg']}"


def pod_body(job: JSON, spec: DGXJobSpec, placed: ReplicaPlacement, seconds: float,
             scheduler: str) -> JSON:
    """A replica's pod: bound by the operator to its node, or, for a DRA job, pinned to it
    and claiming from the job's ResourceClaimTemplate."""
    meta = job["metadata"]
    labels = {JOB_LABEL: meta["name"], REPLICA_LABEL: str(placed.replica)}
    if spec.queue:
        labels[QUEUE_LABEL] = spec.queue
    workload = {"workload": spec.workload, "steps": spec.steps, "precision": spec.precision,
                "params": spec.parameters}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": placed.pod, "namespace": meta["namespace"], "labels": labels,
            "annotations": {DURATION_ANNOTATION: f"{seconds:.3f}",
                            WORKLOAD_ANNOTATION: json.dumps(workload, sort_keys=True)},
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "schedulerName": scheduler, "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": "dgxsim/workload:latest",
                "args": ["dgxsim", "workload"],
                "env": [{"name": "DGXSIM_JOB", "value": meta["name"]},
                        {"name": "DGXSIM_REPLICA", "value": str(placed.replica)},
                        {"name": "DGXSIM_REPLICAS", "value": str(spec.replicas)}],
                "resources": {"limits": {spec.resource: str(spec.per_replica)}},
            }],
        },
    }
    return claim_pod(pod, job, placed.node) if spec.allocation == "DRA" else pod


def status_patch(**fields: Any) -> JSON:
    """A status merge patch from model field names (validated, camelCase)."""
    status = DGXJobStatus.model_validate(fields)
    aliases = {f.alias: name for name, f in DGXJobStatus.model_fields.items() if f.alias}
    names = {aliases.get(k, k) for k in fields}
    return status.model_dump(mode="json", by_alias=True, include=names)


@dataclass
class JobController:
    kube: Kube
    settings: OperatorSettings
    metrics: Metrics
    on_change: Callable[[], None] = lambda: None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _requeued: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------ admission

    async def admit(self, job: JSON) -> DGXJobSpec | None:
        """Validate and predict a job once; None if it has finished already.

        An invalid job is marked Failed with the reason and raises InvalidJobError.
        """
        if job_phase(job) in TERMINAL:
            return None
        try:
            spec = DGXJobSpec.model_validate(job.get("spec") or {})
            if job_admitted(job):
                return spec
            check_profile(spec)
            guess = estimate(spec, DEFAULT_GPU)
        except ValidationError as err:
            await self._fail(job, InvalidJobError(spec_problem(err)))
            raise InvalidJobError(spec_problem(err)) from err
        except InvalidJobError as err:
            await self._fail(job, err)
            raise
        meta = job["metadata"]
        await self.kube.patch_job_status(meta["namespace"], meta["name"], status_patch(
            phase="Pending", reason="WaitingForCapacity", gpus=spec.gpus_text(),
            predictedSeconds=guess.seconds, predicted=human(guess.seconds),
            predictionSource=guess.source, observedGeneration=meta.get("generation"),
            message=f"waiting for {spec.gpus_text()} {spec.devices}"))
        self.on_change()
        return spec

    async def _fail(self, job: JSON, err: InvalidJobError) -> None:
        meta = job["metadata"]
        await self.kube.patch_job_status(meta["namespace"], meta["name"], status_patch(
            phase="Failed", reason=err.reason, message=str(err),
            completionTime=now_rfc3339()))
        await self.kube.event({**job, "kind": KIND, "apiVersion": f"{GROUP}/{VERSION}"},
                              err.reason, str(err), "Warning")

    # ------------------------------------------------------------ placement

    async def place(self, namespace: str, name: str) -> None:
        """One placement round for every waiting job; NotReadyError if this one waits."""
        async with self._lock:
            started, outcome = time.monotonic(), "error"
            try:
                waiting = await self._round()
                reason = waiting.get(job_key(namespace, name))
                outcome = "waiting" if reason else "placed"
                if reason:
                    raise NotReadyError(reason, self.settings.placement.retry_delay_s)
            finally:
                self.metrics.reconciled("placement", outcome, time.monotonic() - started)

    async def _round(self) -> dict[str, str]:
        jobs = await self.kube.list_jobs()
        for job in jobs:
            if job_phase(job) == "Placing":
                await self._confined(job, self._resume(job))
        jobs = await self.kube.list_jobs()
        self.metrics.jobs = dict(Counter(job_phase(j) or "New" for j in jobs))
        nodes, pods = (await self.kube.list_nodes()).items, (await self.kube.list_pods()).items
        by_node = group_pods_by_node(pods)
        leaf = self.settings.placement.leaf_label
        views = [node_view(n, by_node.get(n["metadata"]["name"], []), leaf) for n in nodes]
        waiting_jobs = {job_key(j["metadata"]["namespace"], j["metadata"]["name"]): j
                        for j in jobs if job_phase(j) == "Pending" and job_admitted(j)
                        and await self._still_valid(j)}
        leftovers = {job_key(p["metadata"]["namespace"], p["metadata"]["labels"][JOB_LABEL])
                     for p in pods if JOB_LABEL in (p["metadata"].get("labels") or {})}
        waiting = dict.fromkeys(leftovers & waiting_jobs.keys(), TERMINATING)
        requests = [job_request_of(key, DGXJobSpec.model_validate(j["spec"]),
                                   timestamp(j["metadata"].get("creationTimestamp")))
                    for key, j in waiting_jobs.items() if key not in waiting]
        pools: dict[str, DraPool] = {}
        promised: list[tuple[str, str, int]] = []
        if any(r.dra for r in requests):
            pools = dra_pools((await self.kube.list_resource_slices()).items,
                              (await self.kube.list_resource_claims()).items)
            promised = promised_dra_devices(jobs, pods)
        devices = {v.name: v.device or DEFAULT_GPU for v in views}
        for result in place_jobs(requests, node_capacities(views, pools, promised)):
            if isinstance(result, Placement):
                job = waiting_jobs[result.key]
                if not await self._confined(job, self._commit(job, result, devices)):
                    waiting[result.key] = "its placement failed; trying again"
            else:
                waiting[result.key] = result.reason
                await self._confined(waiting_jobs[result.key],
                                     self._note_waiting(waiting_jobs[result.key], result.reason))
        return waiting

    async def _note_waiting(self, job: JSON, why: str) -> None:
        """Say in the job's status why its gang does not fit (when that changed)."""
        if (job.get("status") or {}).get("message") != why:
            await self._status(job, status_patch(message=why))

    async def _still_valid(self, job: JSON) -> bool:
        """Whether an admitted job's spec still parses; one edited into an invalid spec
        is marked Failed with the reason, and the others are placed without it."""
        try:
            DGXJobSpec.model_validate(job.get("spec") or {})
        except ValidationError as err:
            await self._fail(job, InvalidJobError(f"edited spec is invalid: "
                                                  f"{spec_problem(err)}"))
            return False
        return True

    async def _confined(self, job: JSON, step: Awaitable[None]) -> bool:
        """Run one job's step; its failure is logged and stays with that job."""
        meta = job["metadata"]
        try:
            await step
        except (KubeError, OSError, ValidationError, InvalidJobError) as err:
            log.warning("job %s/%s: %s; the other jobs go on", meta["namespace"],
                        meta["name"], err)
            if isinstance(err, ValidationError | InvalidJobError):
                with contextlib.suppress(KubeError, OSError):
                    await self._fail(job, err if isinstance(err, InvalidJobError) else
                                     InvalidJobError(f"invalid: {spec_problem(err)}"))
            return False
        return True

    async def _commit(self, job: JSON, placement: Placement, devices: dict[str, str]) -> None:
        meta = job["metadata"]
        spec = DGXJobSpec.model_validate(job["spec"])
        guess = estimate(spec, devices.get(placement.nodes[0], DEFAULT_GPU),
                         len(placement.distinct_nodes))
        placed = tuple(ReplicaPlacement(replica=i, node=n, pod=pod_name(meta["name"], i))
                       for i, n in enumerate(placement.nodes))
        job = {**job, "status": await self._status(job, status_patch(
            phase="Placing", reason="Binding", placement=placed,
            nodes=",".join(placement.distinct_nodes), predictedSeconds=guess.seconds,
            predicted=human(guess.seconds), predictionSource=guess.source))}
        await self._bind_all(job, spec, placed, guess)

    async def _status(self, job: JSON, patch: JSON) -> JSON:
        meta = job["metadata"]
        updated = await self.kube.patch_job_status(meta["namespace"], meta["name"], patch)
        return dict(updated.get("status") or {})

    async def _resume(self, job: JSON) -> None:
        """Finish a placement an earlier run recorded but may not have bound."""
        spec = DGXJobSpec.model_validate(job["spec"])
        status = DGXJobStatus.model_validate(job.get("status") or {})
        seconds = status.predicted_seconds or self.settings.placement.default_duration_s
        log.info("resuming placement of %s/%s", job["metadata"]["namespace"],
                 job["metadata"]["name"])
        await self._bind_all(job, spec, status.placement,
                             Estimate(seconds, None, status.prediction_source or "recorded"))

    async def _bind_all(self, job: JSON, spec: DGXJobSpec, placed: tuple[ReplicaPlacement, ...],
                        guess: Estimate) -> None:
        meta = job["metadata"]
        namespace = meta["namespace"]
        scheduler = self.settings.placement.scheduler_name
        dra = spec.allocation == "DRA"
        try:
            if dra:
                await self._ensure_template(job, spec)
            for replica in placed:
                pod = await self.kube.create_pod(namespace, pod_body(
                    job, spec, replica, guess.seconds, scheduler))
                bound = (pod.get("spec") or {}).get("nodeName")
                if bound == replica.node:
                    continue
                if bound:
                    raise ConflictError(f"bind pod {namespace}/{replica.pod}", 409,
                                        f"already bound to {bound}")
                if not dra:  # kube-scheduler binds a DRA replica where it is pinned
                    await self.kube.bind_pod(namespace, replica.pod, replica.node)
        except KubeError as err:
            await self._roll_back(job, placed, str(err))
            return
        nodes = ",".join(dict.fromkeys(p.node for p in placed))
        how = "pinned to" if dra else "bound to"
        await self._status(job, status_patch(phase="Scheduled", reason="Scheduled",
                                             message=f"{len(placed)} replica(s) {how} "
                                                     f"{nodes}"))
        self.metrics.decided("placement")
        await self.kube.event({**job, "kind": KIND, "apiVersion": f"{GROUP}/{VERSION}"},
                              "Placed", f"{spec.gpus_text()} {spec.devices} on {nodes}; "
                              f"predicted {human(guess.seconds)} ({guess.source})")

    async def _ensure_template(self, job: JSON, spec: DGXJobSpec) -> None:
        """Create the job's ResourceClaimTemplate; one of that name must be the job's own
        (InvalidJobError otherwise: the replicas would claim what someone else wrote)."""
        meta = job["metadata"]
        try:
            await self.kube.create_resource_claim_template(meta["namespace"],
                                                           claim_template(job, spec))
        except ConflictError:
            found = await self.kube.read_resource_claim_template(meta["namespace"],
                                                                 meta["name"])
            owners = (found.get("metadata") or {}).get("ownerReferences") or []
            if not any(o.get("uid") == meta["uid"] for o in owners):
                raise InvalidJobError(
                    f"ResourceClaimTemplate {meta['namespace']}/{meta['name']} exists and "
                    f"is not this job's; the job's replicas claim from a template named "
                    f"like the job", "ClaimTemplateTaken") from None

    async def _roll_back(self, job: JSON, placed: tuple[ReplicaPlacement, ...],
                         why: str, reason: str = "PlacementRolledBack",
                         **extra: Any) -> None:
        """Delete every pod of the placement and send the job back to Pending."""
        meta = job["metadata"]
        log.warning("placement of %s/%s rolled back: %s", meta["namespace"], meta["name"], why)
        for replica in placed:
            await self.kube.delete_pod(meta["namespace"], replica.pod, missing_ok=True)
        await self._status(job, {"phase": "Pending", "reason": reason, "message": why[:500],
                                 "placement": [], "nodes": None, **extra})
        await self.kube.event({**job, "kind": KIND, "apiVersion": f"{GROUP}/{VERSION}"},
                              reason, why, "Warning")
        self._requeued.add(job_key(meta["namespace"], meta["name"]))
        self._wake.set()

    async def run(self) -> None:
        """Place the jobs that went back to Pending again, retrying while they wait.

        kopf retries a job's placement only until its first success; a job
        rolled back after that is this loop's. It wakes when such a job's pods
        change and every ``retry_delay_s`` while one waits; after a restart
        kopf's resume handler takes these jobs over.
        """
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       self.settings.placement.retry_delay_s)
            self._wake.clear()
            if not self._requeued:
                continue
            try:
                async with self._lock:
                    waiting = await self._round()
            except (KubeError, OSError, ValidationError) as err:
                log.warning("placing requeued jobs failed: %s", err)
                continue
            self._requeued &= waiting.keys()

    # ------------------------------------------------------------ following the pods

    async def sync_when_answered(self, namespace: str, name: str) -> None:
        """:meth:`sync`, retried while the API server does not answer (it or etcd is
        restarting): kopf does not retry an event handler, so a pod's end reported
        then would otherwise leave its job Running until some later event."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + SYNC_PATIENCE_S, SYNC_RETRY_S
        while True:
            try:
                return await self.sync(namespace, name)
            except (UnavailableError, OSError) as err:
                if loop.time() + delay > deadline:
                    raise
                log.info("job %s/%s: %s; syncing again in %.1f s", namespace, name, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SYNC_RETRY_MAX_S)

    async def sync(self, namespace: str, name: str) -> None:
        """Derive a placed job's phase from its pods."""
        async with self._lock:
            job = await self.kube.get_job(namespace, name)
            if job is None:
                return
            if job_key(namespace, name) in self._requeued:
                self._wake.set()  # its earlier pods may be gone now
            if job_phase(job) not in ("Scheduled", "Running"):
                return
            pods = (await self.kube.list_pods(label_selector=f"{JOB_LABEL}={name}",
                                              namespace=namespace)).items
            status = DGXJobStatus.model_validate(job.get("status") or {})
            refused = admission_refusal(job, pods)
            if refused and status.requeues < self.settings.placement.max_requeues:
                self.metrics.decided("requeue")
                await self._roll_back(
                    job, status.placement,
                    f"{refused}; placing the job again ({status.requeues + 1} of "
                    f"{self.settings.placement.max_requeues})", "AdmissionRefused",
                    requeues=status.requeues + 1)
                return
            patch = phase_from_pods(job, pods)
            if patch:
                await self._status(job, patch)
                if patch.get("phase") == "Failed":
                    await self._stop_replicas(namespace, pods)
                if patch.get("phase") in TERMINAL:
                    kind = "Normal" if patch["phase"] == "Succeeded" else "Warning"
                    await self.kube.event(
                        {**job, "kind": KIND, "apiVersion": f"{GROUP}/{VERSION}"},
                        str(patch.get("reason") or patch["phase"]),
                        str(patch.get("message") or patch["phase"]), kind)
                    self.on_change()


    async def _stop_replicas(self, namespace: str, pods: list[JSON]) -> None:
        """A gang that failed stops whole: its replicas still running are deleted, and
        their devices go back to the pool (as a Job's active pods when it fails)."""
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if phase not in TERMINAL and not pod["metadata"].get("deletionTimestamp"):
                await self.kube.delete_pod(namespace, pod["metadata"]["name"], missing_ok=True)


def promised_dra_devices(jobs: list[JSON], pods: list[JSON]) -> list[tuple[str, str, int]]:
    """``(node, dra_key, count)`` of each placed DRA replica whose pod is not bound yet: its
    claim may not be allocated, so the devices it will get still look free."""
    bound = {(p["metadata"].get("namespace"), p["metadata"]["name"])
             for p in pods if (p.get("spec") or {}).get("nodeName")}
    promised = []
    for job in jobs:
        if job_phase(job) not in ("Placing", "Scheduled", "Running"):
            continue
        spec = job_spec(job)
        if spec is None or spec.allocation != "DRA":
            continue
        status = DGXJobStatus.model_validate(job.get("status") or {})
        namespace = job["metadata"].get("namespace")
        promised += [(r.node, dra_key(spec.mig_profile), spec.per_replica)
                     for r in status.placement if (namespace, r.pod) not in bound]
    return promised


def _claims_refused(pod: JSON) -> str | None:
    """kube-scheduler's message when it cannot allocate a pinned pod's claims on its node."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        message = str(cond.get("message") or "")
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                cond.get("reason") == "Unschedulable" and CLAIMS_REFUSED in message:
            return message
    return None


def admission_refusal(job: JSON, pods: list[JSON]) -> str | None:
    """``pod P on node N: why`` for the first replica its node refused at admission.

    A refused pod never ran: the kubelet failed it with ``UnexpectedAdmissionError``
    (device allocation failed) or ``OutOf<resource>`` (not enough left); or, for a
    DRA replica pinned to its node, kube-scheduler found its claims cannot be
    allocated there (``cannot allocate all claims``: devices went to another claim
    since the placement), so the replica would wait while the others run.
    """
    status = DGXJobStatus.model_validate(job.get("status") or {})
    placed = {r.pod: r.node for r in status.placement}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        name = pod["metadata"]["name"]
        pod_status = pod.get("status") or {}
        reason = str(pod_status.get("reason") or "")
        if name in placed and pod_status.get("phase") == "Failed" and (
                reason == ADMISSION_REFUSED or reason.startswith("OutOf")):
            why = pod_status.get("message") or reason
            return f"pod {name} was refused by node {placed[name]}: {why}"
        unallocated = _claims_refused(pod)
        if name in placed and pod_status.get("phase") == "Pending" and unallocated:
            return f"pod {name} cannot get its devices on node {placed[name]}: {unallocated}"
    return None


def phase_from_pods(job: JSON, pods: list[JSON]) -> JSON:
    """The status patch a placed job's pods call for ({} when nothing changes)."""
    status = DGXJobStatus.model_validate(job.get("status") or {})
    spec = DGXJobSpec.model_validate(job["spec"])
    by_name = {p["metadata"]["name"]: p for p in pods}
    phases = {r.pod: (by_name.get(r.pod, {}).get("status") or {}).get("phase")
              for r in status.placement}
    succeeded = sum(1 for p in phases.values() if p == "Succeeded")
    failed = [n for n, p in phases.items() if p == "Failed"]
    missing = [n for n in phases if n not in by_name]
    counts = {"succeeded": succeeded, "failed": len(failed)}
    if failed or missing:
        which = (failed or missing)[0]
        pod_status = by_name.get(which, {}).get("status") or {}
        why = pod_status.get("message") or pod_status.get("reason") or (
            "failed" if failed else "was deleted")
        return status_patch(phase="Failed", reason="ReplicaFailed" if failed else
                            "ReplicaDeleted", message=f"pod {which}: {why}",
                            completionTime=now_rfc3339(), **counts)
    if succeeded == spec.replicas:
        return status_patch(phase="Succeeded", reason="Completed",
                            message=f"{succeeded} replica(s) succeeded",
                            completionTime=now_rfc3339(), **counts)
    if all(p in ("Running", "Succeeded") for p in phases.values()) and \
            status.phase != "Running":
        return status_patch(phase="Running", reason="Running", startTime=now_rfc3339(),
                            message=f"{spec.replicas} replica(s) running", **counts)
    return {}
