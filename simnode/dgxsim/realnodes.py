"""``dgxsim up --real-nodes K``: simulated DGX nodes under a genuine kubelet, beside the others.

:mod:`localkube.realnode` runs the machinery (per node a containerd, a
kubelet, a network namespace); this module composes it with the node: the
pause and workload images (the workload image holds this very dgxsim, so job
containers have the ``dgxsim`` entrypoint and ``nvidia-smi``), and per real
node ``dgxsim node run`` beside its kubelet, exactly as the chart's DaemonSet
runs it on a kind worker: the device plugin registers at that kubelet's
device-plugin directory, the node's CDI specification goes to that node's
containerd's CDI directory, and the node asks that kubelet's PodResources API
which devices pods hold.

With ``--real-node-agent chart`` no such process starts: the Helm chart's node
DaemonSet runs the node in a pod there, with the values :func:`chart_values`
gives (``dgxsim real-node-values`` prints them).

Every process is recorded with the control plane, so the supervisor restarts
it and ``status`` lists it. ``down`` must stop the kubelets before containers
are removed (a kubelet would start them again) and each containerd after, then
remove the namespaces, mounts and cgroups: :func:`stop_real_nodes`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dgxsim.statedir import node_dir
from gpumodel.vocabulary import (
    DGX_NODE_LABEL,
    GPU_RESOURCE,
    HOSTNAME_LABEL,
    MIG_CONFIG,
    NVIDIA_PREFIX,
)
from localkube import ControlPlane, ControlPlaneState
from localkube.containerd import Containerd
from localkube.images import ImageArchive, pause_image, python_image
from localkube.processes import is_alive, stop
from localkube.realnode import RealNodeRecord, RealNodesState, Runtime, free_slots
from localkube.supervisor import SUPERVISOR

REAL_NODE_PREFIX = "dgx-real"
WORKLOAD_REPOSITORY = "registry.local/dgxsim/workload"
WORKLOAD_ALIAS = "docker.io/library/dgxsim:dev"
"""What the kind walkthrough's Jobs (``kind/*.yaml``) name: ``make image`` builds it there."""
READY_TIMEOUT_S = 300.0

Say = Callable[[str], None]


def real_node_names(count: int) -> list[str]:
    return [f"{REAL_NODE_PREFIX}-{i}" for i in range(count)]


def kubelet_process(name: str) -> str:
    return f"kubelet-{name}"


def relay_process(name: str) -> str:
    return f"relay-{name}"


def node_process(name: str) -> str:
    return f"node-{name}"


def containerd_process(name: str) -> str:
    return f"containerd-{name}"


# ------------------------------------------------------------------ images


def project_wheel(directory: Path) -> Path:
    """dgxsim as a wheel: built from the checkout, or packed from the installed files."""
    from localkube.toolchain import REPO_ROOT, _in_checkout

    if _in_checkout():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
             str(directory), str(REPO_ROOT)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building dgxsim's wheel failed: {result.stderr.strip()[-300:]}")
        return next(directory.glob("dgxsim-*.whl"))
    return _wheel_from_installed(directory)


def _wheel_from_installed(directory: Path) -> Path:
    """The installed distribution's files (its RECORD names them) zipped back into a wheel."""
    from importlib.metadata import distribution

    dist = distribution("dgxsim")
    path = directory / f"dgxsim-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            located = Path(str(dist.locate_file(file)))
            if located.is_file() and "__pycache__" not in file.parts \
                    and not str(file).startswith(".."):
                wheel.write(located, str(file))
    return path


def workload_image(say: Say) -> ImageArchive:
    """Debian's python3 with this dgxsim installed, tagged by the wheel's content."""
    if sys.version_info[:2] != (3, 11):
        raise RuntimeError("the workload image installs dgxsim for Debian 12's Python 3.11; "
                           "run dgxsim with Python 3.11 for real nodes")
    with tempfile.TemporaryDirectory(prefix="dgxsim-wheel-") as tmp:
        wheel = project_wheel(Path(tmp))
        import hashlib

        tag = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
        return python_image(f"{WORKLOAD_REPOSITORY}:{tag}", [wheel],
                            [sys.executable, "-m", "pip"], say, entrypoint="dgxsim")


