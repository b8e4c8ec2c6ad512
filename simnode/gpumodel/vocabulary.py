"""Names that cross component boundaries, defined once.

The device plugin, the node agent, the operator, the CLI and the chart meet
through Kubernetes objects: resource names, labels, annotations and one
ConfigMap. A second literal of any of these is a rename waiting to break a
component silently, so every one of them lives here and everything imports it.
NVIDIA's names (``nvidia.com/*``) are spelled as NVIDIA's device plugin,
gpu-feature-discovery and mig-manager write them; dgxsim's own under
``dgxsim.io/``.
"""

from __future__ import annotations

import re
from typing import Final, Literal

# ----------------------------------------------------------------- resources

GPU_RESOURCE: Final = "nvidia.com/gpu"
"""Whole GPUs (and, under the single strategy, MIG devices)."""
MIG_RESOURCE_PREFIX: Final = "nvidia.com/mig-"
"""Per-profile MIG resources of the mixed strategy: ``nvidia.com/mig-1g.5gb``."""

NODE_KINDS: Final = ("dgx-a100-320gb", "dgx-a100-640gb")
"""The system kinds a simulated node can be (``--kind``): the DGX A100 systems of
``catalog/systems.yaml``, named here so that choosing one needs no catalog."""
DEFAULT_NODE_KIND: Final = "dgx-a100-320gb"

MigStrategy = Literal["none", "single", "mixed"]
MIG_STRATEGIES: Final[tuple[MigStrategy, ...]] = ("none", "single", "mixed")
DEFAULT_MIG_STRATEGY: Final[MigStrategy] = "mixed"


_RESOURCE_PROFILE = re.compile(r"^((?:\d+c\.)?\d+g\.\d+gb)\.(.+)$")


def mig_resource(profile: str) -> str:
    """The mixed strategy's resource for a MIG profile: ``nvidia.com/mig-<profile>``.

    Written as NVIDIA's device plugin and gpu-feature-discovery write it: a
    ``+`` becomes ``.`` (``1g.5gb+me`` -> ``nvidia.com/mig-1g.5gb.me``), since
    ``+`` is not allowed in a resource or label name.
    """
    return f"{MIG_RESOURCE_PREFIX}{profile.replace('+', '.')}"


def mig_profile_of(resource: str) -> str | None:
    """The MIG profile behind a mixed-strategy resource, or None for any other resource.

    The inverse of :func:`mig_resource`: ``nvidia.com/mig-1g.5gb.me`` -> ``1g.5gb+me``.
    """
    if not resource.startswith(MIG_RESOURCE_PREFIX):
        return None
    name = resource.removeprefix(MIG_RESOURCE_PREFIX)
    match = _RESOURCE_PROFILE.match(name)
    return f"{match.group(1)}+{match.group(2)}" if match else name


def is_gpu_resource(name: str) -> bool:
    """True for ``nvidia.com/gpu`` and every ``nvidia.com/mig-*`` resource."""
    return name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX)


# ----------------------------------------------------------------- labels (NVIDIA's)

NVIDIA_PREFIX: Final = "nvidia.com/"
MIG_CONFIG: Final = "nvidia.com/mig.config"
MIG_CONFIG_STATE: Final = "nvidia.com/mig.config.state"
MIG_STRATEGY: Final = "nvidia.com/mig.strategy"

# ----------------------------------------------------------------- labels (dgxsim's)

NODE_LABEL: Final = "dgxsim.io/node"
"""On every Node a simulated DGX backs (value ``true``)."""
DGX_NODE_LABEL: Final = "dgxsim.io/dgx-node"
"""Selects the workers the chart's node DaemonSet runs on (kind mode)."""
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"
"""Kubernetes' well-known label of a Node's name."""
MIG_POLICY: Final = "dgxsim.io/mig-policy"
"""``dynamic``: the operator partitions this node's GPUs on demand."""
LEAF_SWITCH: Final = "dgxsim.io/leaf-switch"
"""Names the leaf switches of the node's compute fabric (its scalable unit)."""

