"""dgxsim's node agent side by side with KWOK: the same pod burst on one control plane.

For each size N a fresh control plane (etcd, API server, controller manager,
scheduler on loopback, as ``dgxsim up`` starts it) serves two runs back to back:

1. KWOK (sigs.k8s.io/kwok, the SIG's fake kubelet, built on demand through the
   toolchain at its pin) with its default node stages and its default pod stages
   (``bench/kwok_pod_stages.yaml``) and node Leases of 40 s as kwokctl runs it,
   managing N Nodes labelled so that only it owns them, each advertising
   ``nvidia.com/gpu: 8`` as a DGX A100 does;
2. ``dgxsim agent`` with N simulated DGX A100 nodes (kubelet-less mode).

Each run: time until all N nodes are Ready (from starting the fake kubelet and
creating its Nodes), the idle CPU of every component over a window with the
nodes up and no pods, then a burst of P bare pods (``nvidia.com/gpu: 1``,
``restartPolicy: Never``, ``dgxsim.io/duration: 10ms``) created at once and
followed until every one is Succeeded: pods/s, CPU seconds and RSS per component
(from ``/proc/<pid>/stat`` and ``status``), and the API server's writes per pod
(``apiserver_request_total`` of the write verbs, read before and after, by verb,
resource and subresource; the burst's own pod creations included on both sides).
The machine may be shared: each figure is printed with the load average
(``uptime``) at that moment. Figures only; nothing passes or fails.

    .venv/bin/python bench/scale.py [--nodes 20] [--pods 200] [--idle-window 15]
    .venv/bin/python bench/scale.py --nodes 140 500 1000 --pods 1000 [--rounds 3]

With ``--rounds R`` each side runs R bursts per size, alternating with the other
side, and the medians are compared: on a shared host the machine's speed drifts
by tens of percent within minutes, which a single back-to-back pair cannot tell
from a difference between the sides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubewire import JSON, KubeClient, KubeError, list_and_watch
from localkube import ControlPlane
from localkube.processes import ProcessRecord, is_alive, stop
from localkube.toolchain import bin_dir, ensure_tools

HERE = Path(__file__).resolve().parent
KWOK_STAGES = HERE / "kwok_pod_stages.yaml"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
KWOK_LABEL = "dgxsim.io/bench-kwok"
DGXSIM_LABEL = "dgxsim.io/node"
BURST_LABEL = "dgxsim.io/bench-burst"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
CREATE_CONCURRENCY = 32
READY_TIMEOUT_S = 900.0
BURST_TIMEOUT_S = 1800.0
FAKE_KUBELET = "fake-kubelet"


def load() -> str:
    """The 1-minute load average and the core count: how shared the machine is now."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def _say(message: str) -> None:
    print(f"[scale] {message} ({load()})", flush=True)


# ------------------------------------------------------------------ processes


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def rss_mib(pid: int) -> float:
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_MIB
        except OSError:
            continue
    return total


def components(plane: ControlPlane) -> dict[str, ProcessRecord]:
    """Every process the control plane records, the fake kubelet of the run included."""
    state = plane.load_state()
    assert state is not None
    return {r.name: r for r in state.processes if is_alive(r)}


# ------------------------------------------------------------------ API figures


def api_writes(kubectl: list[str]) -> Counter[str]:
    """``apiserver_request_total`` of the write verbs, keyed ``VERB resource[/sub]``."""
    text = subprocess.run([*kubectl, "get", "--raw", "/metrics"], check=True,
                          capture_output=True, text=True).stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        sub = labels.get("subresource")
        key = f"{labels['verb']} {labels.get('resource', '?')}{'/' + sub if sub else ''}"
        counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return counts


# ------------------------------------------------------------------ objects


def kwok_node(name: str) -> JSON:
    """A Node only KWOK manages (its label selector), with a DGX A100's 8 GPUs."""
    resources = {"cpu": "256", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": "8"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {KWOK_LABEL: "true", "type": "kwok",
                                                  "kubernetes.io/hostname": name},
                         "annotations": {"kwok.x-k8s.io/node": "fake",
                                         "node.alpha.kubernetes.io/ttl": "0"}},
            "status": {"capacity": resources, "allocatable": resources}}