# ------------------------------------------------------------------ start


def node_run_argv(plane: ControlPlane, record: RealNodeRecord, containerd: Containerd,
                  options: Any) -> list[str]:
    return [sys.executable, "-m", "dgxsim", "node", "run",
            "--state-dir", str(node_dir(plane.state_dir, record.name)),
            "--node-name", record.name, "--kind", options.kind,
            "--mig-strategy", options.mig_strategy,
            "--device-plugin-dir", str(record.device_plugin_link),
            "--cdi-dir", str(containerd.cdi_dir), "--kubeconfig", str(plane.kubeconfig),
            "--pod-resources-socket", str(record.pod_resources_socket),
            "--time-scale", repr(options.time_scale)]


def start_real_nodes(plane: ControlPlane, state: ControlPlaneState, count: int,
                     options: Any, say: Say) -> RealNodesState:
    """The images, then per node its network, containerd, relay, kubelet and node process;
    each waited for. On any failure what was set up is removed again."""
    runtime = Runtime(plane.state_dir)
    try:
        return _start(plane, state, runtime, count, options, say)
    except BaseException:
        stop_real_nodes(plane)
        raise


def _start(plane: ControlPlane, state: ControlPlaneState, runtime: Runtime, count: int,
           options: Any, say: Say) -> RealNodesState:
    from localkube.processes import free_port

    pause = pause_image(say)
    workload = workload_image(say)
    agent = getattr(options, "real_node_agent", "process")
    records: list[RealNodeRecord] = []
    real = RealNodesState(runtime_dir=runtime.dir, tag=runtime.tag,
                          sandbox_image=pause.reference, workload_image=workload.reference,
                          agent=agent, nodes=records)
    for name, slot in zip(real_node_names(count), free_slots(count), strict=True):
        t0 = time.monotonic()
        record = runtime.plan_node(name, slot, free_port())
        records.append(record)
        runtime.save(real.model_copy(update={"nodes": list(records)}))
        containerd = runtime.setup_node(record, plane.pki, state.ports.apiserver,
                                        pause.reference)
        plane.start_extra(containerd_process(name), containerd.argv(), containerd.ready)
        containerd.import_image(pause)
        containerd.import_image(workload, WORKLOAD_ALIAS)
        plane.start_extra(relay_process(name), [
            sys.executable, "-m", "localkube.relay", "--netns", str(record.netns_path),
            "--port", str(state.ports.apiserver), "--port", str(record.stream_port)],
            lambda: True)
        labels = [f"{DGX_NODE_LABEL}=true"]
        if options.mig_config:
            labels.append(f"{MIG_CONFIG}={options.mig_config}")
        plane.start_extra(kubelet_process(name), [
            *runtime.kubelet_argv(record), f"--node-labels={','.join(labels)}"],
            _node_ready(plane, name, devices=False), READY_TIMEOUT_S)
        if agent == "process":
            plane.start_extra(node_process(name),
                              node_run_argv(plane, record, containerd, options),
                              _node_ready(plane, name, devices=True), READY_TIMEOUT_S)
        say(f"real node {name} Ready at {record.node_ip} in {time.monotonic() - t0:.1f}s "
            f"(its containerd holds {workload.reference}, also as {WORKLOAD_ALIAS})"
            + ("" if agent == "process" else
               "; no GPUs until the chart's node DaemonSet runs there"))
    return real.model_copy(update={"nodes": records})


def _node_ready(plane: ControlPlane, name: str, devices: bool) -> Callable[[], bool]:
    """Whether Node ``name`` is Ready (and, with ``devices``, advertises GPUs)."""
    from dgxsim.kubeapi import run_reads
    from kubewire import KubeError

    async def get(kube: Any) -> Any:
        return await kube.read_node(name)

    def check() -> bool:
        try:
            node = run_reads(plane.kubeconfig, get)
        except KubeError:  # not registered yet, or the API server is busy
            return False
        status = node.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", []))
        advertised = any(k.startswith(NVIDIA_PREFIX) and v != "0"
                         for k, v in status.get("allocatable", {}).items())
        return ready and (advertised or not devices)

    return check


