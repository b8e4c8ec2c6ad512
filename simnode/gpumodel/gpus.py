"""Device specifications: the one table of GPU (and CPU-server) facts in dgxsim.

The hardware model, ``nvidia-smi`` and the performance model all read device
facts from here; the figures themselves live in ``catalog/gpus.yaml`` so they
can be read and cited as data. The file is parsed on first use, not at import.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["fp64", "fp64_tc", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4"]
DeviceName = Literal["a100-40gb", "a100-80gb", "v100-16gb", "v100-32gb", "t4", "h100-80gb",
                     "xeon-8280x2"]


class NvlinkSpec(BaseModel):
    """NVLink of one GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int = Field(ge=1)
    links: int = Field(ge=1)
    gb_per_s_per_link_per_direction: float = Field(gt=0)

    @property
    def gb_per_s_per_direction(self) -> float:
        return self.links * self.gb_per_s_per_link_per_direction

    @property
    def gb_per_s_bidirectional(self) -> float:
        return 2 * self.gb_per_s_per_direction


class PcieSpec(BaseModel):
    """Host link of one device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int = Field(ge=1)
    lanes: int = Field(ge=1)
    gb_per_s: float = Field(gt=0)


class MigGeometry(BaseModel):
    """How a MIG-capable GPU divides: memory and compute slices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_slices: int = Field(ge=1)
    compute_slices: int = Field(ge=1)
    sms_per_compute_slice: int = Field(ge=1)
    profile_family: Literal["40gb", "80gb"]
    bar1_mib: int = Field(gt=0)
    """The BAR1 aperture; a GPU instance gets the share of its memory slices."""


class TelemetrySpec(BaseModel):
    """What the board reports to NVML when idle, and how hot it runs at its TDP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    idle_power_w: float = Field(gt=0)
    idle_temp_c: float
    full_load_temp_c: float
    idle_sm_clock_mhz: int = Field(gt=0)
    memory_clock_mhz: int = Field(gt=0)


class DeviceSpec(BaseModel):
    """One device kind: compute, memory and interconnect facts with units in the names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    product_name: str
    architecture: str
    kind: Literal["gpu", "cpu"]
    sms: int = Field(default=0, ge=0)
    sockets: int = Field(default=1, ge=1)
    cores: int = Field(default=0, ge=0)
    boost_clock_mhz: int = Field(gt=0)
    memory_mib: int = Field(gt=0)
    hbm_gb_per_s: float = Field(gt=0)
    l2_cache_mib: float = Field(gt=0)
    tdp_w: int = Field(gt=0)
    pci_device_id: str | None = None
    peak_tflops: dict[Dtype, float]
    sparse_dtypes: tuple[Dtype, ...] = ()
    nvlink: NvlinkSpec | None = None
    pcie: PcieSpec | None = None
    mig: MigGeometry | None = None
    telemetry: TelemetrySpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeviceSpec:
        missing = set(self.sparse_dtypes) - set(self.peak_tflops)
        if missing:
            raise ValueError(f"{self.name}: sparse dtypes without a dense peak: {sorted(missing)}")
        if self.kind == "gpu" and self.sms == 0:
            raise ValueError(f"{self.name}: a GPU needs its SM count")
        if self.mig and self.mig.compute_slices * self.mig.sms_per_compute_slice > self.sms:
            raise ValueError(f"{self.name}: MIG compute slices exceed the SM count")
        return self

    def peak(self, dtype: Dtype, sparse: bool = False) -> float:
        """Peak TFLOPS (TOPS for integers) for ``dtype``; 2:4 sparsity doubles tensor dtypes."""
        if dtype not in self.peak_tflops:
            raise KeyError(f"{self.name} has no {dtype} peak")
        factor = 2.0 if sparse and dtype in self.sparse_dtypes else 1.0
        return self.peak_tflops[dtype] * factor

    @property
    def memory_gb(self) -> float:
        return self.memory_mib * 2**20 / 1e9


class _Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["v1"]
    devices: dict[str, dict[str, object]]


@cache
def device_catalog() -> dict[str, DeviceSpec]:
    """Every known device kind by name, parsed from ``catalog/gpus.yaml`` once."""
    text = resources.files("gpumodel").joinpath("catalog/gpus.yaml").read_text()
    raw = _Catalog.model_validate(yaml.safe_load(text))
    return {name: DeviceSpec.model_validate({"name": name, **body})
            for name, body in raw.devices.items()}


def device(name: str) -> DeviceSpec:
    """The spec of one device kind; a clear error lists the known names."""
    catalog = device_catalog()
    try:
        return catalog[name]
    except KeyError:
        raise KeyError(f"unknown device {name!r}; known: {', '.join(sorted(catalog))}") from None