def burst_pod(name: str, node_label: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {BURST_LABEL: "true"},
                         "annotations": {"dgxsim.io/duration": "10ms"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 0,
                     "nodeSelector": {node_label: "true"},
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def _ready(node: JSON) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


async def _until(predicate_on: Callable[[dict[str, JSON]], bool], lister: Callable[[], object],
                 watcher: Callable[[str], object], timeout_s: float, what: str) -> None:
    """List and watch until ``predicate_on`` (name -> object) holds."""
    seen: dict[str, JSON] = {}
    done = asyncio.Event()

    async def on_list(items: list[JSON]) -> None:
        seen.clear()
        seen.update({i["metadata"]["name"]: i for i in items})
        if predicate_on(seen):
            done.set()

    async def on_event(kind: str, obj: JSON) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            seen.pop(name, None)
        else:
            seen[name] = obj
        if predicate_on(seen):
            done.set()

    async def follow() -> None:
        while True:
            try:
                await list_and_watch(lister, watcher, on_list, on_event)  # type: ignore[arg-type]
            except KubeError:
                await asyncio.sleep(0.5)

    task = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    except TimeoutError:
        raise SystemExit(f"scale: {what} not reached in {timeout_s:.0f} s") from None
    finally:
        task.cancel()


async def wait_nodes_ready(kube: KubeClient, selector: str, count: int) -> None:
    await _until(lambda seen: sum(_ready(n) for n in seen.values()) >= count,
                 lambda: kube.list_nodes(label_selector=selector),
                 lambda v: kube.watch_nodes(v, label_selector=selector),
                 READY_TIMEOUT_S, f"{count} nodes Ready ({selector})")


async def wait_succeeded(kube: KubeClient, namespace: str, count: int,
                         progress: Callable[[int], None]) -> None:
    last = [0.0]

    def check(seen: dict[str, JSON]) -> bool:
        phases = Counter((p.get("status") or {}).get("phase") for p in seen.values())
        if phases["Failed"]:
            failed = next(p for p in seen.values() if p["status"]["phase"] == "Failed")
            raise SystemExit(f"scale: pod {failed['metadata']['name']} failed: "
                             f"{failed['status'].get('message')}")
        done = phases["Succeeded"]
        if time.monotonic() - last[0] > 15:
            last[0] = time.monotonic()
            progress(done)
        return done >= count

    selector = f"{BURST_LABEL}=true"
    await _until(check, lambda: kube.list_pods(namespace=namespace, label_selector=selector),
                 lambda v: kube.watch_pods(v, label_selector=selector,
                                           field_selector=f"metadata.namespace={namespace}"),
                 BURST_TIMEOUT_S, f"{count} pods Succeeded in {namespace}")


async def create_all(make: Callable[[int], object], count: int) -> None:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            for attempt in range(20):
                try:
                    await make(i)  # type: ignore[misc]
                    return
                except KubeError as err:
                    if "already exists" in str(err):
                        return
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one(i) for i in range(count)))


# ------------------------------------------------------------------ one run


@dataclass
class Run:
    """The figures of one fake kubelet at one size."""

    side: str
    nodes: int
    pods: int
    ready_s: float = 0.0
    ready_load: str = ""
    idle_pct: dict[str, float] = field(default_factory=dict)
    idle_load: str = ""
    burst_s: float = 0.0
    burst_load: str = ""
    burst_cpu_s: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    writes: Counter[str] = field(default_factory=Counter)

    @property
    def pods_per_s(self) -> float:
        return self.pods / self.burst_s if self.burst_s else 0.0

    def writes_per_pod(self) -> float:
        return sum(self.writes.values()) / self.pods


def _kubectl(kubectl: list[str], *args: str) -> None:
    subprocess.run([*kubectl, *args], check=True, capture_output=True)


def _await_service_account(kubectl: list[str], namespace: str) -> None:
    """Pods are refused until the namespace's default service account exists."""
    while subprocess.run([*kubectl, "-n", namespace, "get", "sa", "default"],
                         capture_output=True).returncode != 0:
        time.sleep(0.2)


def _cpu_all(procs: dict[str, ProcessRecord]) -> dict[str, float]:
    return {name: cpu_s(r.pid) for name, r in procs.items()}


