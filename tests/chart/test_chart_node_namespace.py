"""The chart installed in a namespace of the user's choosing: ``dgxsim node run`` under the
chart's node ServiceAccount finds its mig-parted ConfigMap in the release namespace.

The chart puts the ConfigMap, and the node's permission to read it, in the release
namespace and hands the pod that namespace as ``POD_NAMESPACE``. The node must read it
there: a node that looked in a fixed namespace was refused (403) and its
``nvidia.com/mig.config.state`` never left ``pending``. Here the chart's RBAC objects and
ConfigMap are created on the real API server for a namespace that is not dgxsim's
default, the node runs as the DaemonSet runs it (its args and environment, a token of
its ServiceAccount), and a relabel must reach ``success`` with no refusal.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_helpers import (
    JSON,
    RBAC_AND_CONFIG,
    apply_in_namespace,
    as_json_stream,
    container,
    find,
    render,
    service_account_kubeconfig,
)
from kube import Cluster, stop_process

from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.kubelet import DeviceManager

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "nsprobe"
NAMESPACE = "gpu-sim-elsewhere"
ACCOUNT = f"{RELEASE}-dgxsim-node"
NODE = "ns-probe-worker"
TIMEOUT_S = 90.0


@pytest.fixture
def chart_objects(control_plane: Cluster) -> Iterator[list[JSON]]:
    docs = render(release=RELEASE, namespace=NAMESPACE)
    objects = [d for d in docs if d["kind"] in RBAC_AND_CONFIG]
    apply_in_namespace(control_plane, NAMESPACE, objects)
    try:
        yield docs
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                              stdin=as_json_stream(objects), check=False)
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found",
                              "--wait=false", check=False)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dgn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def daemonset_argv(docs: list[JSON], state: Path, plugin_dir: Path) -> list[str]:
    """The DaemonSet's args, with the node name and the host paths of this test."""
    args = list(container(find(docs, "DaemonSet"))["args"])
    args[args.index("--node-name") + 1] = NODE
    args[args.index("--state-dir") + 1] = str(state)
    args[args.index("--device-plugin-dir") + 1] = str(plugin_dir)
    args[args.index("--cdi-dir") + 1] = str(state / "cdi")
    return args


def daemonset_env(docs: list[JSON]) -> dict[str, str]:
    """The DaemonSet's environment as the kubelet resolves it for a pod on NODE."""
    env: dict[str, str] = {}
    for item in container(find(docs, "DaemonSet")).get("env", []):
        field = (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        env[item["name"]] = {"spec.nodeName": NODE, "metadata.namespace": NAMESPACE}.get(
            field, item.get("value", ""))
    return env


def refused(log: Path) -> list[str]:
    denied = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    return [line for line in log.read_text(errors="replace").splitlines()
            if denied in line or " 403" in line or "Forbidden" in line]


async def test_the_node_reads_its_configmap_in_the_release_namespace(
        control_plane: Cluster, chart_objects: list[JSON], short_dir: Path) -> None:
    assert daemonset_env(chart_objects)["POD_NAMESPACE"] == NAMESPACE
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"dgxsim.io/dgx-node": "true"}}}))
    plugin_dir = short_dir / "device-plugins"
    kubelet = DeviceManager(NODE, plugin_dir, Checkpoint(short_dir / "kubelet-checkpoint.json"))
    await kubelet.start()
    log = short_dir / "node.log"
    kubeconfig = service_account_kubeconfig(control_plane, ACCOUNT, NAMESPACE,
                                            short_dir / "node.kubeconfig")
    argv = [*daemonset_argv(chart_objects, short_dir / "state", plugin_dir),
            "--kubeconfig", str(kubeconfig)]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dgxsim", *argv], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, **daemonset_env(chart_objects)})
    try:
        control_plane.kubectl("label", "node", NODE, "nvidia.com/mig.config=all-1g.5gb")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            labels = control_plane.kubectl_json("get", "node", NODE)["metadata"]["labels"]
            if labels.get("nvidia.com/mig.config.state") in ("success", "failed"):
                break
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.3)
        assert labels["nvidia.com/mig.config.state"] == "success", \
            log.read_text(errors="replace")[-3000:]
        assert refused(log) == []
    finally:
        stop_process(proc)
        await kubelet.stop()
        control_plane.kubectl("delete", "node", NODE, "--ignore-not-found", "--wait=false")