# ------------------------------------------------------------------ chart


def chart_values(state_dir: Path, apiserver_port: int, names: list[str]) -> dict[str, Any]:
    """Values with which the Helm chart's node DaemonSet runs on the real nodes of
    ``up --real-node-agent chart``: each node's own folders (they share one file system)
    chosen by ``$(NODE_NAME)``, the node's network (pods there have no route to the
    API server's Service address) with the API server on the host's loopback, and the
    workload image every real node's containerd holds. The node pods go to the real
    nodes ``names`` only (kubelet-less nodes beside them are their agent's), and so does
    ``helm test``'s Job (to the first). The chart's operator stays off (``up`` runs one)."""
    runtime = Runtime(state_dir)
    var = "$(NODE_NAME)"
    record = runtime.plan_node(var, 0, 1)  # the layout only; nothing is made
    base = runtime.node_dir(var).parent

    def per_node(path: Path) -> dict[str, str]:
        return {"path": str(base), "subPathExpr": str(path.relative_to(base))}

    repository, tag = WORKLOAD_ALIAS.rsplit("/", 1)[1].split(":")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "hostPaths": {
            "devicePlugins": per_node(record.device_plugin_dir),
            "podResources": per_node(record.pod_resources_dir),
            "cdi": per_node(runtime.containerd(record).cdi_dir),
            "state": {"path": str(node_dir(runtime.state_dir, var).parent), "subPathExpr": var},
        },
        "hostNetwork": True,
        "apiServer": {"host": "127.0.0.1", "port": str(apiserver_port)},
        "dcgmMetricsPort": 0,
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{
                "key": HOSTNAME_LABEL, "operator": "In", "values": list(names)}]}]}}},
        "gpuTest": {"nodeSelector": {HOSTNAME_LABEL: names[0]}} if names else {},
        "operator": {"enabled": False},
    }


# ------------------------------------------------------------------ stop


def stop_real_nodes(plane: ControlPlane) -> list[str]:
    """Stop the supervisor and the kubelets, remove every container, then (after the other
    processes) the namespaces, mounts and cgroups. Returns what was removed."""
    runtime = Runtime(plane.state_dir)
    real = runtime.load()
    if real is None:
        return []
    state = plane.load_state()
    records = state.processes if state else []
    names = {n.name for n in real.nodes}
    first = {SUPERVISOR} | {kubelet_process(n) for n in names} | {node_process(n) for n in names}
    for record in records:
        if record.name in first and is_alive(record):
            stop(record)
    removed = [cid for node in real.nodes for cid in runtime.containerd(node).remove_containers()]
    last = {relay_process(n) for n in names} | {containerd_process(n) for n in names}
    for record in reversed(records):
        if record.name in last and is_alive(record):
            stop(record)
    runtime.teardown(real)
    return [f"{len(removed)} containers", *(f"network namespace {n.netns}" for n in real.nodes)]


def describe(plane: ControlPlane) -> list[str]:
    """Lines for ``dgxsim status``: each real node, its address and the workload image."""
    real = Runtime(plane.state_dir).load()
    if real is None:
        return []
    lines = [f"real node:  {n.name} at {n.node_ip} (network namespace {n.netns}, "
             f"kubelet root {n.root_dir})" for n in real.nodes]
    if real.agent == "chart" and real.nodes:
        lines.append("real nodes' dgxsim node: the Helm chart's node DaemonSet "
                     "(`dgxsim real-node-values` prints its values)")
    if real.workload_image:
        lines.append(f"workload image: {real.workload_image} (containerd namespace k8s.io; "
                     f"{GPU_RESOURCE} pods use it)")
    return lines