async def run_side(side: str, plane: ControlPlane, kube: KubeClient, kubectl: list[str],
                   nodes: int, pods: int, idle_s: float, settle_s: float) -> Run:
    run = Run(side, nodes, pods)
    namespace = f"scale-{side}"
    _say(f"{side}: starting {nodes} nodes")
    t0 = time.monotonic()
    if side == "kwok":
        plane.start_extra(FAKE_KUBELET, [
            str(bin_dir() / "kwok"), "--kubeconfig", str(plane.kubeconfig),
            "--manage-all-nodes=false", f"--manage-nodes-with-label-selector={KWOK_LABEL}=true",
            "--config", str(KWOK_STAGES), "--v", "WARN",
            # As kwokctl runs it: Leases renewed every 10 s, like a kubelet's (and dgxsim's).
            "--node-lease-duration-seconds=40"], lambda: True)
        await create_all(lambda i: kube.create_node(kwok_node(f"kwok-{i}")), nodes)
        selector = f"{KWOK_LABEL}=true"
    else:
        plane.start_extra(FAKE_KUBELET, [
            sys.executable, "-m", "dgxsim", "agent", "--state-dir", str(plane.state_dir),
            "--kubeconfig", str(plane.kubeconfig), "--nodes", str(nodes),
            "--log-level", "WARNING"], lambda: True)
        selector = f"{DGXSIM_LABEL}=true"
    await wait_nodes_ready(kube, selector, nodes)
    run.ready_s, run.ready_load = time.monotonic() - t0, load()
    _say(f"{side}: {nodes} nodes Ready in {run.ready_s:.1f} s")

    await asyncio.to_thread(_kubectl, kubectl, "create", "namespace", namespace)
    await asyncio.to_thread(_await_service_account, kubectl, namespace)
    await asyncio.sleep(settle_s)
    procs = components(plane)
    before, t_idle = _cpu_all(procs), time.monotonic()
    await asyncio.sleep(idle_s)
    after, elapsed = _cpu_all(procs), time.monotonic() - t_idle
    run.idle_pct = {n: 100 * (after[n] - before[n]) / elapsed for n in procs}
    run.idle_load = load()
    _say(f"{side}: idle CPU " + ", ".join(f"{n} {v:.1f}%" for n, v in run.idle_pct.items()))

    label = KWOK_LABEL if side == "kwok" else DGXSIM_LABEL
    writes0, cpu0 = api_writes(kubectl), _cpu_all(procs)
    t1 = time.monotonic()
    await create_all(lambda i: kube.create_pod(namespace, burst_pod(f"burst-{i}", label)),
                     pods)
    _say(f"{side}: {pods} pods created in {time.monotonic() - t1:.1f} s")
    await wait_succeeded(kube, namespace, pods,
                         lambda done: _say(f"{side}: {done}/{pods} pods Succeeded"))
    run.burst_s, run.burst_load = time.monotonic() - t1, load()
    cpu1 = _cpu_all(procs)
    run.writes = api_writes(kubectl) - writes0
    run.burst_cpu_s = {n: cpu1[n] - cpu0[n] for n in procs}
    run.rss = {n: rss_mib(r.pid) for n, r in procs.items()}
    _say(f"{side}: {pods} pods Succeeded in {run.burst_s:.1f} s "
         f"({run.pods_per_s:.1f} pods/s), {run.writes_per_pod():.2f} API writes per pod")

    # Clean up while the fake kubelet still runs (it finishes the deletions), then
    # stop it and remove its nodes, so the next run starts on a quiet API server.
    await asyncio.to_thread(_kubectl, kubectl, "delete", "namespace", namespace, "--wait=true",
                            "--timeout=600s")
    stop(procs[FAKE_KUBELET])
    state = plane.load_state()
    assert state is not None
    plane.save_state(state.model_copy(update={"processes": [
        r for r in state.processes if r.name != FAKE_KUBELET]}))
    await asyncio.to_thread(_kubectl, kubectl, "delete", "nodes", "-l", selector, "--wait=true")
    return run


# ------------------------------------------------------------------ report


def _short(name: str) -> str:
    return {"kube-apiserver": "apiserver", "kube-controller-manager": "ctrl-mgr",
            "kube-scheduler": "scheduler", FAKE_KUBELET: "kubelet-side"}.get(name, name)


