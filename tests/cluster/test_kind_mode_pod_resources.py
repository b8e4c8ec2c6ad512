"""`dgxsim node run` learns from the kubelet's PodResources API which devices pods hold.

The kubelet's device manager is played by the node agent's (as in
test_kind_mode_node.py); its PodResources service is a real gRPC server on a
Unix socket, answering ``List`` with the pods the test says it runs. A MIG
change that would destroy a device the kubelet lists must be refused exactly
as the kubelet-less node refuses one blocked by a running pod.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import Cluster, stop_process
from pod_resources_server import PodResourcesServer, pod

from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.kubelet import DeviceManager
from dgxnode.store import NodeStore

MIG = "nvidia.com/mig-1g.5gb"
UNSEEN = "cannot see the kubelet's pod resources"
SEEN = "reading the kubelet's pod resources"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dgr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def until(what: str, predicate: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    """Poll without blocking the loop (the emulated kubelet's streams live on it)."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)
    return value


class KindNode:
    """A Node object as a kubelet registers it, the kubelet's device manager, and
    ``dgxsim node run`` beside them."""

    def __init__(self, cluster: Cluster, name: str, workdir: Path, pod_resources: Path
                 ) -> None:
        self.cluster, self.name, self.workdir = cluster, name, workdir
        self.pod_resources = pod_resources
        self.kubelet = DeviceManager(name, workdir / "device-plugins",
                                     Checkpoint(workdir / "kubelet-checkpoint.json"))
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {"dgxsim.io/dgx-node": "true"}}}))
        await self.kubelet.start()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dgxsim", "node", "run", "--node-name", self.name,
                 "--state-dir", str(self.workdir / "state"),
                 "--device-plugin-dir", str(self.workdir / "device-plugins"), "--cdi-dir", "",
                 "--pod-resources-socket", str(self.pod_resources),
                 "--kubeconfig", str(self.cluster.kubeconfig)],
                stdout=log, stderr=subprocess.STDOUT)
        await until("8 GPUs advertised", lambda: self.kubelet.allocatable().get(
            "nvidia.com/gpu") == 8)

    async def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        await self.kubelet.stop()
        self.cluster.kubectl("delete", "node", self.name, "--ignore-not-found")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def labels(self) -> dict[str, str]:
        return self.cluster.labels(self.name)

    def state(self) -> str | None:
        return self.labels().get("nvidia.com/mig.config.state")

    def owner(self, device: str) -> str | None:
        """Who the node's own state says holds ``device`` (None: free or gone)."""
        return NodeStore(self.workdir / "state").load().allocations.get(device)

    def device_ids(self) -> set[str]:
        return {d.id for d in self.cluster.inventory(self.name).devices}

    def events(self, reason: str) -> list[dict[str, Any]]:
        items = self.cluster.kubectl_json("get", "events", "-A", "--field-selector",
                                          f"involvedObject.name={self.name}")["items"]
        return [e for e in items if e["reason"] == reason]

    async def relabel(self, config: str) -> None:
        self.cluster.kubectl("label", "node", self.name, f"nvidia.com/mig.config={config}",
                             "--overwrite")


async def test_a_device_the_kubelet_lists_blocks_a_mig_change_naming_the_pod(
        control_plane: Cluster, short_dir: Path) -> None:
    kubelet_pods = PodResourcesServer(short_dir / "pod-resources" / "kubelet.sock").start()
    node = KindNode(control_plane, "kind-worker-podres", short_dir, kubelet_pods.socket)
    try:
        await node.start()
        await node.relabel("all-1g.5gb")
        await until("all-1g.5gb applied", lambda: node.state() == "success")
        await until("56 slices", lambda: node.kubelet.allocatable().get(MIG) == 56)

        # The kubelet gives a MIG device to a pod; only its PodResources API says so.
        device = (await node.kubelet.allocate("uid-holder", "main", MIG, 1)).device_ids[0]
        kubelet_pods.set_pods(pod("team", "holder", "main", {MIG: [device]}))
        await node.relabel("all-disabled")
        await until("the change refused", lambda: node.state() == "failed")
        blocked = await until("a MigConfigBlocked event",
                              lambda: node.events("MigConfigBlocked"))
        assert "team/holder" in blocked[-1]["message"], blocked[-1]["message"]
        assert device in node.device_ids(), "the held device survived the change"
        assert node.owner(device) == "team/holder/main"
        assert node.kubelet.allocatable().get(MIG) == 56

        # The pod is gone from the kubelet: the node releases the device, and the change
        # goes through when asked again, as on a kubelet-less node.
        kubelet_pods.set_pods()
        await until("the device released", lambda: node.owner(device) is None)
        assert node.state() == "failed"
        control_plane.kubectl("label", "node", node.name, "nvidia.com/mig.config.state-")
        await until("all-disabled applied", lambda: node.state() == "success")
        assert node.labels()["nvidia.com/mig.config"] == "all-disabled"
        assert device not in node.device_ids()
        await until("8 GPUs again", lambda: node.kubelet.allocatable().get(
            "nvidia.com/gpu") == 8 and not node.kubelet.allocatable().get(MIG))
        assert node.proc is not None and node.proc.poll() is None
    finally:
        await node.stop()
        kubelet_pods.stop()


async def test_without_the_kubelets_socket_the_node_works_and_says_so_once(
        control_plane: Cluster, short_dir: Path) -> None:
    kubelet_pods = PodResourcesServer(short_dir / "pod-resources" / "kubelet.sock")
    node = KindNode(control_plane, "kind-worker-nopodres", short_dir, kubelet_pods.socket)
    try:
        await node.start()
        await node.relabel("all-1g.5gb")
        await until("all-1g.5gb applied", lambda: node.state() == "success")
        assert node.log().count(UNSEEN) == 1
        await until("56 slices", lambda: node.kubelet.allocatable().get(MIG) == 56)

        # The kubelet's socket appears later (a kubelet started after the node): read from then.
        device = (await node.kubelet.allocate("uid-late", "main", MIG, 1)).device_ids[0]
        kubelet_pods.set_pods(pod("team", "late", "main", {MIG: [device]}))
        kubelet_pods.start()
        await until("the kubelet's pods read", lambda: SEEN in node.log())
        await until("the device held", lambda: node.owner(device) == "team/late/main")
        log = node.log()
        assert log.count(UNSEEN) == 1, "said once however often the node asked"
        assert "Traceback" not in log, log
        assert node.proc is not None and node.proc.poll() is None
    finally:
        await node.stop()
        kubelet_pods.stop()
