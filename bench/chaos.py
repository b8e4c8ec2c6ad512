"""Chaos: every component of ``dgxsim up`` killed with SIGKILL while work flows.

A cluster of four simulated DGX A100 nodes (``dgxsim up --nodes 4``: control
plane, node agent, operator, supervisor): ``dgx-0`` and ``dgx-1`` relabelled
``nvidia.com/mig.config=all-1g.5gb``, ``dgx-2`` under the operator's dynamic
MIG policy (``dgxsim.io/mig-policy=dynamic``), ``dgx-3`` whole GPUs. A stream of
workloads is submitted at random intervals: batch Jobs asking
``nvidia.com/gpu`` (``backoffLimit: 0``, so a failed pod fails the Job), pods
asking ``nvidia.com/mig-1g.5gb`` and DGXJobs (whole GPUs or a MIG profile).
Meanwhile the node agent, the operator, the API server and etcd are each
killed with SIGKILL several times, one at a time, at random moments; the
supervisor of ``dgxsim up`` restarts them, and ``dgx-1`` is relabelled between
``all-1g.5gb`` and ``all-balanced`` every ``--relabel-every`` seconds (each
change must reach ``success`` whatever dies meanwhile). Per kill it measures the recovery
time: from the kill until the component answers its health check again (etcd
``/health``, the API server ``/readyz``, the operator's liveness ``/healthz``,
the node agent's ``dgxsim_agent_watch_live`` metric with every watch live), and
after an etcd or API server death also until the agent's watches are live.

A watcher lists every pod once a second and checks that no device (the
``dgxsim.io/devices`` annotation of Running pods) is held by two running pods.
At the end it prints workloads submitted / succeeded / failed (with reasons) /
lost (not ended within the drain time), double allocations and the recovery
time of every kill, and how long each relabel took to reach ``success``.
Figures only; nothing passes or fails.

    .venv/bin/python bench/chaos.py [--workloads 200] [--kills 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dgxsim.clusterfile import load_settings
from gpumodel.vocabulary import (
    DEVICES_ANNOTATION,
    DURATION_ANNOTATION,
    INVENTORY_ANNOTATION,
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_POLICY,
)
from kubewire import CustomResource, KubeClient, KubeError
from localkube import ControlPlane
from localkube.pki import ADMIN
from localkube.toolchain import bin_dir

JSON = dict[str, Any]
NAMESPACE = "chaos"
AGENT, OPERATOR, APISERVER, ETCD = "node-agent", "operator", "kube-apiserver", "etcd"
VICTIMS = (AGENT, OPERATOR, APISERVER, ETCD)
MIG_NODES = ("dgx-0", "dgx-1")
RELABELLED = "dgx-1"
RELABEL_CONFIGS = ("all-balanced", "all-1g.5gb")
DYNAMIC_NODE = "dgx-2"


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    state: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def record(self, name: str) -> JSON:
        processes = json.loads((self.state / "controlplane.json").read_text())["processes"]
        return dict(next(p for p in processes if p["name"] == name))

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir() / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                               *args], input=stdin, capture_output=True, text=True, timeout=60)

    async def kubectl_until_ok(self, *args: str, stdin: str | None = None,
                               timeout_s: float = 120.0) -> bool:
        """kubectl, retried while the API server is away; False if it never took."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(self.kubectl, *args, stdin=stdin)
            if done.returncode == 0:
                return True
            if "AlreadyExists" in done.stderr:
                return True
            await asyncio.sleep(0.5)
        return False


@dataclass
class Probes:
    """Health checks of the four components this benchmark kills."""

    cluster: Cluster
    http: httpx.Client

    @classmethod
    def of(cls, cluster: Cluster) -> Probes:
        pki = ControlPlane(cluster.state).pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.client_cert(ADMIN)), str(pki.client_key(ADMIN)))
        return cls(cluster, httpx.Client(verify=context, timeout=1.0))

    def healthy(self, name: str) -> bool:
        try:
            return self._healthy(name)
        except (httpx.HTTPError, OSError, ValueError, StopIteration):
            return False

    def _healthy(self, name: str) -> bool:
        state = ControlPlane(self.cluster.state).load_state()
        if state is None:
            return False
        if name == ETCD:
            resp = self.http.get(f"http://127.0.0.1:{state.ports.etcd_client}/health")
            return resp.status_code == 200 and resp.json().get("health") == "true"
        if name == APISERVER:
            return self.http.get(f"{state.server}/readyz").status_code == 200
        if name == OPERATOR:
            argv = self.cluster.record(OPERATOR)["argv"]
            port = argv[argv.index("--liveness-port") + 1]
            return self.http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        if name == AGENT:
            return self.agent_watches_live()
        raise ValueError(name)

    def agent_watches_live(self) -> bool:
        from dgxsim.commands.cluster import watch_health

        settings = load_settings(self.cluster.state)
        url = settings.metrics[AGENT] if settings else None
        return url is not None and watch_health(url) == "health ok"