def report(runs: list[Run]) -> None:
    print("\n== pod burst (same pods, same control plane, back to back)")
    print(f"{'nodes':>6} {'pods':>6} {'side':>7} {'Ready s':>8} {'pods/s':>8} "
          f"{'ratio':>6} {'writes/pod':>10}  load during burst")
    by_size: dict[int, list[Run]] = {}
    for r in runs:
        by_size.setdefault(r.nodes, []).append(r)
    for n, size_runs in by_size.items():
        kwok = [r.pods_per_s for r in size_runs if r.side == "kwok"]
        for r in size_runs:
            ratio = (f"{r.pods_per_s / statistics.median(kwok):.2f}" if kwok and all(kwok)
                     else "-")
            print(f"{n:>6} {r.pods:>6} {r.side:>7} {r.ready_s:>8.1f} {r.pods_per_s:>8.1f} "
                  f"{ratio:>6} {r.writes_per_pod():>10.2f}  {r.burst_load}")
        rates = {side: [r.pods_per_s for r in size_runs if r.side == side]
                 for side in ("kwok", "dgxsim")}
        if all(len(v) > 1 for v in rates.values()):
            kwok_m, dgx_m = (statistics.median(rates[s]) for s in ("kwok", "dgxsim"))
            print(f"{n:>6} median of {len(rates['kwok'])} bursts each, alternating: kwok "
                  f"{kwok_m:.1f}, dgxsim {dgx_m:.1f} pods/s, ratio {dgx_m / kwok_m:.2f}")
    print("\n== CPU seconds during the burst / RSS MiB at its end / idle CPU % of a core")
    for r in runs:
        cells = [f"{_short(n)} {r.burst_cpu_s[n]:.1f}s/{r.rss[n]:.0f}M/{r.idle_pct[n]:.1f}%"
                 for n in r.burst_cpu_s]
        print(f"{r.nodes:>6} {r.side:>7}: " + ", ".join(cells) + f"  (idle: {r.idle_load})")
    print("\n== API writes per pod during the burst, by verb and resource")
    for r in runs:
        top = ", ".join(f"{k} {v / r.pods:.2f}" for k, v in r.writes.most_common()
                        if v / r.pods >= 0.01)
        print(f"{r.nodes:>6} {r.side:>7}: {top}")


@contextmanager
def control_plane(keep_logs: Path | None = None, label: str = "") -> Iterator[ControlPlane]:
    """A control plane of its own in a temporary state directory, removed afterwards;
    with ``keep_logs`` its components' logs (the fake kubelets' included) are copied
    to ``keep_logs/label`` first."""
    state = Path(tempfile.mkdtemp(prefix="dgxscale", dir="/tmp"))
    plane = ControlPlane(state)
    plane.up()
    try:
        yield plane
    finally:
        plane.down()
        if keep_logs is not None:
            kept = keep_logs / label
            shutil.copytree(plane.logs_dir, kept, dirs_exist_ok=True)
            _say(f"logs kept in {kept}")
        shutil.rmtree(state, ignore_errors=True)


async def one_size(nodes: int, pods: int, args: argparse.Namespace) -> list[Run]:
    runs = []
    with control_plane(args.keep_logs, f"{nodes}-nodes") as plane:
        kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(plane.kubeconfig)]
        kube = await KubeClient.connect(plane.kubeconfig)
        try:
            # Sides alternate round by round: a machine whose speed drifts (a shared
            # host) then weighs on both sides alike, and the medians compare them.
            for _ in range(args.rounds):
                for side in args.sides:
                    runs.append(await run_side(side, plane, kube, kubectl, nodes, pods,
                                               args.idle_window, args.settle))
        finally:
            await kube.close()
    return runs


def _stop_on_sigterm() -> None:
    """SIGTERM ends the run through its ``finally`` blocks, stopping what it started."""
    def handler(_signum: int, _frame: object) -> None:
        raise SystemExit("scale: terminated")

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    _stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[20],
                        help="node counts to run (default 20; the goal: 140 500 1000)")
    parser.add_argument("--pods", type=int, default=None,
                        help="pods per burst (default 8 per node, one per GPU, at most 1000)")
    parser.add_argument("--sides", nargs="+", choices=("kwok", "dgxsim"),
                        default=["kwok", "dgxsim"])
    parser.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="bursts per side and size, the sides alternating (medians "
                             "compared when R > 1)")
    parser.add_argument("--idle-window", type=float, default=15.0, metavar="S")
    parser.add_argument("--settle", type=float, default=10.0, metavar="S")
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR",
                        help="copy each size's component logs (the fake kubelets' "
                             "included) to DIR/<N>-nodes before its state is removed")
    args = parser.parse_args()
    if "kwok" in args.sides:
        ensure_tools(("kwok",))
    runs: list[Run] = []
    for n in args.nodes:
        pods = args.pods or min(8 * n, 1000)
        runs += asyncio.run(one_size(n, pods, args))
    report(runs)


if __name__ == "__main__":
    main()
