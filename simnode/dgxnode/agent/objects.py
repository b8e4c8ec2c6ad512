"""The Kubernetes objects a kubelet writes, built from a simulated node's facts.

Pure functions: the Node object (labels, capacity, allocatable, conditions,
node info) and the pod status patches for each step of a pod's life (running,
succeeded, failed). The agent sends what they return; tests read them directly.
"""

from __future__ import annotations

from typing import Any

from dgxnode.agent.kube import now_rfc3339
from gpumodel.node import NodeHardware
from gpumodel.vocabulary import ATTESTED_CONDITION, NODE_LABEL

JSON = dict[str, Any]
KUBELET_VERSION = "v1.36.3"
MAX_PODS = 110
RUNTIME = "dgxsim://0.1.0"
SIM_IP = "127.0.0.1"


def base_resources(hardware: NodeHardware) -> dict[str, str]:
    """cpu, memory, pods and ephemeral storage of the node, from its hardware."""
    return {
        "cpu": str(hardware.cpu.threads),
        "memory": f"{hardware.memory_gib}Gi",
        "pods": str(MAX_PODS),
        "ephemeral-storage": f"{int(hardware.storage.cache.capacity_tb * 1000)}G",
    }


def node_object(hardware: NodeHardware, labels: dict[str, str], annotations: dict[str, str]
                ) -> JSON:
    """The Node as first created: identity and labels; status follows separately."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": hardware.name,
            "labels": {
                "kubernetes.io/hostname": hardware.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": hardware.kind,
                NODE_LABEL: "true", **labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", **annotations},
        },
        "spec": {},
    }


def attestation_condition(failure: str | None) -> JSON:
    """The ``Attested`` condition: True while TPM measured boot verifies."""
    now = now_rfc3339()
    return {"type": ATTESTED_CONDITION, "status": "False" if failure else "True",
            "reason": "AttestationFailed" if failure else "MeasuredBootVerified",
            "message": failure or "TPM 2.0 measured boot verified",
            "lastHeartbeatTime": now, "lastTransitionTime": now}


def node_status(hardware: NodeHardware, extended_capacity: dict[str, int],
                extended_allocatable: dict[str, int], ready: bool = True,
                attestation_failure: str | None = None) -> JSON:
    """A status patch: resources, conditions, addresses and node info."""
    now = now_rfc3339()
    base = base_resources(hardware)

    def condition(kind: str, status: str, reason: str, message: str) -> JSON:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {"status": {
        "capacity": {**base, **{k: str(v) for k, v in extended_capacity.items()}},
        "allocatable": {**base, **{k: str(v) for k, v in extended_allocatable.items()}},
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                      "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID",
                      "kubelet has sufficient PID available"),
            condition("Ready", "True" if ready else "False",
                      "KubeletReady" if ready else "KubeletNotReady",
                      "dgxsim node agent is posting ready status" if ready
                      else "dgxsim node agent is stopping"),
            attestation_condition(attestation_failure),
        ],
        "addresses": [{"type": "InternalIP", "address": SIM_IP},
                      {"type": "Hostname", "address": hardware.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": hardware.gpus[0].uuid.removeprefix("GPU-").replace("-", ""),
            "systemUUID": hardware.gpus[0].uuid.removeprefix("GPU-"),
            "bootID": "", "kernelVersion": "5.15.0-dgx", "osImage": "DGX OS 6 (dgxsim)",
            "containerRuntimeVersion": RUNTIME, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    }}


def _container_id(pod: JSON, name: str) -> str:
    return f"dgxsim://{pod['metadata']['uid']}/{name}"


def _conditions(ready: bool, reason: str | None = None) -> list[JSON]:
    now = now_rfc3339()
    flag = "True" if ready else "False"
    extra = {"reason": reason} if reason and not ready else {}
    return [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": flag, "lastTransitionTime": now, **extra},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now, **extra},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
    ]


def running_status(pod: JSON, started_at: str) -> JSON:
    """The status patch of a pod that starts running: what changes, as the kubelet
    patches the difference (the scheduler's ``PodScheduled`` stays as it is; a pod
    bound without the scheduler gets it)."""
    containers = pod["spec"].get("containers", [])
    conditions = _conditions(True)
    if any(c.get("type") == "PodScheduled"
           for c in (pod.get("status") or {}).get("conditions") or []):
        conditions = [c for c in conditions if c["type"] != "PodScheduled"]
    return {"status": {
        "phase": "Running", "hostIP": SIM_IP, "hostIPs": [{"ip": SIM_IP}],
        "podIP": SIM_IP, "podIPs": [{"ip": SIM_IP}], "startTime": started_at,
        "conditions": conditions,
        "containerStatuses": [{
            "name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""),
            "containerID": _container_id(pod, c["name"]), "ready": True, "started": True,
            "restartCount": 0, "state": {"running": {"startedAt": started_at}},
        } for c in containers],
    }}


def terminated_status(pod: JSON, started_at: str, exit_code: int, reason: str,
                      message: str = "") -> JSON:
    """The status patch of a running pod whose containers ended: what changes (phase,
    readiness, the containers' states); its addresses, start time and the conditions
    that stay true are left as the running status set them."""
    finished = now_rfc3339()
    containers = pod["spec"].get("containers", [])
    phase = "Succeeded" if exit_code == 0 else "Failed"
    ending = ("Ready", "ContainersReady")
    return {"status": {
        "phase": phase,
        "conditions": [c for c in _conditions(
            False, "PodCompleted" if exit_code == 0 else "PodFailed") if c["type"] in ending],
        "containerStatuses": [{
            "name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""),
            "containerID": _container_id(pod, c["name"]), "ready": False, "started": False,
            "restartCount": 0, "state": {"terminated": {
                "exitCode": exit_code, "reason": reason, "message": message,
                "startedAt": started_at, "finishedAt": finished,
                "containerID": _container_id(pod, c["name"])}},
        } for c in containers],
    }}


def rejected_status(reason: str, message: str) -> JSON:
    """What the kubelet writes when admission fails (e.g. ``UnexpectedAdmissionError``)."""
    return {"status": {"phase": "Failed", "reason": reason, "message": message}}