ATTESTATION_LABEL: Final = "dgxsim.io/attestation"
"""``trusted`` while the node's TPM measured boot verifies, ``untrusted`` when it fails."""
SED_LABEL: Final = "dgxsim.io/sed"
"""The self-encrypting drives: ``unlocked`` (the node holds their key) or ``locked``."""
TPM_LABEL: Final = "dgxsim.io/tpm.version"
"""The TPM the node measures its boot with (``2.0`` on a DGX A100)."""
UNTRUSTED_TAINT: Final = "dgxsim.io/untrusted"
"""``NoSchedule`` taint on a node whose attestation failed: no new work lands there."""
ATTESTED_CONDITION: Final = "Attested"
"""Node condition: True while measured boot verifies."""

# ----------------------------------------------------------------- annotations

INVENTORY_ANNOTATION: Final = "dgxsim.io/inventory"
"""On a Node: its NodeInventory as JSON."""
DEVICES_ANNOTATION: Final = "dgxsim.io/devices"
"""On a pod: the device IDs its node gave it, per resource (``resource: id, id; ...``,
see :func:`gpumodel.inventory.devices_record`); kubelet-less, the cluster's record of who
holds which device."""
ENV_ANNOTATION_PREFIX: Final = "dgxsim.io/env."
"""On a pod: ``dgxsim.io/env.<container>.<VAR>``, the env its devices brought."""
DURATION_ANNOTATION: Final = "dgxsim.io/duration"
"""On a pod: how long it runs, in simulated time (``90s``, ``2m``, ``1h30m``)."""
WORKLOAD_ANNOTATION: Final = "dgxsim.io/workload"
"""On a pod: a workload for the performance model to time on its devices."""
PREDICTED_DURATION_ANNOTATION: Final = "dgxsim.io/predicted-duration-s"
"""On a pod: the run time its node decided, in simulated seconds."""
SHUTDOWN_ANNOTATION: Final = "dgxsim.io/shutdown-seconds"
"""On a pod: how long it takes to stop after SIGTERM, in simulated seconds."""
SIM_STARTED_ANNOTATION: Final = "dgxsim.io/sim-started-s"
"""On a pod: when it started, on the cluster's simulated clock (seconds, ms precision)."""
SIM_FINISHED_ANNOTATION: Final = "dgxsim.io/sim-finished-s"
"""On a pod: when it finished, on the cluster's simulated clock (seconds, ms precision)."""
JOB_LABEL: Final = "dgxsim.io/job"
"""On a DGXJob's pods: the job's name."""
REPLICA_LABEL: Final = "dgxsim.io/replica"
"""On a DGXJob's pods: the replica's index."""
QUEUE_LABEL: Final = "dgxsim.io/queue"
"""On a DGXJob: the queue it is placed from."""

# ----------------------------------------------------------------- the MIG ConfigMap

MIG_CONFIGMAP_NAME: Final = "dgxsim-mig-configs"
"""The mig-parted config the node reads named configs from (key ``config.yaml``)."""
MIG_CONFIGMAP_KEY: Final = "config.yaml"
SYSTEM_NAMESPACE: Final = "dgxsim-system"
"""Where ``dgxsim up`` runs the operator and keeps the MIG ConfigMap. An installed
chart uses its release namespace instead, passed to its pods as ``POD_NAMESPACE``."""
NAMESPACE_ENV: Final = "POD_NAMESPACE"
"""The environment variable (the downward API's pod namespace) that overrides it."""

# ----------------------------------------------------------------- DRA (NVIDIA's driver names)

DRA_DRIVER: Final = "gpu.nvidia.com"
"""The DRA driver name of NVIDIA's GPU driver: ResourceSlices, allocation results and the
attribute domain (``device.attributes['gpu.nvidia.com'].profile``)."""
GPU_DEVICE_CLASS: Final = "gpu.nvidia.com"
"""NVIDIA's DeviceClass of whole GPUs (attribute ``type == 'gpu'``)."""
MIG_DEVICE_CLASS: Final = "mig.nvidia.com"
"""NVIDIA's DeviceClass of MIG devices (attribute ``type == 'mig'``)."""
DRA_API_VERSION: Final = "resource.k8s.io/v1"

DraMode = Literal["static", "dynamic"]
DRA_MODES: Final[tuple[DraMode, ...]] = ("static", "dynamic")
"""How a DRA node publishes its GPUs: ``static`` the devices that exist (whole GPUs or the
current MIG devices), ``dynamic`` every MIG slot as a partitionable device under shared
counters, created when a claim is prepared."""
