"""Node attestation: a node whose TPM measured boot fails takes no new work.

`dgxsim fault inject --attestation fail` makes a node untrusted: it is labelled
so, its `Attested` condition turns False and it gets a `NoSchedule` taint. A
new DGXJob is placed elsewhere and a plain pod without a toleration stays off
it, while the pod already running there runs on; `fault clear --attestation`
restores it, and both land there again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import cli_cluster, cli_kubectl, dgxsim, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]






@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    with cli_cluster(tmp_path / "cluster", "--nodes", "2") as state:
        yield state

def pod_on(name: str, node: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "annotations": {"dgxsim.io/duration": "1h"}},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                 "containers": [{"name": "main", "image": "dgxsim/workload",
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def dgxjob(name: str) -> str:
    return json.dumps({"apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"workload": "resnet50-train", "replicas": 1,
                                "gpusPerReplica": 1, "durationSeconds": 3600}})


def phase(state: Path, name: str) -> str | None:
    return cli_kubectl(state, "get", "pod", name, "-o", "json")["status"].get("phase")


def placed_on(state: Path, job: str) -> str | None:
    status = cli_kubectl(state, "get", "dgxjob", job, "-o", "json").get("status") or {}
    nodes = {p["node"] for p in status.get("placement") or []}
    return nodes.pop() if len(nodes) == 1 else None


def test_an_untrusted_node_takes_no_new_work_and_keeps_what_runs(cluster: Path) -> None:
    cli_kubectl(cluster, "apply", "-f", "-", stdin=pod_on("running", "dgx-0"))
    wait_for("pod running on dgx-0", lambda: phase(cluster, "running") == "Running")

    fault = dgxsim("fault", "inject", "--state-dir", str(cluster), "--node", "dgx-0",
                   "--attestation", "fail")
    assert fault.returncode == 0, fault.stderr

    def untrusted() -> bool:
        node = cli_kubectl(cluster, "get", "node", "dgx-0", "-o", "json")
        attested = next((c for c in node["status"]["conditions"] if c["type"] == "Attested"),
                        {})
        return (node["metadata"]["labels"].get("dgxsim.io/attestation") == "untrusted"
                and attested.get("status") == "False"
                and any(t["key"] == "dgxsim.io/untrusted" and t["effect"] == "NoSchedule"
                        for t in node["spec"].get("taints") or []))

    wait_for("dgx-0 untrusted", untrusted)
    cli_kubectl(cluster, "apply", "-f", "-", stdin=dgxjob("after-fault"))
    wait_for("job placed", lambda: placed_on(cluster, "after-fault"))
    assert placed_on(cluster, "after-fault") == "dgx-1"
    cli_kubectl(cluster, "apply", "-f", "-", stdin=pod_on("waits", "dgx-0"))
    def refused_for_the_taint() -> bool:
        conditions = cli_kubectl(cluster, "get", "pod", "waits", "-o", "json")["status"].get(
            "conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False"
                   and "untolerated taint" in c.get("message", "") for c in conditions)

    wait_for("the scheduler refuses the pod for the taint", refused_for_the_taint)
    assert phase(cluster, "waits") == "Pending"
    assert phase(cluster, "running") == "Running", "running work is left alone"

    clear = dgxsim("fault", "clear", "--state-dir", str(cluster), "--node", "dgx-0",
                   "--attestation")
    assert clear.returncode == 0, clear.stderr
    wait_for("the waiting pod lands on dgx-0", lambda: phase(cluster, "waits") == "Running")
    cli_kubectl(cluster, "apply", "-f", "-", stdin=dgxjob("after-clear"))
    wait_for("job placed", lambda: placed_on(cluster, "after-clear"))
    assert placed_on(cluster, "after-clear") == "dgx-0", "tightest fit: the node is back"
    labels = cli_kubectl(cluster, "get", "node", "dgx-0", "-o", "json")["metadata"]["labels"]
    assert labels["dgxsim.io/attestation"] == "trusted"
    assert labels["dgxsim.io/tpm.version"] == "2.0" and labels["dgxsim.io/sed"] == "unlocked"
