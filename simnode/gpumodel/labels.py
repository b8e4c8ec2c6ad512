"""Node labels in NVIDIA's vocabulary, as gpu-feature-discovery and mig-manager write them.

Schedulers, quota policies and MIG tooling written for NVIDIA's stack select
nodes by these labels, so dgxsim derives them from a node's inventory exactly
as the current gpu-feature-discovery (``k8s-device-plugin/internal/lm``) does:
the machine, driver and CUDA versions under the old and the new names,
product, count, replicas, sharing strategy and memory of the GPUs (of the MIG
devices, under the single strategy, or ``<product>-MIG-INVALID`` for a layout
that strategy refuses), and per MIG profile the same plus multiprocessors,
slices and engines (mixed strategy). Labels that no longer apply map to
``None`` so a merge patch removes them.
"""

from __future__ import annotations

import re

from gpumodel.errors import UnknownProfileError
from gpumodel.gpus import DeviceSpec, device
from gpumodel.inventory import InventoryDevice, NodeInventory
from gpumodel.mig import GpuInstanceProfile, MigProfile, profile_table
from gpumodel.software import (
    CUDA_VERSION,
    DRIVER_VERSION,
    compute_capability,
    cuda_version,
    driver_version,
)
from gpumodel.systems import system, system_catalog
from gpumodel.vocabulary import (
    ATTESTATION_LABEL,
    GPU_RESOURCE,
    MIG_CONFIG,
    MIG_CONFIG_STATE,
    MIG_STRATEGY,
    NVIDIA_PREFIX,
    SED_LABEL,
    TPM_LABEL,
    MigStrategy,
    mig_resource,
)

PREFIX = NVIDIA_PREFIX


def leaf_switch(nodes_per_leaf: int | None, node_index: int) -> str | None:
    """``su-<k>`` for the ``node_index``-th node of a cluster cabled in scalable units."""
    if nodes_per_leaf is None:
        return None
    return f"su-{node_index // nodes_per_leaf}"



_MACHINE_UNKNOWN = "unknown"
_UNSAFE = re.compile(r"[^A-Za-z0-9\-_. ]")


def security_labels(kind: str, attested: bool, drives_locked: bool) -> dict[str, str]:
    """dgxsim's labels for the node's security chapter (DGX A100 white paper): the TPM
    its boot is measured with, whether that measurement verifies, and its drives."""
    security = system(kind).security
    labels = {TPM_LABEL: security.tpm,
              ATTESTATION_LABEL: "trusted" if attested else "untrusted"}
    if security.self_encrypting_drives:
        labels[SED_LABEL] = "locked" if drives_locked else "unlocked"
    return labels


def _sanitize(name: str) -> str:
    """GFD's rule for product names: drop what a label value cannot hold, spaces to ``-``."""
    return "-".join(_UNSAFE.sub("", name).split())


def gfd_labels(inventory: NodeInventory, strategy: MigStrategy, gpu_device: str
               ) -> dict[str, str]:
    """The ``nvidia.com/*`` labels gpu-feature-discovery would set on this node.

    Built in GFD's order, later groups overriding earlier ones: machine,
    versions, capabilities, whole GPUs, then the MIG strategy's labels.
    ``nvidia.com/gpu.present`` is the GPU Operator's (its NFD rule), not GFD's.
    """
    spec = device(gpu_device)
    labels = {"nvidia.com/gpu.present": "true", **_machine_labels(inventory.kind),
              **_version_labels(), "nvidia.com/mig.capable": "true" if spec.mig else "false",
              "nvidia.com/mps.capable": "false", **_full_gpu_labels(inventory, spec),
              "nvidia.com/gpu.mode": "compute"}
    if strategy == "single":
        labels.update({MIG_STRATEGY: strategy, **_single_labels(inventory, spec)})
    elif strategy == "mixed":
        labels.update({MIG_STRATEGY: strategy, **_mixed_labels(inventory, gpu_device)})
    return labels


def _machine_labels(kind: str) -> dict[str, str]:
    """``gpu.machine``: the DMI product name the firmware reports, spaces written ``-``."""
    name = system(kind).dmi_product_name if kind in system_catalog() else None
    return {"nvidia.com/gpu.machine": (name or _MACHINE_UNKNOWN).strip().replace(" ", "-")}


