"""The node agent restarted after its files were damaged, on the real control plane.

Two pods hold three GPUs of a node; the agent stops; its device checkpoint
and node state are emptied, deleted or truncated; the agent starts again. The
API server still records which pod holds which device (``dgxsim.io/devices``),
so every running pod keeps its devices and runs to completion, a new pod asking
for the other five GPUs gets exactly those, and an event on the Node says what
was rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kube import AgentProcess, Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
PREFIX = "dmg"


def pod(name: str, gpus: int, duration: str, node: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {"dgxsim.io/duration": duration}},
        "spec": {"restartPolicy": "Never", "nodeName": node,
                 "containers": [{"name": "main", "image": "dgxsim/workload",
                                 "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}})


def devices_of(cluster: Cluster, namespace: str, name: str) -> set[str]:
    notes = cluster.kubectl_json("get", "pod", name, "-n", namespace)["metadata"]["annotations"]
    return set(notes["dgxsim.io/devices"].split(": ", 1)[1].split(", "))


def phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    return cluster.kubectl_json("get", "pod", name, "-n", namespace)["status"].get("phase")


def emptied(path: Path) -> None:
    path.write_text("")


def deleted(path: Path) -> None:
    path.unlink()


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize("damage", [emptied, deleted, truncated],
                         ids=["emptied", "deleted", "truncated"])
def test_running_pods_keep_their_devices_when_the_node_files_are_lost(
        control_plane: Cluster, namespace: str, tmp_path: Path,
        damage: Callable[[Path], None]) -> None:
    prefix = f"{PREFIX}-{damage.__name__}"  # a node of its own: no pods of other tests
    node = f"{prefix}-0"
    agent = AgentProcess(control_plane, tmp_path / "agent", 1, prefix, "--time-scale", "1")
    agent.start()
    try:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("a", 2, "40s", node))
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("b", 1, "40s", node))
        for name in "ab":
            wait_for(f"{name} running", lambda n=name: phase(
                control_plane, namespace, n) == "Running")
        held = {n: devices_of(control_plane, namespace, n) for n in "ab"}
        agent.stop()
        files = agent.state_dir / "nodes" / node
        for name in ("devices.json", "node.json"):
            damage(files / name)
        agent.start()

        events = wait_for("an event on the node", lambda: [
            e for e in control_plane.kubectl_json(
                "get", "events", "-n", "default",
                "--field-selector", f"involvedObject.name={node}")["items"]
            if e["reason"] == "DeviceRecordsRebuilt"], timeout_s=30)
        message = events[-1]["message"]
        assert f"{namespace}/a" in message and f"{namespace}/b" in message
        assert "devices.json" in message and "node.json" in message
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("c", 5, "2s", node))
        wait_for("c succeeds", lambda: phase(control_plane, namespace, "c") == "Succeeded",
                 timeout_s=60)
        given = devices_of(control_plane, namespace, "c")
        assert given.isdisjoint(held["a"] | held["b"]), "no device is given twice"
        for name in "ab":
            assert devices_of(control_plane, namespace, name) == held[name]
            wait_for(f"{name} succeeds", lambda n=name: phase(
                control_plane, namespace, n) == "Succeeded", timeout_s=90)
    finally:
        agent.stop()
        agent.delete_nodes()


@pytest.mark.parametrize("damage", [truncated, deleted], ids=["truncated", "deleted"])
def test_a_damaged_clock_file_is_rebuilt_and_the_running_pod_completes(
        control_plane: Cluster, namespace: str, tmp_path: Path,
        damage: Callable[[Path], None]) -> None:
    prefix = f"{PREFIX}-clock-{damage.__name__}"
    node = f"{prefix}-0"
    agent = AgentProcess(control_plane, tmp_path / "agent", 1, prefix, "--time-scale", "1")
    agent.start()
    try:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("a", 1, "20s", node))
        wait_for("a running", lambda: phase(control_plane, namespace, "a") == "Running")
        held = devices_of(control_plane, namespace, "a")
        agent.stop()
        damage(agent.state_dir / "clock.json")
        agent.start()  # it used to stop here (unreadable) or start a new timeline (deleted)

        assert (agent.state_dir / "clock.json.damaged").exists() == (damage is truncated)
        events = wait_for("an event on the node", lambda: [
            e for e in control_plane.kubectl_json(
                "get", "events", "-n", "default",
                "--field-selector", f"involvedObject.name={node}")["items"]
            if e["reason"] == "DeviceRecordsRebuilt" and "clock.json" in e["message"]],
            timeout_s=30)
        assert "rebuilt from the start times" in events[-1]["message"]
        wait_for("a succeeds", lambda: phase(control_plane, namespace, "a") == "Succeeded",
                 timeout_s=90)
        assert devices_of(control_plane, namespace, "a") == held
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("b", 8, "1s", node))
        wait_for("b succeeds", lambda: phase(control_plane, namespace, "b") == "Succeeded",
                 timeout_s=60)
    finally:
        agent.stop()
        agent.delete_nodes()
