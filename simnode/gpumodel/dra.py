"""What a node publishes through DRA, as NVIDIA's GPU driver (``gpu.nvidia.com``) publishes it.

Pure: from a :class:`~gpumodel.inventory.NodeInventory` and the MIG profile
table to the ``spec`` of each ResourceSlice (``resource.k8s.io/v1``) of the
node's pool. Names and value types follow NVIDIA's kubelet plugin
(``cmd/gpu-kubelet-plugin``: ``deviceinfo.go``, ``mig.go``, ``partitions.go``):

- devices ``gpu-<minor>`` and ``gpu-<minor>-mig-<profile>-<profile ID>-<start>``
  (the profile without dots, ``+`` as ``-``: ``gpu-0-mig-1g5gb-19-6``);
- attributes ``type`` (``gpu`` | ``mig``), ``uuid``, ``parentUUID``,
  ``profile``, ``productName``, ``brand``, ``architecture`` (strings),
  ``cudaComputeCapability``, ``driverVersion``, ``cudaDriverVersion``
  (semantic versions) and ``resource.kubernetes.io/pciBusID``;
- capacities ``memory`` (bytes) and, for MIG devices, ``multiprocessors``,
  ``copyEngines``, ``decoders``, ``encoders``, ``jpegEngines``, ``ofaEngines``
  (static MIG devices add ``memorySlice<N>``);
- an unhealthy device carries NVIDIA's taint ``gpu.nvidia.com/xid=<XID>:NoSchedule``
  (in dynamic mode every slot of an unhealthy GPU, and the slot of an unhealthy MIG
  device), so the scheduler places no new claim on it; what runs keeps running.

Two modes. ``static``: the devices that exist now, in one slice. ``dynamic``
(partitionable devices, KEP 4815): per GPU one CounterSet ``gpu-<minor>-counter-set``
with one counter per capacity dimension (its largest value over the GPU's
profiles: ``multiprocessors``, ``copy-engines``, ... ``memory``) and one counter
``memory-slice-<i>`` of 1 per memory slice; a device for every (profile, start)
the GPU allows plus the whole GPU, each consuming its capacities and exactly
the memory slices it would occupy (the whole GPU consumes everything). The
allocator can then only pick sets of devices whose slices do not overlap and
whose engines fit, which are exactly the layouts the MIG engine accepts
(``tests/unit/test_dra_counters.py`` proves it for each GPU kind).

API limits (``k8s.io/api/resource/v1``): a slice holds devices or shared
counters, never both; at most 8 counter sets of 32 counters per slice; at most
64 devices per slice when devices consume counters (128 otherwise); at most 32
attributes and capacities per device. Counters go in the pool's first slice,
each GPU's devices in a slice of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpumodel.gpus import DeviceSpec, device
from gpumodel.inventory import InventoryDevice, NodeInventory
from gpumodel.mig import GpuInstanceProfile, ProfileTable, profile_table
from gpumodel.software import compute_capability, cuda_version, driver_version
from gpumodel.systems import system
from gpumodel.vocabulary import (
    DRA_DRIVER,
    GPU_DEVICE_CLASS,
    MIG_DEVICE_CLASS,
    DraMode,
)

JSON = dict[str, Any]

MAX_COUNTER_SETS_PER_SLICE = 8
MAX_COUNTERS_PER_SET = 32
MAX_DEVICES_PER_SLICE = 128
MAX_DEVICES_WITH_COUNTERS = 64
MAX_ATTRIBUTES_AND_CAPACITIES = 32
PCI_BUS_ID_ATTRIBUTE = "resource.kubernetes.io/pciBusID"
XID_TAINT = f"{DRA_DRIVER}/xid"
BRAND = "Nvidia"
"""NVML's brand of data-center GPUs as go-nvlib prints it."""

_CAPACITY_OF: dict[str, Callable[[GpuInstanceProfile], int]] = {
    "multiprocessors": lambda p: p.sms,
    "copyEngines": lambda p: p.copy_engines,
    "decoders": lambda p: p.decoders,
    "encoders": lambda p: p.encoders,
    "jpegEngines": lambda p: p.jpeg_decoders,
    "ofaEngines": lambda p: p.ofa,
    "memory": lambda p: p.memory_mib * 2**20,
}
"""NVIDIA's MIG capacities (``CommonCapacitiesMig``), from a GPU-instance profile."""


