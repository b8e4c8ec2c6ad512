"""DGXJobs that claim through DRA: the ResourceClaimTemplate and how a replica's pod uses it.

A job with ``allocation: DRA`` gets one ResourceClaimTemplate
(``resource.k8s.io/v1``) named like the job and owned by it: one request
``gpus`` of class ``gpu.nvidia.com`` with ``gpusPerReplica`` devices, or of
class ``mig.nvidia.com`` with one device whose profile is ``migProfile`` (the
selector as NVIDIA documents it). Each replica's pod claims from it, so
kube-scheduler makes one ResourceClaim per pod and allocates it; the operator
only chooses the node and pins the pod there (a required node affinity on
``metadata.name``), because a pod the operator bound itself would never get
its claim allocated.
"""

from __future__ import annotations

from gpumodel.vocabulary import DRA_API_VERSION, DRA_DRIVER, GPU_DEVICE_CLASS, MIG_DEVICE_CLASS
from kubewire import JSON
from migoperator.models import GROUP, KIND, VERSION, DGXJobSpec

CLAIM = "gpus"
"""The name of the request in the template and of the claim in the pod."""


def owner(job: JSON) -> JSON:
    meta = job["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def profile_selector(profile: str) -> str:
    return f"device.attributes['{DRA_DRIVER}'].profile == '{profile}'"


def claim_template(job: JSON, spec: DGXJobSpec) -> JSON:
    """The job's ResourceClaimTemplate (module doc)."""
    meta = job["metadata"]
    if spec.mig_profile is None:
        exactly: JSON = {"deviceClassName": GPU_DEVICE_CLASS, "allocationMode": "ExactCount",
                         "count": spec.gpus_per_replica}
    else:
        exactly = {"deviceClassName": MIG_DEVICE_CLASS, "allocationMode": "ExactCount",
                   "count": 1,
                   "selectors": [{"cel": {"expression": profile_selector(spec.mig_profile)}}]}
    return {"apiVersion": DRA_API_VERSION, "kind": "ResourceClaimTemplate",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "ownerReferences": [owner(job)]},
            "spec": {"spec": {"devices": {"requests": [{"name": CLAIM, "exactly": exactly}]}}}}


def claim_pod(pod: JSON, job: JSON, node: str) -> JSON:
    """``pod`` (a replica's pod) claiming from the job's template, pinned to ``node`` and
    left to kube-scheduler."""
    spec = dict(pod["spec"])
    spec.pop("schedulerName", None)
    spec["containers"] = [{**c, "resources": {"claims": [{"name": CLAIM}]}}
                          for c in spec["containers"]]
    spec["resourceClaims"] = [{"name": CLAIM,
                               "resourceClaimTemplateName": job["metadata"]["name"]}]
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    return {**pod, "spec": spec}
