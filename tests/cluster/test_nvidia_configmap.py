"""The GPU Operator's default MIG ConfigMap, installed unchanged, drives a node's MIG changes.

Its ``config.yaml`` carries configs for every GPU NVIDIA makes. On a DGX
A100-40GB node every config an A100-40GB can take must end ``success`` (with
``all-1g.5gb.me`` advertising ``nvidia.com/mig-1g.5gb.me``), and a config for
another GPU must end ``failed`` with an event naming the missing profile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kube import AgentProcess, Cluster, wait_for

GOLDEN = Path(__file__).parents[1] / "golden" / "nvidia" / "gpu-operator-0400_configmap.yaml"
A100_40GB_CONFIGS = ("all-disabled", "all-enabled", "all-1g.5gb", "all-1g.5gb.me",
                     "all-2g.10gb", "all-3g.20gb", "all-4g.20gb", "all-7g.40gb",
                     "all-1g.10gb", "all-balanced")


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    control_plane.kubectl("create", "namespace", "dgxsim-system", check=False)
    data = yaml.safe_load(GOLDEN.read_text())["data"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "dgxsim-mig-configs", "namespace": "dgxsim-system"},
          "data": data}
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(cm))
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("agent"), 1, "dgxnv",
                           "--time-scale", "60")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.delete_nodes()
        control_plane.kubectl("delete", "configmap", "dgxsim-mig-configs", "-n",
                              "dgxsim-system", check=False)


def settle(cluster: Cluster, node: str, config: str) -> str:
    cluster.kubectl("label", "node", node, f"nvidia.com/mig.config={config}", "--overwrite")

    def state() -> str | None:
        meta = cluster.kubectl_json("get", "node", node)["metadata"]
        inventory = json.loads(meta["annotations"]["dgxsim.io/inventory"])
        label = meta["labels"].get("nvidia.com/mig.config.state")
        done = label in ("success", "failed") and inventory.get("mig_config") == config
        return str(label) if done else None

    return str(wait_for(f"{node} {config}", state))


def test_every_a100_40gb_config_succeeds(control_plane: Cluster, agent: AgentProcess) -> None:
    node = agent.names[0]
    for config in A100_40GB_CONFIGS:
        assert settle(control_plane, node, config) == "success", config
        if config == "all-1g.5gb.me":
            assert control_plane.allocatable(node).get("nvidia.com/mig-1g.5gb.me") == "8"
            labels = control_plane.kubectl_json("get", "node", node)["metadata"]["labels"]
            assert labels["nvidia.com/mig-1g.5gb.me.count"] == "8"


def test_a_config_for_another_gpu_fails_naming_the_profile(
        control_plane: Cluster, agent: AgentProcess) -> None:
    node = agent.names[0]
    assert settle(control_plane, node, "all-1g.24gb.gfx") == "failed"
    events = control_plane.kubectl_json("get", "events", "-n", "default",
                                        "--field-selector", f"involvedObject.name={node}")
    failed = [e["message"] for e in events["items"] if e["reason"] == "MigConfigFailed"]
    assert failed and "1g.24gb+gfx" in failed[-1]
    assert settle(control_plane, node, "all-1g.5gb") == "success", "the others still apply"