def counter_name(capacity: str) -> str:
    """A capacity as a counter name (``camelToDNSName``): ``copyEngines`` -> ``copy-engines``."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", capacity).lower()


def memory_slice_counter(index: int) -> str:
    return f"memory-slice-{index}"


def gpu_device_name(index: int) -> str:
    return f"gpu-{index}"


def counter_set_name(index: int) -> str:
    return f"gpu-{index}-counter-set"


def mig_device_name(gpu: int, profile: GpuInstanceProfile, start: int) -> str:
    """``gpu-0-mig-1g5gb-19-6``: parent minor, profile, GI profile ID, placement start."""
    short = re.sub(r"[^a-z0-9-]", "-", profile.name.lower().replace(".", "")).strip("-")
    return f"gpu-{gpu}-mig-{short}-{profile.profile_id}-{start}"


_MIG_NAME = re.compile(r"^gpu-(\d+)-mig-(.+)-(\d+)-(\d+)$")
_GPU_NAME = re.compile(r"^gpu-(\d+)$")


@dataclass(frozen=True)
class DeviceRef:
    """What a published device name means: a whole GPU, or a MIG slot of one."""

    gpu: int
    profile_id: int | None = None
    start: int | None = None

    @property
    def is_mig(self) -> bool:
        return self.profile_id is not None


def parse_device_name(name: str) -> DeviceRef | None:
    """The GPU (and MIG profile ID and start) a device name stands for; None if not ours."""
    if match := _GPU_NAME.match(name):
        return DeviceRef(int(match.group(1)))
    if match := _MIG_NAME.match(name):
        return DeviceRef(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    return None


# ----------------------------------------------------------------- attributes


def _semver(text: str) -> str:
    """``535.183.06`` -> ``535.183.6``, ``8.0`` -> ``8.0.0`` (semver as the API wants it)."""
    parts = [str(int(p)) for p in text.split(".")]
    return ".".join([*parts, "0", "0"][:3])


def _pci_bus_id(nvml_bus_id: str) -> str:
    """NVML's ``00000000:07:00.0`` as the standard attribute's ``0000:07:00.0``."""
    domain, rest = nvml_bus_id.split(":", 1)
    return f"{domain[-4:]}:{rest}".lower()


def _gpu_spec(inventory: NodeInventory) -> DeviceSpec:
    return device(system(inventory.kind).gpu)


def table_of(inventory: NodeInventory) -> ProfileTable | None:
    spec = _gpu_spec(inventory)
    return profile_table(spec.name) if spec.mig else None


def _common(inventory: NodeInventory, gpu: InventoryDevice) -> JSON:
    spec = _gpu_spec(inventory)
    capability = compute_capability(spec.architecture) or (0, 0)
    return {
        "productName": {"string": spec.product_name},
        "brand": {"string": BRAND},
        "architecture": {"string": spec.architecture.capitalize()},
        "cudaComputeCapability": {"version": _semver(f"{capability[0]}.{capability[1]}")},
        "driverVersion": {"version": _semver(driver_version())},
        "cudaDriverVersion": {"version": _semver(cuda_version())},
        PCI_BUS_ID_ATTRIBUTE: {"string": _pci_bus_id(gpu.pci_bus_id)},
    }


def xid_taints(device: InventoryDevice) -> list[JSON]:
    """NVIDIA's taint of an unhealthy device: ``gpu.nvidia.com/xid=<XID>:NoSchedule``
    (health is reported, never enforced on what runs: no NoExecute)."""
    if device.health == "Healthy":
        return []
    value = "" if device.xid is None else str(device.xid)
    return [{"key": XID_TAINT, "value": value, "effect": "NoSchedule"}]


def _with_taints(published: JSON, taints: list[JSON]) -> JSON:
    if taints:
        published["taints"] = taints
    return published


def _whole_gpus(inventory: NodeInventory) -> list[InventoryDevice]:
    return sorted((d for d in inventory.devices if d.kind == "gpu"), key=lambda d: d.gpu_index)


def _quantity(value: int) -> dict[str, str]:
    return {"value": str(value)}


def gpu_device(inventory: NodeInventory, gpu: InventoryDevice) -> JSON:
    """A whole GPU as NVIDIA's ``GpuInfo.GetDevice`` publishes it."""
    return {"name": gpu_device_name(gpu.gpu_index),
            "attributes": {"type": {"string": "gpu"}, "uuid": {"string": gpu.id},
                           **_common(inventory, gpu)},
            "capacity": {"memory": _quantity(gpu.memory_mib * 2**20)}}


