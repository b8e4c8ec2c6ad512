"""A real control plane with one node agent, for the end-to-end benchmarks.

``with local_cluster(nodes, *agent_args) as kubectl:`` starts etcd, the API
server, the controller manager and the scheduler on free loopback ports in a
temporary directory, then ``dgxsim agent`` with ``nodes`` simulated DGX nodes
(named ``dgx-0`` ...), waits until the agent is ready and the default service
account exists, and yields the kubectl command line for that cluster. Everything
it started is stopped, by process id, on the way out.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localkube import ControlPlane
from localkube.toolchain import bin_dir


@contextmanager
def local_cluster(nodes: int, *agent_args: str) -> Iterator[list[str]]:
    with local_cluster_and_agent(nodes, *agent_args) as (kubectl, _agent):
        yield kubectl


@contextmanager
def local_cluster_and_agent(nodes: int, *agent_args: str
                            ) -> Iterator[tuple[list[str], subprocess.Popen[bytes]]]:
    """:func:`local_cluster`, also yielding the agent's process (to measure it)."""
    state = Path(tempfile.mkdtemp(prefix="dgxb", dir="/tmp"))
    plane = ControlPlane(state)
    plane.up()
    agent = None
    try:
        log_path = state / "agent.log"
        with log_path.open("wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "dgxsim", "agent", "--state-dir", str(state),
                 "--kubeconfig", str(plane.kubeconfig), "--nodes", str(nodes),
                 "--log-level", "WARNING", *agent_args], stdout=log, stderr=subprocess.STDOUT)
        while b"node agent ready" not in log_path.read_bytes():
            if agent.poll() is not None:
                raise SystemExit(log_path.read_text())
            time.sleep(0.2)
        kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(plane.kubeconfig)]
        while subprocess.run([*kubectl, "get", "sa", "default"], capture_output=True
                             ).returncode != 0:
            time.sleep(0.2)
        yield kubectl, agent
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=60)
        plane.down()
        shutil.rmtree(state, ignore_errors=True)
