"""A simulated DGX under the genuine kubelet and containerd 2: ``dgxsim up --real-nodes 1``.

The device plugin registers with the real kubelet's device manager, the names
Allocate returns are resolved by containerd through the node's CDI
specification, and Jobs run as real containers of the locally built workload
image. One cluster serves the module (a kubelet-less node beside the real
one); the tests run in file order: whole GPUs, a kubelet restart, then MIG,
then ``down``. Every test needs root; without it each reports skipped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import cli_kubectl, dgxsim, wait_for
from realnode_helpers import cmdline_mentions, mounts_under, needs_root

from localkube import ControlPlane
from localkube.processes import is_alive
from localkube.realnode import Runtime
from localkube.toolchain import bin_dir

REAL = "dgx-real-0"
OTHER = "dgx-real-1"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("realnode")
    up = dgxsim("up", "--state-dir", str(state), "--nodes", "1", "--real-nodes", "2",
                "--no-operator", timeout_s=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:
        dgxsim("down", "--state-dir", str(state))


def kubectl(state: Path, *args: str, stdin: str | None = None) -> Any:
    return cli_kubectl(state, *args, stdin=stdin)


def node(state: Path, name: str = REAL) -> dict[str, Any]:
    result: dict[str, Any] = kubectl(state, "get", "node", name, "-o", "json")
    return result


def workload_image(state: Path) -> str:
    real = Runtime(state).load()
    assert real is not None and real.workload_image
    return real.workload_image


def kubelet_log(state: Path) -> str:
    return (state / "logs" / f"kubelet-{REAL}.log").read_text(errors="replace")


def registrations(state: Path, resource: str) -> int:
    """Registrations the kubelet's device manager logged for ``resource``."""
    return len(re.findall(rf'Got registration request from device plugin with resource" '
                          rf'resourceName="{re.escape(resource)}"', kubelet_log(state)))


def job(name: str, image: str, resource: str, count: int, command: str, on: str = REAL
        ) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": on},
            # Not root, as the kind walkthrough's Jobs: nvidia-smi must work for anyone.
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", command],
                            "resources": {"limits": {resource: str(count)}}}]}}}})


PRINT_DEVICES = "echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES; nvidia-smi -L"


def run_job(state: Path, name: str, resource: str, count: int, on: str = REAL) -> str:
    """Run a Job on a real node to completion; its logs (through the kubelet)."""
    kubectl(state, "wait", "--for=create", "serviceaccount/default", "--timeout=120s")
    kubectl(state, "apply", "-f", "-",
            stdin=job(name, workload_image(state), resource, count, PRINT_DEVICES, on))

    def finished() -> str | None:
        status = kubectl(state, "get", "job", name, "-o", "json").get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if conditions.get("Failed") == "True":
            logs = subprocess.run(
                [str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig"), "logs",
                 f"job/{name}"], capture_output=True, text=True).stdout
            raise AssertionError(f"job {name} failed: {status}; logs: {logs}")
        return "done" if conditions.get("Complete") == "True" else None

    wait_for(f"job {name} complete", finished, timeout_s=300)
    logs: str = kubectl(state, "logs", f"job/{name}")
    return logs


def visible_devices(logs: str) -> list[str]:
    match = re.search(r"^NVIDIA_VISIBLE_DEVICES=(\S*)$", logs, re.M)
    assert match, logs
    return [d for d in match.group(1).split(",") if d]


@needs_root
def test_plugin_registers_with_the_real_kubelet(cluster: Path) -> None:
    status = node(cluster)["status"]
    assert status["allocatable"]["nvidia.com/gpu"] == "8"
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    assert registrations(cluster, "nvidia.com/gpu") == 1
    # The API server reaches this kubelet by the address in its network namespace.
    addresses = {a["type"]: a["address"] for a in status["addresses"]}
    assert addresses["InternalIP"].startswith("198.18.")


