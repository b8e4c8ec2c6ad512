"""The node agent and device plugins on the real control plane (kubelet-less mode)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import AgentProcess, Cluster, wait_for

from gpumodel.node import build_node_hardware

TIMEOUT_S = 120.0



@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("agent"), 2, "dgxa",
                           "--time-scale", "1")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.delete_nodes()


def job(name: str, resource: str, count: int, duration: str | None, completions: int = 1,
        node_prefix: str = "dgxa", annotations: dict[str, str] | None = None) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "completions": completions, "parallelism": completions, "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {
                    **({"dgxsim.io/duration": duration} if duration else {}),
                    **(annotations or {})}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"dgxsim.io/node": "true"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [{
                            "key": "kubernetes.io/hostname", "operator": "In",
                            "values": [f"{node_prefix}-0", f"{node_prefix}-1"]}]}]}}},
                    "containers": [{"name": "main", "image": "dgxsim/workload",
                                    "resources": {"limits": {resource: str(count)}}}],
                },
            },
        },
    })


def pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"])


def job_complete(cluster: Cluster, namespace: str, name: str) -> bool:
    status = cluster.kubectl_json("get", "job", name, "-n", namespace).get("status", {})
    return any(c["type"] == "Complete" and c["status"] == "True"
               for c in status.get("conditions", []))


def test_nodes_are_ready_dgx_nodes_with_eight_gpus(control_plane: Cluster,
                                                   agent: AgentProcess) -> None:
    for name in agent.names:
        node = control_plane.kubectl_json("get", "node", name)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["nvidia.com/mig.capable"] == "true"
        assert labels["nvidia.com/mig.strategy"] == "mixed"
        assert "dgxsim.io/inventory" in node["metadata"]["annotations"]
        assert labels["dgxsim.io/leaf-switch"] == "su-0", "a scalable unit holds 20 nodes"
    lease = control_plane.kubectl_json("get", "lease", agent.names[0], "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == agent.names[0]


def test_two_gpu_job_completes_on_gpus_under_one_pcie_switch(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-",
                          stdin=job("two-gpus", "nvidia.com/gpu", 2, "2s"))
    wait_for("job completion", lambda: job_complete(control_plane, namespace, "two-gpus"))
    (pod,) = pods(control_plane, namespace, "job-name=two-gpus")
    assert pod["status"]["phase"] == "Succeeded"
    annotations = pod["metadata"]["annotations"]
    visible = annotations["dgxsim.io/env.main.NVIDIA_VISIBLE_DEVICES"].split(",")
    assert len(visible) == 2
    gpus = {g.uuid: g for g in build_node_hardware(pod["spec"]["nodeName"]).gpus}
    assert all(v in gpus for v in visible), "NVIDIA_VISIBLE_DEVICES holds the GPUs' UUIDs"
    assert len({gpus[v].pcie_switch for v in visible}) == 1
    assert float(annotations["dgxsim.io/predicted-duration-s"]) == 2.0
    # Start and finish ride on the pod's two status writes (pods/status keeps annotations).
    ran = float(annotations["dgxsim.io/sim-finished-s"]) - float(
        annotations["dgxsim.io/sim-started-s"])
    assert ran == pytest.approx(2.0, abs=1e-3)


def _relabel(cluster: Cluster, agent: AgentProcess, config: str) -> None:
    for name in agent.names:
        cluster.kubectl("label", "node", name, f"nvidia.com/mig.config={config}", "--overwrite")
    def applied(name: str) -> bool:
        meta = cluster.kubectl_json("get", "node", name)["metadata"]
        inventory = json.loads(meta["annotations"]["dgxsim.io/inventory"])
        return bool(meta["labels"].get("nvidia.com/mig.config.state") == "success"
                    and inventory.get("mig_config") == config)

    for name in agent.names:
        wait_for(f"{name} {config}", lambda n=name: applied(n))


def test_balanced_nodes_run_32_slices_and_the_33rd_waits(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    _relabel(control_plane, agent, "all-balanced")
    try:
        _run_32_and_one(control_plane, agent, namespace)
    finally:
        control_plane.kubectl("delete", "job", "slices", "-n", namespace, "--ignore-not-found",
                              "--cascade=foreground", "--wait=true", "--timeout=120s")
        _relabel(control_plane, agent, "all-disabled")


def _run_32_and_one(control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    for name in agent.names:
        assert {k: v for k, v in control_plane.allocatable(name).items()
                if k.startswith("nvidia.com/")} == {
            "nvidia.com/gpu": "0", "nvidia.com/mig-1g.5gb": "16",
            "nvidia.com/mig-2g.10gb": "8", "nvidia.com/mig-3g.20gb": "8"}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "slices", "nvidia.com/mig-1g.5gb", 1, "15s", completions=33))

    def running_and_pending() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        items = pods(control_plane, namespace, "job-name=slices")
        running = [p for p in items if p["status"].get("phase") == "Running"]
        pending = [p for p in items if p["status"].get("phase") == "Pending"]
        return (running, pending) if len(running) == 32 and len(pending) == 1 else None

    running, pending = wait_for("32 running, 1 pending", running_and_pending)
    scheduled = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "False"
    assert "Insufficient nvidia.com/mig-1g.5gb" in scheduled["message"]
    held = [p["metadata"]["annotations"]["dgxsim.io/env.main.NVIDIA_VISIBLE_DEVICES"]
            for p in running]
    assert len(set(held)) == 32, "no MIG device is given to two pods"
    wait_for("33 completions", lambda: job_complete(control_plane, namespace, "slices"))


def test_agent_restart_keeps_allocations_and_loses_no_pod(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "survivor", "nvidia.com/gpu", 2, "12s", completions=6))
    def six_running() -> list[dict[str, Any]] | None:
        found = [p for p in pods(control_plane, namespace, "job-name=survivor")
                 if p["status"].get("phase") == "Running"]
        return found if len(found) == 6 else None

    running = wait_for("6 running", six_running)
    before = {p["metadata"]["uid"]: p["metadata"]["annotations"][
        "dgxsim.io/env.main.NVIDIA_VISIBLE_DEVICES"] for p in running}
    agent.stop()
    agent.start()
    wait_for("job completion", lambda: job_complete(control_plane, namespace, "survivor"))
    after = pods(control_plane, namespace, "job-name=survivor")
    assert {p["metadata"]["uid"] for p in after} == set(before), "no pod lost or replaced"
    devices = [d for held in before.values() for d in held.split(",")]
    assert len(devices) == len(set(devices)) == 12, "no device given out twice"
    for pod in after:
        annotation = pod["metadata"]["annotations"]["dgxsim.io/env.main.NVIDIA_VISIBLE_DEVICES"]
        assert annotation == before[pod["metadata"]["uid"]]


def test_unknown_mig_profile_stays_pending_with_the_schedulers_reason(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "no-such-slice", "nvidia.com/mig-9g.99gb", 1, "1s"))
    pod = wait_for("FailedScheduling", lambda: next(iter(
        [p for p in pods(control_plane, namespace, "job-name=no-such-slice")
         if any(c["type"] == "PodScheduled" and c["status"] == "False"
                for c in p["status"].get("conditions", []))]), None))
    condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert "Insufficient nvidia.com/mig-9g.99gb" in condition["message"]
    for name in agent.names:
        assert control_plane.allocatable(name)["nvidia.com/gpu"] == "8"


def test_malformed_annotation_fails_the_pod_with_the_reason(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "bad-duration", "nvidia.com/gpu", 1, "soon"))
    pod = wait_for("failed pod", lambda: next(iter(
        [p for p in pods(control_plane, namespace, "job-name=bad-duration")
         if p["status"].get("phase") == "Failed"]), None))
    assert pod["status"]["reason"] == "InvalidWorkload"
    assert "dgxsim.io/duration: 'soon' is not a duration" in pod["status"]["message"]
    events = control_plane.kubectl_json("get", "events", "-n", namespace, "--field-selector",
                                        f"involvedObject.name={pod['metadata']['name']}")
    assert any(e["reason"] == "InvalidWorkload" for e in events["items"])
    wait_for("device released", lambda: all(
        control_plane.allocatable(n)["nvidia.com/gpu"] == "8" for n in agent.names))


def test_fault_injection_flips_health_both_ways(
        control_plane: Cluster, agent: AgentProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    node = agent.names[1]
    base = [sys.executable, "-m", "dgxsim", "fault"]
    args = ["--state-dir", str(agent.state_dir), "--node", node, "--gpu", "6"]
    subprocess.run([*base, "inject", *args, "--xid", "79"], check=True, capture_output=True)
    wait_for("unhealthy GPU", lambda: control_plane.allocatable(node)["nvidia.com/gpu"] == "7")
    capacity = control_plane.kubectl_json("get", "node", node)["status"]["capacity"]
    assert capacity["nvidia.com/gpu"] == "8"
    subprocess.run([*base, "clear", *args], check=True, capture_output=True)
    wait_for("healthy again", lambda: control_plane.allocatable(node)["nvidia.com/gpu"] == "8")


def test_workload_annotation_runs_for_the_predicted_time(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    from gpumodel.perf.model import PerfRequest, predict

    spec = {"workload": "resnet50-train", "steps": 10, "precision": "fp16", "batch": 256}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "predicted", "nvidia.com/gpu", 2, None, annotations={
            "dgxsim.io/workload": json.dumps(spec)}))
    wait_for("job completion", lambda: job_complete(control_plane, namespace, "predicted"))
    (pod,) = pods(control_plane, namespace, "job-name=predicted")
    expected = predict(PerfRequest(workload="resnet50-train", gpu="a100-40gb",
                                   gpus_per_node=2, precision="fp16", batch=256))
    predicted = float(pod["metadata"]["annotations"]["dgxsim.io/predicted-duration-s"])
    assert predicted == pytest.approx(10 * expected.step_time_s, rel=1e-3)


def test_unknown_workload_fails_the_pod_with_the_reason(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "unknown-workload", "nvidia.com/gpu", 1, None, annotations={
            "dgxsim.io/workload": '{"workload": "quantum-chess"}'}))
    pod = wait_for("failed pod", lambda: next(iter(
        [p for p in pods(control_plane, namespace, "job-name=unknown-workload")
         if p["status"].get("phase") == "Failed"]), None))
    assert pod["status"]["reason"] == "InvalidWorkload"
    assert "unknown workload 'quantum-chess'" in pod["status"]["message"]


def test_deleted_pod_keeps_running_through_its_shutdown_time_then_frees_its_gpus(
        control_plane: Cluster, agent: AgentProcess, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=job(
        "graceful", "nvidia.com/gpu", 4, None,
        annotations={"dgxsim.io/shutdown-seconds": "4"}))
    pod = wait_for("running pod", lambda: next(iter(
        [p for p in pods(control_plane, namespace, "job-name=graceful")
         if p["status"].get("phase") == "Running"]), None))
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    assert control_plane.allocatable(node)["nvidia.com/gpu"] == "8"
    control_plane.kubectl("delete", "job", "graceful", "-n", namespace, "--cascade=orphan")
    control_plane.kubectl("delete", "pod", name, "-n", namespace, "--grace-period=30",
                          "--wait=false")
    terminating = control_plane.kubectl_json("get", "pod", name, "-n", namespace)
    assert terminating["metadata"].get("deletionTimestamp"), "still shutting down"
    wait_for("pod removed", lambda: control_plane.kubectl(
        "get", "pod", name, "-n", namespace, check=False).returncode != 0)

    def owned_here() -> list[str]:
        return [d for d, pod in control_plane.held(node).items()
                if pod.startswith(f"{namespace}/")]

    wait_for("devices free", lambda: not owned_here())


def test_a_deleted_node_registers_again(control_plane: Cluster, agent: AgentProcess) -> None:
    node = agent.names[0]
    uid = control_plane.kubectl_json("get", "node", node)["metadata"]["uid"]
    control_plane.kubectl("delete", "node", node)

    def back() -> bool:
        result = control_plane.kubectl("get", "node", node, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        again = json.loads(result.stdout)
        return again["metadata"]["uid"] != uid and again["status"].get(
            "allocatable", {}).get("nvidia.com/gpu") == "8"

    wait_for("node registered again", back)


def test_a_ready_condition_overwritten_by_another_writer_is_reported_again(
        control_plane: Cluster, agent: AgentProcess) -> None:
    """The node lifecycle controller marks Ready ``Unknown`` when it heard nothing in its
    grace period; the node, seeing its Node say otherwise than it reported, reports
    again at once (as the kubelet does), not at the 5-minute heartbeat."""
    node = agent.names[1]
    control_plane.kubectl("patch", "node", node, "--subresource=status", "--type=strategic",
                          "-p", json.dumps({"status": {"conditions": [{
                              "type": "Ready", "status": "Unknown",
                              "reason": "NodeStatusUnknown",
                              "message": "Kubelet stopped posting node status."}]}}))

    def ready() -> dict[str, Any]:
        conditions = control_plane.kubectl_json("get", "node", node)["status"]["conditions"]
        return next(c for c in conditions if c["type"] == "Ready")

    wait_for("Ready reported again", lambda: ready()["status"] == "True")
    assert ready()["reason"] == "KubeletReady"
    # The controller's unreachable taint, if it came, goes with the Unknown condition.
    wait_for("no unreachable taint", lambda: not any(
        t["key"] == "node.kubernetes.io/unreachable" for t in
        control_plane.kubectl_json("get", "node", node)["spec"].get("taints") or []))


def test_malformed_mig_parted_configmap_fails_the_node_with_the_parse_error(
        control_plane: Cluster, agent: AgentProcess) -> None:
    node = agent.names[0]
    existing = control_plane.kubectl("get", "configmap", "dgxsim-mig-configs", "-n",
                                     "dgxsim-system", "-o", "json", check=False)
    control_plane.kubectl("create", "namespace", "dgxsim-system", check=False)
    broken = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "dgxsim-mig-configs", "namespace": "dgxsim-system"},
              "data": {"config.yaml": "version: v1\nmig-configs:\n  all-1g.5gb: [oops\n"}}
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(broken))
    try:
        control_plane.kubectl("label", "node", node, "nvidia.com/mig.config=all-1g.5gb",
                              "--overwrite")
        wait_for("failed state", lambda: control_plane.kubectl_json("get", "node", node)[
            "metadata"]["labels"].get("nvidia.com/mig.config.state") == "failed")
        events = control_plane.kubectl_json("get", "events", "-n", "default",
                                            "--field-selector", f"involvedObject.name={node}")
        failed = [e for e in events["items"] if e["reason"] == "MigConfigFailed"]
        assert failed and "dgxsim-mig-configs" in failed[-1]["message"]
        assert control_plane.allocatable(node)["nvidia.com/gpu"] == "8", "nothing changed"
    finally:
        if existing.returncode == 0:
            original = json.loads(existing.stdout)
            for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
                original["metadata"].pop(key, None)
            control_plane.kubectl("replace", "-f", "-", stdin=json.dumps(original))
        else:
            control_plane.kubectl("delete", "configmap", "dgxsim-mig-configs", "-n",
                                  "dgxsim-system")
        control_plane.kubectl("label", "node", node, "nvidia.com/mig.config-",
                              "nvidia.com/mig.config.state-")
        _relabel(control_plane, agent, "all-disabled")