# ---------------------------------------------------------------- workloads


@dataclass
class Workload:
    kind: str  # job | pod | dgxjob
    name: str
    manifest: JSON
    submitted: bool = False
    end: str | None = None
    reason: str = ""


def pod_spec(resources: JSON, duration_s: int) -> JSON:
    return {"metadata": {"annotations": {DURATION_ANNOTATION: f"{duration_s}s"}},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"dgxsim.io/node": "true"},
                     "containers": [{"name": "main", "image": "dgxsim/workload",
                                     "resources": {"limits": resources}}]}}


def make_workload(i: int, rng: random.Random) -> Workload:
    duration = rng.randint(3, 12)
    roll = rng.random()
    if roll < 0.35:
        name = f"job-{i}"
        template = pod_spec({"nvidia.com/gpu": str(rng.choice((1, 1, 2)))}, duration)
        return Workload("job", name, {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"backoffLimit": 0, "template": template}})
    if roll < 0.7:
        name = f"pod-{i}"
        made = pod_spec({"nvidia.com/mig-1g.5gb": "1"}, duration)
        made["metadata"].update(name=name, namespace=NAMESPACE)
        return Workload("pod", name, {"apiVersion": "v1", "kind": "Pod", **made})
    name = f"dgxjob-{i}"
    spec: JSON = {"workload": "gemm", "durationSeconds": duration}
    if rng.random() < 0.5:
        spec["migProfile"] = "1g.5gb"
    else:
        spec["gpusPerReplica"] = rng.choice((1, 2))
        spec["replicas"] = rng.choice((1, 1, 2))
    return Workload("dgxjob", name, {"apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
                                     "metadata": {"name": name, "namespace": NAMESPACE},
                                     "spec": spec})


def outcome(w: Workload, objects: dict[tuple[str, str], JSON],
            pods_of_job: dict[str, list[JSON]]) -> tuple[str | None, str]:
    """(Succeeded | Failed | None, reason) of one workload from what the API lists."""
    obj = objects.get((w.kind, w.name))
    if obj is None:
        return None, ""
    status = obj.get("status") or {}
    if w.kind == "pod":
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return phase, f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")
        return None, ""
    if w.kind == "dgxjob":
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return phase, str(status.get("message") or status.get("reason") or "")
        return None, ""
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded", ""
        if cond.get("type") == "Failed":
            why = [f"pod {p['metadata']['name']}: {(p.get('status') or {}).get('reason', '')}: "
                   f"{(p.get('status') or {}).get('message', '')}"
                   for p in pods_of_job.get(w.name, [])
                   if (p.get("status") or {}).get("phase") == "Failed"]
            return "Failed", "; ".join(why) or f"{cond.get('reason')}: {cond.get('message')}"
    return None, ""


# ---------------------------------------------------------------- the run


@dataclass
class Kill:
    victim: str
    at: float
    back_s: float | None = None
    watches_s: float | None = None
    """After an etcd or API server death: until the agent's watches were live again."""