@needs_root
def test_gpu_job_runs_in_a_real_container(cluster: Path) -> None:
    logs = run_job(cluster, "gpu-two", "nvidia.com/gpu", 2)
    devices = visible_devices(logs)
    assert len(devices) == 2 and all(d.startswith("GPU-") for d in devices), logs
    listed = re.findall(r"^GPU \d+: NVIDIA A100-SXM4-40GB \(UUID: (GPU-[0-9a-f-]+)\)$",
                        logs, re.M)
    assert set(devices) <= set(listed), logs
    # The devices are the ones the kubelet's device manager recorded for the pod.
    checkpoint = (cluster / "realnodes" / "nodes" / REAL / "kubelet" / "device-plugins" /
                  "kubelet_internal_checkpoint").read_text()
    assert all(d in checkpoint for d in devices)


@needs_root
def test_two_real_nodes_keep_their_own_containers(cluster: Path) -> None:
    """Each node's kubelet has a containerd of its own: a kubelet removes every container
    it did not start, so on a shared runtime the other node's would vanish."""
    other = run_job(cluster, "gpu-other", "nvidia.com/gpu", 1, on=OTHER)
    (device,) = visible_devices(other)
    # Not one of the first node's GPUs (its Job's nvidia-smi -L listed all of them).
    assert device not in kubectl(cluster, "logs", "job/gpu-two")
    # The first node's finished Job still has its container, so its logs still read.
    assert visible_devices(kubectl(cluster, "logs", "job/gpu-two"))


def _kubelet_record(state: Path) -> Any:
    plane_state = ControlPlane(state).load_state()
    assert plane_state is not None
    return next(p for p in plane_state.processes if p.name == f"kubelet-{REAL}")


@needs_root
def test_kubelet_restart_keeps_running_pods_devices(cluster: Path) -> None:
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder"},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": REAL},
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": workload_image(cluster),
                                 "command": ["sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES; "
                                             "exec sleep 3600"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}))
    wait_for("holder running", lambda: kubectl(cluster, "get", "pod", "holder", "-o", "json")
             ["status"].get("phase") == "Running", timeout_s=180)
    held = kubectl(cluster, "logs", "holder").strip()
    assert held.startswith("GPU-")
    before = kubectl(cluster, "get", "pod", "holder", "-o", "json")["status"]
    registered = registrations(cluster, "nvidia.com/gpu")
    old = _kubelet_record(cluster)
    os.kill(old.pid, signal.SIGKILL)
    wait_for("the supervisor restarts the kubelet",
             lambda: (new := _kubelet_record(cluster)).pid != old.pid and is_alive(new),
             timeout_s=120)
    wait_for("the plugin registers again",
             lambda: registrations(cluster, "nvidia.com/gpu") > registered, timeout_s=120)
    assert registrations(cluster, "nvidia.com/gpu") == registered + 1
    wait_for("the node Ready again", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node(cluster)["status"]["conditions"]), timeout_s=120)
    after = kubectl(cluster, "get", "pod", "holder", "-o", "json")["status"]
    assert after["phase"] == "Running"
    assert after["containerStatuses"][0]["containerID"] == \
        before["containerStatuses"][0]["containerID"]
    assert after["containerStatuses"][0]["restartCount"] == 0
    checkpoint = (cluster / "realnodes" / "nodes" / REAL / "kubelet" / "device-plugins" /
                  "kubelet_internal_checkpoint").read_text()
    assert held in checkpoint
    # kubectl exec: API server -> the restarted kubelet (once it serves again) ->
    # containerd's streaming server through the node's relay.
    def exec_output() -> str | None:
        result = subprocess.run(
            [str(bin_dir() / "kubectl"), "--kubeconfig", str(cluster / "kubeconfig"), "exec",
             "holder", "--", "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES; nvidia-smi -L"],
            capture_output=True, text=True, timeout=60)
        return result.stdout if result.returncode == 0 else None

    inside = wait_for("kubectl exec into the pod", exec_output, timeout_s=120, every_s=1)
    assert inside.splitlines()[0] == held and f"(UUID: {held})" in inside
    kubectl(cluster, "delete", "pod", "holder", "--wait=true", "--timeout=120s")


