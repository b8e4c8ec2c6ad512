"""Node labels in NVIDIA's vocabulary, as gpu-feature-discovery and mig-manager write them.

Schedulers, quota policies and MIG tooling written for NVIDIA's stack select
nodes by these labels, so dgxsim derives them from a node's inventory exactly
as gpu-feature-discovery would: product, count and memory of the GPUs (of the
MIG devices, under the single strategy), and per MIG profile its count, memory,
multiprocessors, slices and engines (mixed strategy). Labels that no longer
apply map to ``None`` so a merge patch removes them.
"""

from __future__ import annotations

from gpumodel.errors import UnknownProfileError
from gpumodel.gpus import device
from gpumodel.inventory import NodeInventory
from gpumodel.mig import MigProfile, profile_table
from gpumodel.software import CUDA_VERSION, DRIVER_VERSION, compute_capability
from gpumodel.vocabulary import (
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_STRATEGY,
    NVIDIA_PREFIX,
    MigStrategy,
    mig_resource,
)

PREFIX = NVIDIA_PREFIX


def leaf_switch(nodes_per_leaf: int | None, node_index: int) -> str | None:
    """``su-<k>`` for the ``node_index``-th node of a cluster cabled in scalable units."""
    if nodes_per_leaf is None:
        return None
    return f"su-{node_index // nodes_per_leaf}"



def _sanitize(product: str) -> str:
    return product.replace(" ", "-")


def gfd_labels(inventory: NodeInventory, strategy: MigStrategy, gpu_device: str
               ) -> dict[str, str]:
    """The ``nvidia.com/*`` labels gpu-feature-discovery would set on this node."""
    spec = device(gpu_device)
    major, minor = compute_capability(spec.architecture) or (0, 0)
    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.family": spec.architecture,
        "nvidia.com/gpu.compute.major": str(major),
        "nvidia.com/gpu.compute.minor": str(minor),
        "nvidia.com/gpu.machine": _sanitize(inventory.kind.upper()),
        "nvidia.com/cuda.driver.major": str(DRIVER_VERSION[0]),
        "nvidia.com/cuda.driver.minor": str(DRIVER_VERSION[1]),
        "nvidia.com/cuda.driver.rev": f"{DRIVER_VERSION[2]:02d}",
        "nvidia.com/cuda.runtime.major": str(CUDA_VERSION[0]),
        "nvidia.com/cuda.runtime.minor": str(CUDA_VERSION[1]),
        "nvidia.com/mig.capable": "true" if spec.mig else "false",
        MIG_STRATEGY: strategy,
    }
    gpus = [d for d in inventory.devices if d.kind == "gpu"]
    migs = [d for d in inventory.devices if d.kind == "mig"]
    product = _sanitize(spec.product_name)
    profiles = sorted({str(d.profile) for d in migs})
    if strategy == "single" and migs and len(profiles) == 1:
        labels["nvidia.com/gpu.product"] = f"{product}-MIG-{profiles[0]}"
        labels["nvidia.com/gpu.count"] = str(len(migs))
        labels["nvidia.com/gpu.memory"] = str(migs[0].memory_mib)
        labels["nvidia.com/gpu.multiprocessors"] = str(migs[0].sms)
    else:
        labels["nvidia.com/gpu.product"] = product
        labels["nvidia.com/gpu.count"] = str(len(gpus))
        labels["nvidia.com/gpu.memory"] = str(spec.memory_mib)
    if strategy == "mixed" and spec.mig:
        labels.update(_mig_profile_labels(inventory, gpu_device))
    return labels


def _mig_profile_labels(inventory: NodeInventory, gpu_device: str) -> dict[str, str]:
    table = profile_table(gpu_device)
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for d in inventory.devices:
        if d.kind == "mig":
            counts[str(d.profile)] = counts.get(str(d.profile), 0) + 1
    for name, count in sorted(counts.items()):
        sample = next(d for d in inventory.devices if d.profile == name)
        key = mig_resource(name)
        labels[f"{key}.count"] = str(count)
        labels[f"{key}.memory"] = str(sample.memory_mib)
        labels[f"{key}.multiprocessors"] = str(sample.sms)
        try:
            gi = table.get(str(MigProfile.parse(name).gpu_instance))
        except UnknownProfileError:
            continue
        ci_slices = sample.mig.compute_slices if sample.mig else gi.compute_slices
        labels[f"{key}.slices.gi"] = str(gi.compute_slices)
        labels[f"{key}.slices.ci"] = str(ci_slices)
        labels[f"{key}.engines.copy"] = str(gi.copy_engines)
        labels[f"{key}.engines.decoder"] = str(gi.decoders)
        labels[f"{key}.engines.encoder"] = str(gi.encoders)
        labels[f"{key}.engines.jpeg"] = str(gi.jpeg_decoders)
        labels[f"{key}.engines.ofa"] = str(gi.ofa)
    return labels


def label_patch(current: dict[str, str], wanted: dict[str, str]) -> dict[str, str | None]:
    """A merge patch turning the ``nvidia.com/*`` labels of ``current`` into ``wanted``.

    Labels outside ``nvidia.com/`` are left alone, and so are the two that
    belong to the MIG reconfiguration protocol (the config a user asks for and
    its state, which the MIG manager writes itself).
    """
    keep = {MIG_CONFIG, MIG_CONFIG_STATE}
    patch: dict[str, str | None] = {k: v for k, v in wanted.items() if current.get(k) != v}
    for key in current:
        if key.startswith(PREFIX) and key not in wanted and key not in keep:
            patch[key] = None
    return patch