@dataclass
class Chaos:
    cluster: Cluster
    kube: KubeClient
    probes: Probes
    rng: random.Random
    workloads: list[Workload] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    polls: int = 0
    failed_polls: int = 0
    doubles: set[tuple[str, str, str]] = field(default_factory=set)
    submitting: bool = True
    relabels: list[tuple[str, float | None, str]] = field(default_factory=list)
    """(config, seconds to success or None, last state seen)."""

    async def relabel(self, every_s: float, stop: asyncio.Event, timeout_s: float = 180.0
                      ) -> None:
        """Relabel one MIG node back and forth; each change waits for its end."""
        turn = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                return
            config = RELABEL_CONFIGS[turn % len(RELABEL_CONFIGS)]
            turn += 1
            t0 = time.monotonic()
            await self.cluster.kubectl_until_ok("label", "node", RELABELLED,
                                                f"{MIG_CONFIG}={config}", "--overwrite")
            state = "?"
            while time.monotonic() - t0 < timeout_s:
                try:
                    node = await self.kube.read_node(RELABELLED)
                except (KubeError, OSError):
                    await asyncio.sleep(0.5)
                    continue
                # The node's own record says which config its state is about (the
                # state label still reads the last one's until the node takes it up).
                inventory = json.loads((node["metadata"].get("annotations") or {}).get(
                    INVENTORY_ANNOTATION, "{}"))
                state = (node["metadata"].get("labels") or {}).get(MIG_CONFIG_STATE, "?")
                if inventory.get("mig_config") == config and state in ("success", "failed") \
                        and inventory.get("mig_config_state") == state:
                    break
                await asyncio.sleep(0.5)
            took = time.monotonic() - t0
            done = took if state == "success" else None
            why = state if done is not None else f"{state} ({await self._why_not(config)})"
            self.relabels.append((config, done, why))
            say(f"{RELABELLED} -> {config}: {why} after {took:.1f} s")

    async def _why_not(self, config: str) -> str:
        """The node's last MIG event, which says why a change did not succeed."""
        try:
            events = (await self.kube.list_events(
                field_selector=f"involvedObject.name={RELABELLED}")).items
        except (KubeError, OSError) as err:
            return f"events unreadable: {err}"
        mig = [e for e in events if str(e.get("reason", "")).startswith("MigConfig")
               or e.get("reason") == "NodeUpdateRefused"]
        last = max(mig, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
                   default=None)
        return f"{last['reason']}: {last['message'][:300]}" if last else "no event"

    async def watch_devices(self, stop: asyncio.Event) -> None:
        """Every second: no device of a Running pod is held by another Running pod."""
        while not stop.is_set():
            try:
                pods = (await self.kube.list_pods()).items
            except (KubeError, OSError):
                self.failed_polls += 1
            else:
                self.polls += 1
                holder: dict[str, str] = {}
                for p in pods:
                    if (p.get("status") or {}).get("phase") != "Running":
                        continue
                    text = ((p["metadata"].get("annotations") or {}).get(DEVICES_ANNOTATION)
                            or "")
                    who = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                    for part in text.split(";"):
                        _, _, ids = part.partition(": ")
                        for device in filter(None, (d.strip() for d in ids.split(","))):
                            if device in holder and holder[device] != who:
                                pair = tuple(sorted((holder[device], who)))
                                if (device, *pair) not in self.doubles:
                                    say(f"DOUBLE ALLOCATION: {device} held by {pair}")
                                self.doubles.add((device, pair[0], pair[1]))
                            holder[device] = who
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def submit(self, count: int, rate: float) -> None:
        for i in range(count):
            w = make_workload(i, self.rng)
            self.workloads.append(w)
            w.submitted = await self.cluster.kubectl_until_ok(
                "create", "-f", "-", stdin=json.dumps(w.manifest))
            if not w.submitted:
                say(f"{w.name}: never accepted by the API server")
            if (i + 1) % 25 == 0:
                say(f"submitted {i + 1}/{count}")
            await asyncio.sleep(self.rng.expovariate(rate))
        self.submitting = False

    async def kill_all(self, per_victim: int, gap_s: tuple[float, float]) -> None:
        order = [v for v in VICTIMS for _ in range(per_victim)]
        self.rng.shuffle(order)
        for victim in order:
            await asyncio.sleep(self.rng.uniform(*gap_s))
            await self.kill(victim)

    async def kill(self, victim: str, timeout_s: float = 120.0) -> None:
        before = self.cluster.record(victim)
        kill = Kill(victim, time.monotonic())
        os.kill(before["pid"], signal.SIGKILL)
        self.kills.append(kill)
        say(f"killed {victim} (pid {before['pid']})")
        control_plane = victim in (APISERVER, ETCD)
        await asyncio.sleep(0.05)
        while time.monotonic() - kill.at < timeout_s:
            now = time.monotonic() - kill.at
            if kill.back_s is None and await asyncio.to_thread(self._back, victim, before):
                kill.back_s = now
            if control_plane and kill.watches_s is None and kill.back_s is not None and \
                    await asyncio.to_thread(self.probes.agent_watches_live):
                kill.watches_s = now
            if kill.back_s is not None and (not control_plane or kill.watches_s is not None):
                break
            await asyncio.sleep(0.1)
        extra = f", agent's watches live after {kill.watches_s:.1f} s" if kill.watches_s else ""
        say(f"{victim} back after " + (f"{kill.back_s:.1f} s" if kill.back_s is not None
                                      else f"more than {timeout_s:.0f} s") + extra)

    def _back(self, victim: str, before: JSON) -> bool:
        try:
            record = self.cluster.record(victim)
        except (OSError, ValueError, StopIteration):
            return False
        return record["pid"] != before["pid"] and self.probes.healthy(victim)

    async def settle(self, drain_s: float) -> None:
        """Poll outcomes until every submitted workload ended or ``drain_s`` passed after
        the last submission."""
        deadline: float | None = None
        while True:
            await self.collect()
            open_ = [w for w in self.workloads if w.submitted and w.end is None]
            if not self.submitting and deadline is None:
                deadline = time.monotonic() + drain_s
            if not self.submitting and not open_:
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            await asyncio.sleep(3.0)

    async def collect(self) -> None:
        try:
            pods = (await self.kube.list_pods(namespace=NAMESPACE)).items
            jobs = (await self.kube.list_batch_jobs(NAMESPACE)).items
            dgx = (await self.kube.list_custom_objects(
                CustomResource("dgxsim.io", "v1", "dgxjobs"), NAMESPACE)).items
        except (KubeError, OSError):
            return
        objects = {("pod", p["metadata"]["name"]): p for p in pods}
        objects |= {("job", j["metadata"]["name"]): j for j in jobs}
        objects |= {("dgxjob", d["metadata"]["name"]): d for d in dgx}
        pods_of_job: dict[str, list[JSON]] = {}
        for p in pods:
            job = (p["metadata"].get("labels") or {}).get("job-name")
            if job:
                pods_of_job.setdefault(job, []).append(p)
        for w in self.workloads:
            if w.end is None and w.submitted:
                w.end, w.reason = outcome(w, objects, pods_of_job)


