"""The mig-parted config file: NVIDIA's format for naming MIG layouts.

Same format as NVIDIA's ``mig-parted`` (``api/spec/v1``) so a config written
for a real cluster's mig-manager works unchanged::

    version: v1
    mig-configs:
      all-balanced:
        - device-filter: ["0x20B010DE"]     # optional: PCI device IDs
          devices: all                      # or [0, 1, ...]
          mig-enabled: true
          mig-devices: {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}

Decoding is strict, as mig-parted's is: a missing ``version`` or an unknown
key anywhere is an error, ``mig-devices`` is required when MIG is enabled and
forbidden when it is not. This module parses text; reading files is the
caller's business. Whether a profile exists on a given GPU is checked when a
config is resolved against that GPU (:meth:`MigPartedConfig.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpumodel.errors import MigConfigError, ProfileParseError
from gpumodel.mig import MigProfile


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MigConfigEntry(_Strict):
    """One entry of a named config: which GPUs, MIG on or off, which devices."""

    device_filter: tuple[str, ...] | None = Field(default=None, alias="device-filter")
    devices: Literal["all"] | tuple[int, ...]
    mig_enabled: bool = Field(alias="mig-enabled")
    mig_devices: dict[str, int] | None = Field(default=None, alias="mig-devices")

    @field_validator("device_filter", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("devices")
    @classmethod
    def _indices(cls, value: Literal["all"] | tuple[int, ...]) -> Literal["all"] | tuple[int, ...]:
        if value != "all" and any(i < 0 for i in value):
            raise ValueError("device indices must be 0 or more")
        return value

    @field_validator("mig_devices")
    @classmethod
    def _profiles(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for name, count in (value or {}).items():
            try:
                MigProfile.parse(name)
            except ProfileParseError as err:
                raise ValueError(str(err)) from err
            if count < 0:
                raise ValueError(f"negative count for {name!r}: {count}")
        return value

    @model_validator(mode="after")
    def _mode_and_devices(self) -> MigConfigEntry:
        if self.mig_enabled and self.mig_devices is None:
            raise ValueError("missing required field 'mig-devices' when 'mig-enabled' is true")
        if not self.mig_enabled and self.mig_devices:
            raise ValueError("MIG devices included when 'mig-enabled' is false")
        return self

    def selects(self, index: int, pci_device_id: str) -> bool:
        if self.device_filter is not None and pci_device_id.upper() not in {
                f.upper() for f in self.device_filter}:
            return False
        return self.devices == "all" or index in self.devices


class GpuTarget(_Strict):
    """What one GPU should look like after a config is applied."""

    mig_enabled: bool
    devices: dict[str, int] = Field(default_factory=dict)
    """MIG device profile -> count; zero counts are dropped."""


class MigPartedConfig(_Strict):
    """A whole mig-parted file: ``version: v1`` and its named configs."""

    version: Literal["v1"]
    mig_configs: dict[str, tuple[MigConfigEntry, ...]] = Field(alias="mig-configs")

    @model_validator(mode="after")
    def _non_empty(self) -> MigPartedConfig:
        if not self.mig_configs:
            raise ValueError("at least one entry in 'mig-configs' is required")
        for name, entries in self.mig_configs.items():
            if not entries:
                raise ValueError(f"at least one entry in {name!r} is required")
        return self

    def names(self) -> tuple[str, ...]:
        return tuple(self.mig_configs)

    def targets(self, name: str, gpus: Sequence[tuple[int, str]]) -> dict[int, GpuTarget]:
        """Per-GPU targets of config ``name`` for ``(index, pci_device_id)`` GPUs.

        GPUs no entry selects are absent (left as they are). A GPU selected by
        two entries, or an index the node does not have, is a config error.
        """
        if name not in self.mig_configs:
            raise MigConfigError(f"no MIG config named {name!r}; known: "
                                 f"{', '.join(sorted(self.mig_configs))}")
        indices = {i for i, _ in gpus}
        result: dict[int, GpuTarget] = {}
        chosen_by: dict[int, int] = {}
        for number, entry in enumerate(self.mig_configs[name], start=1):
            if entry.devices != "all":
                missing = sorted(set(entry.devices) - indices)
                if missing:
                    raise MigConfigError(f"config {name!r} entry {number}: no GPU with index "
                                         f"{missing[0]} on this node ({len(gpus)} GPUs)")
            for index, pci in gpus:
                if not entry.selects(index, pci):
                    continue
                if index in chosen_by:
                    raise MigConfigError(f"config {name!r}: GPU {index} is selected by entries "
                                         f"{chosen_by[index]} and {number}")
                chosen_by[index] = number
                devices = {k: v for k, v in (entry.mig_devices or {}).items() if v > 0}
                result[index] = GpuTarget(mig_enabled=entry.mig_enabled, devices=devices)
        return result


def parse_mig_parted_config(text: str, source: str = "<config>") -> MigPartedConfig:
    """Decode a mig-parted YAML (or JSON) document strictly; errors name ``source``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MigConfigError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise MigConfigError(f"{source}: expected a mapping with 'version' and 'mig-configs'")
    if "version" not in raw:
        raise MigConfigError(f"{source}: unable to parse with missing 'version' field")
    if raw["version"] != "v1":
        raise MigConfigError(f"{source}: unknown version: {raw['version']}")
    try:
        return MigPartedConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MigConfigError(f"{source}: {where}: {first['msg']}") from err


@cache
def default_mig_configs() -> MigPartedConfig:
    """The named configs every node knows (``catalog/default-mig-configs.yaml``)."""
    text = resources.files("gpumodel").joinpath("catalog/default-mig-configs.yaml").read_text()
    return parse_mig_parted_config(text, "default-mig-configs.yaml")
