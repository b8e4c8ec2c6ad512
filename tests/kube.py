"""Test helpers for talking to the real control plane with the built kubectl."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpumodel.inventory import NodeInventory, held_devices
from gpumodel.vocabulary import INVENTORY_ANNOTATION
from localkube import ControlPlane, ControlPlaneState
from localkube.toolchain import bin_dir


@dataclass
class Cluster:
    """A running control plane and helpers to talk to it."""

    plane: ControlPlane
    state: ControlPlaneState

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir() / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def logs(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.plane.logs_dir.glob("*.log"))}

    def labels(self, node: str) -> dict[str, str]:
        return dict(self.kubectl_json("get", "node", node)["metadata"].get("labels") or {})

    def allocatable(self, node: str) -> dict[str, str]:
        return dict(self.kubectl_json("get", "node", node)["status"]["allocatable"])

    def inventory(self, node: str) -> NodeInventory:
        """The node's inventory annotation, as the operator reads it."""
        annotations = self.kubectl_json("get", "node", node)["metadata"]["annotations"]
        return NodeInventory.model_validate_json(annotations[INVENTORY_ANNOTATION])

    def held(self, node: str, inventory: NodeInventory | None = None) -> dict[str, str]:
        """Device ID -> the pod holding it on ``node``, as the operator reads it: the
        owners its inventory names and the devices its pods record holding."""
        pods = self.kubectl_json("get", "pods", "-A", "--field-selector",
                                 f"spec.nodeName={node}")["items"]
        return held_devices(self.inventory(node) if inventory is None else inventory, pods)


def dgxsim(*args: str, env: dict[str, str] | None = None, timeout_s: float = 400.0
           ) -> subprocess.CompletedProcess[str]:
    """The ``dgxsim`` command as a user runs it, in a fresh process."""
    import sys

    return subprocess.run([sys.executable, "-m", "dgxsim", *args], capture_output=True,
                          text=True, timeout=timeout_s, env={**os.environ, **(env or {})})


@contextmanager
def cli_cluster(state: Path, *up_args: str) -> Iterator[Path]:
    """``dgxsim up`` in ``state`` with ``up_args``; ``dgxsim down`` whatever happens."""
    up = dgxsim("up", "--state-dir", str(state), *up_args)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:
        dgxsim("down", "--state-dir", str(state))


def cli_kubectl(state: Path, *args: str, stdin: str | None = None) -> Any:
    """kubectl against the cluster of ``state``; decoded JSON when asked for ``-o json``."""
    out = subprocess.run([str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig"),
                          *args], input=stdin, capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return json.loads(out) if "-o" in args and "json" in args else out


def unique_name(prefix: str, request: Any) -> str:
    """A DNS-1123 name for a test: its words, shortened, and a hash of its node ID."""
    words = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[5:30].strip("-")
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    return f"{prefix}-{words}-{digest}"


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float = 120.0,
             every_s: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], crash: bool = False) -> None:
    """End a process this test started: SIGTERM (SIGKILL with ``crash``), then SIGKILL
    if it has not exited within 30 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


class AgentProcess:
    """``dgxsim agent`` as a subprocess against a test cluster: N nodes named PREFIX-i."""

    def __init__(self, cluster: Cluster, state_dir: Path, nodes: int, prefix: str,
                 *extra: str) -> None:
        self.cluster, self.state_dir, self.nodes, self.prefix = cluster, state_dir, nodes, prefix
        self.extra = extra
        self.log = state_dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.nodes)]

    def allocations(self, node: str) -> dict[str, str]:
        """Device ID -> owner (``namespace/pod/container``) in the node's own state."""
        from dgxnode.store import NodeStore
        from dgxsim.statedir import node_dir

        return dict(NodeStore(node_dir(self.state_dir, node)).load().allocations)

    def start(self, timeout_s: float = 60.0) -> None:
        import sys
        import time

        self.state_dir.mkdir(parents=True, exist_ok=True)
        seen = self.log.stat().st_size if self.log.exists() else 0  # a restart's own line
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dgxsim", "agent", "--state-dir", str(self.state_dir),
                 "--kubeconfig", str(self.cluster.kubeconfig), "--nodes", str(self.nodes),
                 "--name-prefix", self.prefix, *self.extra],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {self.log.read_text()[-2000:]}")
            if b"node agent ready" in self.log.read_bytes()[seen:]:
                return
            time.sleep(0.2)
        raise AssertionError(f"agent not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The agent stopped (SIGSTOP) for the block, as a kubelet that lags behind."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def delete_nodes(self) -> None:
        for name in self.names:
            self.cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")


def recorded(state: Path, name: str) -> dict[str, Any]:
    """The record ``dgxsim up`` keeps of component ``name`` (pid, restarts, log)."""
    processes = json.loads((state / "controlplane.json").read_text())["processes"]
    return dict(next(p for p in processes if p["name"] == name))


def status_line(state: Path, name: str) -> str:
    """``dgxsim status``'s line for component ``name`` ('' if none)."""
    out = dgxsim("status", "--state-dir", str(state)).stdout
    return next((line.strip() for line in out.splitlines()
                 if line.strip().startswith(name + " ")), "")


def kill_and_see_it_back(state: Path, name: str, timeout_s: float = 90.0) -> dict[str, Any]:
    """SIGKILL component ``name`` of a ``dgxsim up`` cluster by its recorded pid; wait
    until the supervisor restarted it (a new pid, one more restart) and ``dgxsim
    status`` shows it healthy with that restart count. Returns the new record."""
    before = recorded(state, name)
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(f"{name} restarted", lambda: (r := recorded(state, name))["pid"] !=
                     before["pid"] and r, timeout_s=timeout_s)
    assert after["restarts"] == before["restarts"] + 1
    wait_for(f"status shows {name} back and healthy", lambda: status_line(state, name).endswith(
        f"restarts {after['restarts']}, health ok"), timeout_s=timeout_s)
    assert "exited; restart" in Path(after["log"]).read_text()
    return after