async def prepare(cluster: Cluster) -> None:
    for node in MIG_NODES:
        await cluster.kubectl_until_ok("label", "node", node, f"{MIG_CONFIG}=all-1g.5gb",
                                       "--overwrite")
    await cluster.kubectl_until_ok("label", "node", DYNAMIC_NODE, f"{MIG_POLICY}=dynamic",
                                   "--overwrite")
    await cluster.kubectl_until_ok("create", "namespace", NAMESPACE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = cluster.kubectl("get", "nodes", "-o", "json")
        states = {n["metadata"]["name"]: n["metadata"]["labels"].get(f"{MIG_CONFIG}.state")
                  for n in json.loads(done.stdout or '{"items": []}')["items"]}
        sa = cluster.kubectl("get", "serviceaccount", "default", "-n", NAMESPACE)
        if all(states.get(n) == "success" for n in MIG_NODES) and sa.returncode == 0:
            return
        await asyncio.sleep(1)
    raise SystemExit(f"MIG nodes did not reach success: {states}")


def report(chaos: Chaos, wall_s: float) -> None:
    submitted = [w for w in chaos.workloads if w.submitted]
    ends = Counter(w.end or "lost" for w in submitted)
    print()
    print(f"chaos run: {wall_s:.0f} s, {len(chaos.kills)} kills, "
          f"{chaos.polls} device polls ({chaos.failed_polls} while the API server was away)")
    by_kind = Counter(w.kind for w in submitted)
    print(f"workloads submitted: {len(submitted)} of {len(chaos.workloads)} "
          f"({', '.join(f'{n} {k}s' for k, n in sorted(by_kind.items()))})")
    print(f"  succeeded: {ends['Succeeded']}")
    print(f"  failed:    {ends['Failed']}")
    reasons = Counter(w.reason.split(":")[0] if w.kind != "job" else
                      w.reason.split(": ")[1] if w.reason.count(": ") >= 1 else w.reason
                      for w in submitted if w.end == "Failed")
    for reason, n in reasons.most_common():
        print(f"    {n:4d} x {reason or '(no reason)'}")
    for w in [w for w in submitted if w.end == "Failed"][:10]:
        print(f"    e.g. {w.kind} {w.name}: {w.reason[:300]}")
    print(f"  lost:      {ends['lost']}"
          + (f" ({', '.join(w.name for w in submitted if w.end is None)[:400]})"
             if ends["lost"] else ""))
    print(f"double allocations: {len(chaos.doubles)}")
    for device, a, b in sorted(chaos.doubles):
        print(f"    {device}: {a} and {b}")
    print("recovery per kill (kill -> healthy again; after etcd/API server deaths also "
          "-> agent's watches live):")
    for victim in VICTIMS:
        rows = [k for k in chaos.kills if k.victim == victim]
        cells = ", ".join((f"{k.back_s:.1f}" if k.back_s is not None else "never")
                          + (f"/{k.watches_s:.1f}" if k.watches_s is not None else "")
                          for k in rows)
        backs = [k.back_s for k in rows if k.back_s is not None]
        worst = f"max {max(backs):.1f} s" if backs else "-"
        print(f"  {victim:<15} {cells or '-'} s  ({worst})")
    if chaos.relabels:
        ok = [t for _, t, _ in chaos.relabels if t is not None]
        print(f"relabels of {RELABELLED}: {len(ok)} of {len(chaos.relabels)} reached success"
              + (f" (in {min(ok):.1f}-{max(ok):.1f} s)" if ok else "")
              + "".join(f"; {c} ended {st}" for c, t, st in chaos.relabels if t is None))
    over = [k for k in chaos.kills if k.back_s is None or k.back_s > 10.0]
    print(f"kills recovered within 10 s: {len(chaos.kills) - len(over)} of {len(chaos.kills)}")


async def run(args: argparse.Namespace, cluster: Cluster) -> None:
    await prepare(cluster)
    kube = await KubeClient.connect(cluster.kubeconfig)
    chaos = Chaos(cluster, kube, Probes.of(cluster), random.Random(args.seed))
    stop = asyncio.Event()
    t0 = time.monotonic()
    watcher = asyncio.create_task(chaos.watch_devices(stop))
    stop_relabels = asyncio.Event()
    relabeller = asyncio.create_task(chaos.relabel(args.relabel_every, stop_relabels)) \
        if args.relabel_every > 0 else None
    try:
        submitter = asyncio.create_task(chaos.submit(args.workloads, args.rate))
        killer = asyncio.create_task(chaos.kill_all(args.kills, (args.gap_min, args.gap_max)))
        settler = asyncio.create_task(chaos.settle(args.drain))
        await asyncio.gather(submitter, killer)
        say("every kill done and every workload submitted; draining")
        stop_relabels.set()
        await settler
        if relabeller is not None:
            await relabeller
    finally:
        stop.set()
        stop_relabels.set()
        if relabeller is not None and not relabeller.done():
            relabeller.cancel()
        await watcher
        await kube.close()
        chaos.probes.http.close()
    report(chaos, time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.2, help="workloads per second (mean)")
    parser.add_argument("--kills", type=int, default=3, help="kills of each component")
    parser.add_argument("--gap-min", type=float, default=6.0)
    parser.add_argument("--gap-max", type=float, default=14.0)
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds to wait for workloads after the last submission")
    parser.add_argument("--relabel-every", type=float, default=30.0,
                        help=f"seconds between MIG relabels of {RELABELLED} (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the state dir (logs)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="dgxchaos", dir="/tmp"))
    say(f"dgxsim up --nodes 4 in {state}")
    up = subprocess.run([sys.executable, "-m", "dgxsim", "up", "--nodes", "4", "--state-dir",
                         str(state)], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    try:
        asyncio.run(run(args, Cluster(state)))
    finally:
        subprocess.run([sys.executable, "-m", "dgxsim", "down", "--state-dir", str(state)],
                       capture_output=True, timeout=300)
        if args.keep:
            say(f"logs kept in {state}/logs")
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
