"""``dgxsim operator`` as a subprocess against the test control plane, and fake DGX nodes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kube import Cluster, stop_process, unique_name, wait_for

from dgxnode.node import SimNode
from gpumodel.vocabulary import INVENTORY_ANNOTATION

TIMEOUT_S = 90.0
__all__ = ["OperatorProcess", "dgxjob", "fake_node", "job_pods", "job_status", "unique_name",
           "wait_for"]



class OperatorProcess:
    """One operator subprocess; ``stop`` ends it (SIGTERM, or SIGKILL to simulate a crash)."""

    def __init__(self, cluster: Cluster, log: Path, *env: tuple[str, str]) -> None:
        self.cluster, self.log, self.env = cluster, log, dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import os

        env = {**os.environ, "DGXSIM_OPERATOR_DYNAMIC__SETTLE_S": "0.5",
               "DGXSIM_OPERATOR_DYNAMIC__MIN_INTERVAL_S": "2",
               "DGXSIM_OPERATOR_DYNAMIC__INTERVAL_S": "0.5",
               "DGXSIM_OPERATOR_PLACEMENT__RETRY_DELAY_S": "1", **self.env}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dgxsim", "operator", "--kubeconfig",
                 str(self.cluster.kubeconfig), "--metrics-port", "0"],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_for("operator startup", self._started)

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited: {self.log.read_text()[-3000:]}")
        return b"Activity 'startup' succeeded" in self.log.read_bytes().split(
            b"--- start ---")[-1]

    def stop(self, crash: bool = False) -> None:
        if self.proc is not None:
            stop_process(self.proc, crash)
        self.proc = None
        with open(self.log, "ab") as out:
            out.write(b"\n--- start ---\n")

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


def fake_node(cluster: Cluster, name: str, labels: dict[str, str] | None = None,
              sim: SimNode | None = None, gpus_free: int = 8) -> SimNode:
    """A Ready Node with a DGX A100 inventory annotation and capacity, but no agent."""
    sim = sim or SimNode.create(name)
    inventory = sim.inventory()
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                     "annotations": {INVENTORY_ANNOTATION: inventory.model_dump_json(
                         exclude_none=True)}},
    }))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": "256", "memory": "1Ti", "pods": "110",
                 **{k: str(v) for k, v in inventory.resources().items()}}
    cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {
                        "capacity": resources, "allocatable": resources,
                        "conditions": [{"type": "Ready", "status": "True",
                                        "reason": "KubeletReady", "message": "test node",
                                        "lastHeartbeatTime": now,
                                        "lastTransitionTime": now}]}}))
    return sim


def dgxjob(name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
                       "metadata": {"name": name}, "spec": spec})


def job_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    job = cluster.kubectl_json("get", "dgxjob", name, "-n", namespace)
    return dict(job.get("status") or {})


def job_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(cluster.kubectl_json("get", "pods", "-n", namespace, "-l",
                                     f"dgxsim.io/job={name}")["items"])