@needs_root
def test_mig_relabel_then_a_mig_job(cluster: Path) -> None:
    kubectl(cluster, "label", "node", REAL, "nvidia.com/mig.config=all-1g.5gb", "--overwrite")
    wait_for("MIG config applied", lambda: node(cluster)["metadata"]["labels"].get(
        "nvidia.com/mig.config.state") == "success", timeout_s=180)
    wait_for("56 MIG devices allocatable", lambda: node(cluster)["status"]["allocatable"].get(
        "nvidia.com/mig-1g.5gb") == "56", timeout_s=120)
    assert node(cluster)["status"]["allocatable"]["nvidia.com/gpu"] == "0"
    assert registrations(cluster, "nvidia.com/mig-1g.5gb") == 1
    # The kind walkthrough's MIG Job, unchanged (image dgxsim:dev, `dgxsim workload`).
    kubectl(cluster, "apply", "-f", str(REPO_ROOT / "kind" / "mig-job.yaml"))
    logs = run_job(cluster, "mig-one", "nvidia.com/mig-1g.5gb", 1)
    devices = visible_devices(logs)
    assert len(devices) == 1 and devices[0].startswith("MIG-"), logs
    assert f"(UUID: {devices[0]})" in logs
    kubectl(cluster, "wait", "--for=condition=complete", "job/mig-job", "--timeout=300s")
    walkthrough = kubectl(cluster, "logs", "job/mig-job")
    assert re.match(r"dgxsim workload: 30 s on MIG-[0-9a-f-]+\n", walkthrough), walkthrough
    assert walkthrough.rstrip().endswith('{"status": "completed", "steps": 30}')


@needs_root
def test_a_mig_change_waits_for_a_pod_the_real_kubelet_gave_a_device(cluster: Path) -> None:
    """The node learns from the kubelet's PodResources API which devices pods hold."""
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mig-holder"},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": REAL},
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": workload_image(cluster),
                                 "command": ["sleep", "3600"],
                                 "resources": {"limits": {"nvidia.com/mig-1g.5gb": "1"}}}]}}))
    wait_for("mig-holder running", lambda: kubectl(
        cluster, "get", "pod", "mig-holder", "-o", "json")["status"].get("phase") == "Running",
        timeout_s=180)
    kubectl(cluster, "label", "node", REAL, "nvidia.com/mig.config=all-disabled", "--overwrite")
    wait_for("the change refused", lambda: node(cluster)["metadata"]["labels"].get(
        "nvidia.com/mig.config.state") == "failed", timeout_s=180)
    events = kubectl(cluster, "get", "events", "--field-selector",
                     f"reason=MigConfigBlocked,involvedObject.name={REAL}", "-o", "json")
    assert any("mig-holder" in e["message"] for e in events["items"]), events["items"]
    assert node(cluster)["status"]["allocatable"]["nvidia.com/mig-1g.5gb"] == "56"
    kubectl(cluster, "delete", "pod", "mig-holder", "--wait=true", "--timeout=120s")


@needs_root
def test_down_stops_everything_and_removes_the_node(cluster: Path) -> None:
    real = Runtime(cluster).load()
    assert real is not None
    shim = Runtime(cluster).containerd(real.nodes[0]).socket
    down = dgxsim("down", "--state-dir", str(cluster))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "real nodes removed" in down.stdout
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and cmdline_mentions(p, str(cluster), str(shim), real.nodes[0].netns)]
    assert leftover == []
    assert mounts_under(cluster) == []
    links = Path("/var/log/containers")
    assert not [p for p in links.glob("*.log") if str(cluster) in os.readlink(p)]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert real.nodes[0].netns not in namespaces
    veths = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert real.nodes[0].host_veth not in veths
    assert not any(Path("/sys/fs/cgroup", c, real.nodes[0].cgroup_root.lstrip("/")).exists()
                   for c in ("memory", "cpu", "pids"))


def test_real_nodes_without_root_are_refused_in_one_line(tmp_path: Path) -> None:
    """As another user than root (setpriv drops to nobody when run as root)."""
    tmp_path.chmod(0o777)
    prefix = ([] if os.geteuid() != 0 else
              ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    import sys

    result = subprocess.run(
        [*prefix, sys.executable, "-m", "dgxsim", "up", "--state-dir", str(tmp_path / "s"),
         "--real-nodes", "1"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "real nodes need root" in lines[0], result.stderr
    assert not (tmp_path / "s" / "controlplane.json").exists()
