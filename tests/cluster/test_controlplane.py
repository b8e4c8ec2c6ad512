"""The local control plane is a real Kubernetes: version, readiness, scheduling."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kube import Cluster, wait_for

from localkube.toolchain import KUBERNETES_VERSION


def test_readyz_answers_ok(control_plane: Cluster) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_kubectl_reports_the_pinned_server_version(control_plane: Cluster) -> None:
    version = control_plane.kubectl_json("version")
    assert version["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert version["serverVersion"]["minor"] == KUBERNETES_VERSION.split(".")[1]


def _ready_node(name: str) -> dict[str, object]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": "256", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": "8"}
    return {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "test node", "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
        }
    }


def test_scheduler_binds_a_gpu_pod_to_a_node_with_gpu_capacity(control_plane: Cluster) -> None:
    import json

    node = "dgx-sched-test"
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
    }))
    control_plane.kubectl("patch", "node", node, "--subresource=status", "--type=merge",
                          "-p", json.dumps(_ready_node(node)))
    allocatable = control_plane.kubectl_json("get", "node", node)["status"]["allocatable"]
    assert allocatable["nvidia.com/gpu"] == "8"

    # The ServiceAccount admission plugin needs the namespace's default account.
    wait_for("default service account", lambda: control_plane.kubectl(
        "get", "serviceaccount", "default", check=False).returncode == 0)
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "two-gpus", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "main", "image": "dgxsim/workload:test",
                "resources": {"limits": {"nvidia.com/gpu": "2"}},
            }],
        },
    }))
    bound = wait_for("binding", lambda: control_plane.kubectl_json(
        "get", "pod", "two-gpus").get("spec", {}).get("nodeName"))
    assert bound == node
    events = control_plane.kubectl_json(
        "get", "events", "--field-selector", "involvedObject.name=two-gpus")
    assert any(e["reason"] == "Scheduled" for e in events["items"])


def test_the_api_server_does_not_log_endpoint_errors(control_plane: Cluster) -> None:
    """The endpoint reconciler (every 10 s) would try to publish the loopback advertise
    address as the `kubernetes` Service's endpoint, which Endpoints refuse."""
    record = next(p for p in control_plane.state.processes if p.name == "kube-apiserver")
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    age_s = uptime_s - record.start_ticks / os.sysconf("SC_CLK_TCK")
    time.sleep(max(0.0, 21.0 - age_s))  # two reconciler periods have passed
    log = control_plane.logs()["kube-apiserver"].read_text()
    assert "loopback" not in log, [line for line in log.splitlines() if "loopback" in line][:2]
