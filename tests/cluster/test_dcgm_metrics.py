"""DCGM metrics of a running cluster, read as Prometheus reads them.

Two simulated nodes, one in MIG mode, run a whole-GPU training pod and a MIG
inference pod; the endpoint `dgxsim status` names is scraped and parsed with
prometheus_client's parser: dcgm-exporter's names and labels, utilisation only
where a pod runs, and the pod's name and namespace on its device's series.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import cli_cluster, cli_kubectl, dgxsim, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.cluster, pytest.mark.slow]






@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    with cli_cluster(tmp_path / "cluster", "--nodes", "2", "--no-operator") as state:
        yield state

def pod(name: str, resource: str, annotations: dict[str, str]) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"dgxsim.io/node": "true"},
                 "containers": [{"name": "main", "image": "dgxsim/workload",
                                 "resources": {"limits": {resource: "1"}}}]}})


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_metrics_follow_what_runs(cluster: Path) -> None:
    cli_kubectl(cluster, "label", "node", "dgx-1", "nvidia.com/mig.config=all-1g.5gb",
                "--overwrite")
    wait_for("dgx-1 in MIG mode", lambda: cli_kubectl(
        cluster, "get", "node", "dgx-1", "-o", "json")["metadata"]["labels"].get(
        "nvidia.com/mig.config.state") == "success")
    workload = json.dumps({"workload": "bert-large-pretrain", "steps": 100000,
                           "precision": "fp16"})
    cli_kubectl(cluster, "apply", "-f", "-", stdin=pod("train", "nvidia.com/gpu",
                                                    {"dgxsim.io/workload": workload}))
    cli_kubectl(cluster, "apply", "-f", "-", stdin=pod("infer", "nvidia.com/mig-1g.5gb",
                                                    {"dgxsim.io/duration": "1h"}))
    wait_for("both pods Running", lambda: all(
        cli_kubectl(cluster, "get", "pod", name, "-o", "json")["status"].get("phase")
        == "Running" for name in ("train", "infer")))

    status = dgxsim("status", "--state-dir", str(cluster)).stdout
    url = next(line.split()[1] for line in status.splitlines()
               if line.startswith("metrics:") and "DCGM" in line)
    families = scrape(url)

    util = families["DCGM_FI_DEV_GPU_UTIL"].samples
    busy = [s for s in util if s.value > 0]
    assert len(busy) == 1, busy
    assert (busy[0].labels["pod"], busy[0].labels["namespace"]) == ("train", "default")
    assert busy[0].labels["Hostname"] == "dgx-0"
    assert {s.labels["Hostname"] for s in util} == {"dgx-0"}, "no GPU utilisation in MIG mode"
    tensor = [s for s in families["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"].samples
              if s.labels.get("pod") == "train"]
    assert tensor and tensor[0].value > 0, "fp16 training keeps the tensor pipe busy"
    mig = [s for s in families["DCGM_FI_PROF_GR_ENGINE_ACTIVE"].samples
           if s.labels.get("Hostname") == "dgx-1"]
    assert len(mig) == 56 and all(s.labels["GPU_I_PROFILE"] == "1g.5gb" for s in mig)
    held = [s for s in mig if s.value > 0]
    assert len(held) == 1 and held[0].labels["pod"] == "infer"
    assert {s.labels["gpu"] for s in families["DCGM_FI_DEV_POWER_USAGE"].samples} == {
        str(i) for i in range(8)}
    for family in families.values():
        if family.name.startswith("DCGM_FI_"):
            assert family.type == "gauge", family.name
            for s in family.samples:
                assert {"gpu", "UUID", "device", "modelName", "Hostname"} <= set(s.labels)
