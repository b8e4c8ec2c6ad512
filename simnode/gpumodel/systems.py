"""Whole-system specifications: DGX A100 (both variants) and the DGX-1 it is compared with.

Why a separate table from ``gpus.py``: a system is a composition (which GPU,
how many, which PCIe switch and NUMA node each sits on, the NVSwitch fabric,
NICs and their rails, CPUs, memory, NVMe) while a device kind is a part. The
node model, ``nvidia-smi topo -m``, the device plugin's topology-aware
allocation and the performance model's network and storage terms all read
these facts here. The figures live in ``catalog/systems.yaml``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpumodel.gpus import DeviceSpec, device


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuSlot(_Frozen):
    """Where one GPU sits in the system."""

    index: int = Field(ge=0)
    pci_bus_id: str
    pcie_switch: int = Field(ge=0)
    numa_node: int = Field(ge=0)


class NicSpec(_Frozen):
    """One network adapter port as the OS names it."""

    name: str
    role: Literal["compute", "storage", "management"]
    model: str
    gbit_per_s: int = Field(gt=0)
    pcie_switch: int | None = None
    numa_node: int = Field(ge=0)
    rail: int | None = Field(default=None, ge=0)
    adapter: str | None = None
    """The card this port is on, where it has several (the dual-port storage card)."""

    @property
    def gb_per_s(self) -> float:
        """Line rate in GB/s (decimal), one direction."""
        return self.gbit_per_s / 8


class NvswitchSpec(_Frozen):
    count: int = Field(ge=1)
    generation: int = Field(ge=1)
    links_per_gpu_per_switch: int = Field(ge=1)


class CpuSpec(_Frozen):
    model: str
    sockets: int = Field(ge=1)
    cores_per_socket: int = Field(ge=1)
    threads_per_core: int = Field(ge=1)
    max_clock_mhz: int = Field(gt=0)
    numa_nodes: int = Field(ge=1)
    memory_channels_per_socket: int = Field(ge=1)
    memory_gb_per_s_per_socket: float = Field(gt=0)

    @property
    def cores(self) -> int:
        return self.sockets * self.cores_per_socket

    @property
    def threads(self) -> int:
        return self.cores * self.threads_per_core


class RaidSpec(_Frozen):
    drives: int = Field(ge=1)
    drive_tb: float = Field(gt=0)
    raid: Literal[0, 1]
    read_gb_per_s_per_drive: float | None = Field(default=None, gt=0)

    @property
    def capacity_tb(self) -> float:
        return self.drive_tb * (self.drives if self.raid == 0 else 1)

    @property
    def read_gb_per_s(self) -> float:
        per_drive = self.read_gb_per_s_per_drive or 0.0
        return per_drive * (self.drives if self.raid == 0 else 1)


class StorageSpec(_Frozen):
    os: RaidSpec
    cache: RaidSpec


class SecuritySpec(_Frozen):
    tpm: str
    self_encrypting_drives: bool


class SystemSpec(_Frozen):
    """One system kind: parts, their placement and the fabrics between them."""

    name: str
    product_name: str
    dmi_product_name: str | None = None
    """The firmware's product name (DMI), where NVIDIA documents it; GFD's machine label."""
    gpu: str
    gpus: tuple[GpuSlot, ...]
    intra_node_fabric: Literal["nvswitch", "hybrid-cube-mesh"]
    nvswitches: NvswitchSpec | None = None
    nics: tuple[NicSpec, ...]
    cpu: CpuSpec
    memory_gib: int = Field(gt=0)
    storage: StorageSpec
    security: SecuritySpec
    nodes_per_leaf: int | None = Field(default=None, ge=1)
    """Nodes that share the leaf switches of the compute fabric in a cluster of them:
    a DGX SuperPOD scalable unit (20 DGX A100) is cabled rail by rail to its own leaves."""

    @model_validator(mode="after")
    def _consistent(self) -> SystemSpec:
        device(self.gpu)  # the GPU kind must exist
        if [g.index for g in self.gpus] != list(range(len(self.gpus))):
            raise ValueError(f"{self.name}: GPU indices must be 0..{len(self.gpus) - 1} in order")
        if (self.intra_node_fabric == "nvswitch") != (self.nvswitches is not None):
            raise ValueError(f"{self.name}: an NVSwitch fabric needs its nvswitches entry")
        names = [n.name for n in self.nics]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate NIC names")
        return self

    @property
    def gpu_spec(self) -> DeviceSpec:
        return device(self.gpu)

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def nics_with_role(self, role: str) -> tuple[NicSpec, ...]:
        return tuple(n for n in self.nics if n.role == role)

    @property
    def compute_network_gbit_per_s(self) -> int:
        return sum(n.gbit_per_s for n in self.nics_with_role("compute"))

    def rail_nics(self, gpu_index: int) -> tuple[NicSpec, ...]:
        """Compute NICs under the same PCIe switch as the GPU (its rail-local NICs)."""
        switch = self.gpus[gpu_index].pcie_switch
        return tuple(n for n in self.nics_with_role("compute") if n.pcie_switch == switch)


class _Catalog(_Frozen):
    version: Literal["v1"]
    systems: dict[str, dict[str, object]]


@cache
def system_catalog() -> dict[str, SystemSpec]:
    """Every known system kind by name, parsed from ``catalog/systems.yaml`` once."""
    text = resources.files("gpumodel").joinpath("catalog/systems.yaml").read_text()
    raw = _Catalog.model_validate(yaml.safe_load(text))
    return {name: SystemSpec.model_validate({"name": name, **body})
            for name, body in raw.systems.items()}


def system(name: str) -> SystemSpec:
    """The spec of one system kind; a clear error lists the known names."""
    catalog = system_catalog()
    try:
        return catalog[name]
    except KeyError:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(sorted(catalog))}") from None