def _mig_capacity(profile: GpuInstanceProfile) -> JSON:
    return {name: _quantity(of(profile)) for name, of in _CAPACITY_OF.items()}


def _mig_attributes(inventory: NodeInventory, parent: InventoryDevice, profile: str) -> JSON:
    return {"type": {"string": "mig"}, "parentUUID": {"string": parent.id},
            "profile": {"string": profile}, **_common(inventory, parent)}


# ----------------------------------------------------------------- static


def static_devices(inventory: NodeInventory) -> list[JSON]:
    """The devices that exist: each GPU not in MIG mode, and every MIG device.

    Only MIG devices whose compute instance spans its GPU instance are published,
    as NVIDIA's driver does (a ``1c.3g.20gb`` has no canonical device of its own).
    """
    table = table_of(inventory)
    parents = {d.gpu_index: d for d in _whole_gpus(inventory)}
    result: list[JSON] = []
    for gpu in _whole_gpus(inventory):
        if gpu.usable:
            result.append(_with_taints(gpu_device(inventory, gpu), xid_taints(gpu)))
            continue
        for mig in sorted((d for d in inventory.devices
                           if d.kind == "mig" and d.gpu_index == gpu.gpu_index and d.mig),
                          key=lambda d: d.mig.memory_start if d.mig else 0):
            assert mig.mig is not None and table is not None
            spec = table.get_by_id(mig.mig.gi_profile_id)
            if mig.profile != spec.name:
                continue
            capacity = _mig_capacity(spec)
            for i in range(mig.mig.memory_start, mig.mig.memory_start + mig.mig.memory_slices):
                capacity[f"memorySlice{i}"] = _quantity(1)
            result.append(_with_taints({
                "name": mig_device_name(gpu.gpu_index, spec, mig.mig.memory_start),
                "attributes": {**_mig_attributes(inventory, parents[gpu.gpu_index], spec.name),
                               "uuid": {"string": mig.id}},
                "capacity": capacity}, xid_taints(mig)))
    return result


# ----------------------------------------------------------------- dynamic


def gpu_counters(table: ProfileTable) -> dict[str, int]:
    """The counters of one GPU: each capacity at its largest over the profiles, and one
    per memory slice."""
    counters = {counter_name(c): max(of(p) for p in table.profiles)
                for c, of in _CAPACITY_OF.items()}
    counters.update({memory_slice_counter(i): 1 for i in range(table.memory_slices)})
    return counters


def slot_consumption(profile: GpuInstanceProfile, start: int) -> dict[str, int]:
    """What a GI of ``profile`` at ``start`` takes from its GPU's counters."""
    used = {counter_name(c): of(profile) for c, of in _CAPACITY_OF.items()}
    used.update({memory_slice_counter(i): 1
                 for i in range(start, start + profile.memory_slices)})
    return used


def slots(table: ProfileTable) -> list[tuple[GpuInstanceProfile, int]]:
    """Every (profile, start) the GPU allows, in the table's order then by start."""
    return [(p, s) for p in table.profiles for s in p.starts]


def _consumes(index: int, counters: dict[str, int]) -> list[JSON]:
    return [{"counterSet": counter_set_name(index),
             "counters": {k: _quantity(v) for k, v in counters.items()}}]


def dynamic_devices(inventory: NodeInventory, gpu: InventoryDevice) -> list[JSON]:
    """One GPU's partitionable devices: the whole GPU, then every MIG slot."""
    table = table_of(inventory)
    if table is None:
        return [gpu_device(inventory, gpu)]
    counters = gpu_counters(table)
    whole = gpu_device(inventory, gpu)
    whole["capacity"] = {c: _quantity(max(of(p) for p in table.profiles))
                         for c, of in _CAPACITY_OF.items()}
    whole["consumesCounters"] = _consumes(gpu.gpu_index, counters)
    gpu_taints = xid_taints(gpu)
    result = [_with_taints(whole, gpu_taints)]
    # A MIG device that exists and is unhealthy taints the slot it was created on.
    unhealthy = {(d.mig.gi_profile_id, d.mig.memory_start): xid_taints(d)
                 for d in inventory.devices
                 if d.gpu_index == gpu.gpu_index and d.mig is not None and xid_taints(d)}
    for profile, start in slots(table):
        taints = gpu_taints or unhealthy.get((profile.profile_id, start), [])
        result.append(_with_taints({
            "name": mig_device_name(gpu.gpu_index, profile, start),
            "attributes": _mig_attributes(inventory, gpu, profile.name),
            "capacity": _mig_capacity(profile),
            "consumesCounters": _consumes(gpu.gpu_index, slot_consumption(profile, start))},
            taints))
    return result


