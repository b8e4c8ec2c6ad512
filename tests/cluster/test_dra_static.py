"""DRA in static mode: the devices that exist, claimed through NVIDIA's gpu.nvidia.com class."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import AgentProcess, Cluster, wait_for

TIMEOUT_S = 180.0
NODE = "dgxs-0"


@pytest.fixture(scope="module")
def agent(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentProcess]:
    process = AgentProcess(control_plane, tmp_path_factory.mktemp("dra-static"), 1, "dgxs",
                           "--time-scale", "1", "--dra", "static")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.delete_nodes()


def test_a_whole_gpu_claim_runs_on_a_static_node(control_plane: Cluster, agent: AgentProcess,
                                                  namespace: str) -> None:
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
             "metadata": {"name": "single-gpu"},
             "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                 "deviceClassName": "gpu.nvidia.com", "count": 1}}]}}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "whole", "annotations": {"dgxsim.io/duration": "5s"}},
           "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [{"name": "ctr", "image": "ubuntu:24.04",
                                    "resources": {"claims": [{"name": "gpu"}]}}],
                    "resourceClaims": [{"name": "gpu", "resourceClaimName": "single-gpu"}]}}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [claim, pod]}))

    def started() -> dict[str, str] | None:
        meta = control_plane.kubectl_json("get", "pod", "whole", "-n", namespace)["metadata"]
        annotations = meta.get("annotations") or {}
        return annotations if "dgxsim.io/devices" in annotations else None

    annotations = wait_for("the pod started", started, TIMEOUT_S)
    assert annotations["dgxsim.io/devices"].startswith("nvidia.com/gpu: GPU-")
    allocated = control_plane.kubectl_json("get", "resourceclaim", "single-gpu", "-n",
                                           namespace)["status"]["allocation"]
    result = allocated["devices"]["results"][0]
    assert (result["driver"], result["pool"]) == ("gpu.nvidia.com", NODE)
    assert result["device"].startswith("gpu-")
    wait_for("the pod done", lambda: control_plane.kubectl_json(
        "get", "pod", "whole", "-n", namespace)["status"].get("phase") == "Succeeded",
        TIMEOUT_S)
    wait_for("the GPU free again on the node", lambda: not agent.allocations(NODE),
             TIMEOUT_S)


GOLDEN = Path(__file__).parent.parent / "golden" / "nvidia"


@pytest.mark.parametrize(("spec", "gpus"), [("dra-gpu-test7.yaml", {"ctr0": 1, "ctr1": 1}),
                                             ("dra-gpu-test-count.yaml", {"ctr0": 2})])
def test_nvidias_quickstart_specs_run_unchanged(control_plane: Cluster, agent: AgentProcess,
                                                 spec: str, gpus: dict[str, int]) -> None:
    control_plane.kubectl("apply", "-f", str(GOLDEN / spec))
    try:
        def visible() -> dict[str, list[str]] | None:
            pod = control_plane.kubectl_json("get", "pod", "gpu-pod", "-n", "gpu-test1")
            if pod.get("status", {}).get("phase") != "Running":
                return None
            annotations = pod["metadata"].get("annotations") or {}
            return {c: annotations[f"dgxsim.io/env.{c}.NVIDIA_VISIBLE_DEVICES"].split(",")
                    for c in gpus}

        given = wait_for("NVIDIA's pod running", visible, TIMEOUT_S)
        assert {c: len(ids) for c, ids in given.items()} == gpus
        every = [i for ids in given.values() for i in ids]
        assert len(set(every)) == len(every) and all(i.startswith("GPU-") for i in every)
    finally:
        control_plane.kubectl("delete", "namespace", "gpu-test1", "--wait=true",
                              "--timeout=180s")