def _version_labels() -> dict[str, str]:
    """Driver and CUDA versions, under GFD's deprecated names and its current ones."""
    major, minor, rev = (str(DRIVER_VERSION[0]), str(DRIVER_VERSION[1]),
                         f"{DRIVER_VERSION[2]:02d}")
    cuda_major, cuda_minor = (str(v) for v in CUDA_VERSION)
    return {
        "nvidia.com/cuda.driver.major": major, "nvidia.com/cuda.driver.minor": minor,
        "nvidia.com/cuda.driver.rev": rev,
        "nvidia.com/cuda.runtime.major": cuda_major, "nvidia.com/cuda.runtime.minor": cuda_minor,
        "nvidia.com/cuda.driver-version.major": major,
        "nvidia.com/cuda.driver-version.minor": minor,
        "nvidia.com/cuda.driver-version.revision": rev,
        "nvidia.com/cuda.driver-version.full": driver_version(),
        "nvidia.com/cuda.runtime-version.major": cuda_major,
        "nvidia.com/cuda.runtime-version.minor": cuda_minor,
        "nvidia.com/cuda.runtime-version.full": cuda_version(),
    }


def _full_gpu_labels(inventory: NodeInventory, spec: DeviceSpec) -> dict[str, str]:
    """Whole-GPU labels; replicas 0 when every GPU is in MIG mode (GFD shares none of them)."""
    major, minor = compute_capability(spec.architecture) or (0, 0)
    any_whole = any(g.mig_mode == "Disabled" for g in inventory.gpus)
    labels = _resource_labels(GPU_RESOURCE, _sanitize(spec.product_name), len(inventory.gpus),
                              replicas=1 if any_whole else 0)
    labels.update({
        f"{GPU_RESOURCE}.memory": str(spec.memory_mib),
        f"{GPU_RESOURCE}.family": spec.architecture,
        f"{GPU_RESOURCE}.compute.major": str(major),
        f"{GPU_RESOURCE}.compute.minor": str(minor),
    })
    return labels


def _resource_labels(key: str, product: str, count: int, replicas: int = 1) -> dict[str, str]:
    return {f"{key}.product": product, f"{key}.count": str(count),
            f"{key}.replicas": str(replicas), f"{key}.sharing-strategy": "none"}


def _mig_devices(inventory: NodeInventory) -> dict[str, list[InventoryDevice]]:
    """MIG devices by the name GFD gives them (``1g.5gb.me``: ``+`` written ``.``)."""
    by_name: dict[str, list[InventoryDevice]] = {}
    for d in inventory.devices:
        if d.kind == "mig" and d.profile:
            by_name.setdefault(d.profile.replace("+", "."), []).append(d)
    return by_name


def _single_labels(inventory: NodeInventory, spec: DeviceSpec) -> dict[str, str]:
    """The single strategy: MIG devices as ``nvidia.com/gpu``, or ``-MIG-INVALID``."""
    enabled = [g for g in inventory.gpus if g.mig_mode == "Enabled"]
    if not enabled:
        return {}
    by_name = _mig_devices(inventory)
    used = {d.gpu_index for devices in by_name.values() for d in devices}
    product = _sanitize(spec.product_name)
    if (any(g.index not in used for g in enabled) or len(enabled) != len(inventory.gpus)
            or len(by_name) != 1):
        return {**_resource_labels(GPU_RESOURCE, f"{product}-MIG-INVALID", 0, replicas=0),
                f"{GPU_RESOURCE}.memory": "0"}
    ((name, devices),) = by_name.items()
    return _mig_type_labels(GPU_RESOURCE, product, name, devices, inventory.kind)


def _mixed_labels(inventory: NodeInventory, gpu_device: str) -> dict[str, str]:
    product = _sanitize(device(gpu_device).product_name)
    labels: dict[str, str] = {}
    for name, devices in sorted(_mig_devices(inventory).items()):
        labels.update(_mig_type_labels(mig_resource(name), product, name, devices,
                                       inventory.kind))
    return labels


def _mig_type_labels(key: str, product: str, name: str, devices: list[InventoryDevice],
                     kind: str) -> dict[str, str]:
    """Product, count, sharing and the MIG device's attributes, under ``key``."""
    sample = devices[0]
    labels = _resource_labels(key, f"{product}-MIG-{_sanitize(name)}", len(devices))
    labels[f"{key}.memory"] = str(sample.memory_mib)
    labels[f"{key}.multiprocessors"] = str(sample.sms)
    gi = _gi_spec(sample, kind)
    if gi is None or sample.mig is None:
        return labels
    labels.update({
        f"{key}.slices.gi": str(gi.compute_slices),
        f"{key}.slices.ci": str(sample.mig.compute_slices),
        f"{key}.engines.copy": str(gi.copy_engines),
        f"{key}.engines.decoder": str(gi.decoders),
        f"{key}.engines.encoder": str(gi.encoders),
        f"{key}.engines.jpeg": str(gi.jpeg_decoders),
        f"{key}.engines.ofa": str(gi.ofa),
    })
    return labels


def _gi_spec(sample: InventoryDevice, kind: str) -> GpuInstanceProfile | None:
    if sample.profile is None or kind not in system_catalog():
        return None
    try:
        table = profile_table(system(kind).gpu)
        return table.get(str(MigProfile.parse(sample.profile).gpu_instance))
    except UnknownProfileError:
        return None


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