def dynamic_counter_sets(inventory: NodeInventory) -> list[JSON]:
    table = table_of(inventory)
    if table is None:
        return []
    counters = gpu_counters(table)
    return [{"name": counter_set_name(gpu.gpu_index),
             "counters": {k: _quantity(v) for k, v in counters.items()}}
            for gpu in _whole_gpus(inventory)]


# ----------------------------------------------------------------- slices


def slice_specs(inventory: NodeInventory, mode: DraMode) -> list[JSON]:
    """The ``spec`` of each ResourceSlice of the node's pool, without pool generation and
    slice count (the publisher adds them): within the API's limits (module doc)."""
    base = {"driver": DRA_DRIVER, "nodeName": inventory.node}
    if mode == "static":
        devices = static_devices(inventory)
        size = (MAX_DEVICES_WITH_COUNTERS if any(d.get("taints") for d in devices)
                else MAX_DEVICES_PER_SLICE)
        chunks = [devices[i:i + size] for i in range(0, len(devices), size)] or [[]]
        return [{**base, "devices": chunk} for chunk in chunks]
    sets = dynamic_counter_sets(inventory)
    specs: list[JSON] = []
    for i in range(0, len(sets), MAX_COUNTER_SETS_PER_SLICE):
        specs.append({**base, "sharedCounters": sets[i:i + MAX_COUNTER_SETS_PER_SLICE]})
    for gpu in _whole_gpus(inventory):
        devices = dynamic_devices(inventory, gpu)
        for i in range(0, len(devices), MAX_DEVICES_WITH_COUNTERS):
            specs.append({**base, "devices": devices[i:i + MAX_DEVICES_WITH_COUNTERS]})
    return specs


def limit_problems(specs: list[JSON]) -> list[str]:
    """What in ``specs`` the API server would refuse by the limits in the module doc."""
    problems: list[str] = []
    for n, spec in enumerate(specs):
        devices = spec.get("devices") or []
        sets = spec.get("sharedCounters") or []
        if devices and sets:
            problems.append(f"slice {n}: devices and shared counters together")
        if len(sets) > MAX_COUNTER_SETS_PER_SLICE:
            problems.append(f"slice {n}: {len(sets)} counter sets")
        problems += [f"slice {n}: counter set {s['name']}: {len(s['counters'])} counters"
                     for s in sets if len(s["counters"]) > MAX_COUNTERS_PER_SET]
        limit = (MAX_DEVICES_WITH_COUNTERS
                 if any(d.get("consumesCounters") or d.get("taints") for d in devices)
                 else MAX_DEVICES_PER_SLICE)
        if len(devices) > limit:
            problems.append(f"slice {n}: {len(devices)} devices (limit {limit})")
        for d in devices:
            fields = len(d.get("attributes") or {}) + len(d.get("capacity") or {})
            if fields > MAX_ATTRIBUTES_AND_CAPACITIES:
                problems.append(f"device {d['name']}: {fields} attributes and capacities")
            if len(d["name"]) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                                                       d["name"]):
                problems.append(f"device {d['name']}: not a DNS label")
    return problems


def device_classes() -> list[JSON]:
    """NVIDIA's DeviceClasses, as its chart installs them."""
    def cls(name: str, kind: str) -> JSON:
        expression = (f"device.driver == '{DRA_DRIVER}' && "
                      f"device.attributes['{DRA_DRIVER}'].type == '{kind}'")
        return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                "metadata": {"name": name},
                "spec": {"selectors": [{"cel": {"expression": expression}}]}}

    return [cls(GPU_DEVICE_CLASS, "gpu"), cls(MIG_DEVICE_CLASS, "mig")]
