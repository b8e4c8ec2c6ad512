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
forbidden when it is not, counts are integers (not ``true``, not ``"7"``), a
key given twice is an error, and every error names the file, the line and the
key. Profile names are only checked for form (``1g.24gb+gfx`` parses): whether
a profile exists on a given GPU is checked when a config is applied to that
GPU, so one file serves every GPU NVIDIA makes and a config for another GPU
fails only itself, on the node that lacks the profile. This module parses text
(or bytes); reading files is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from gpumodel.errors import MigConfigError, ProfileParseError
from gpumodel.mig import MigProfile
from gpumodel.yamllines import LinedYaml, load_lined


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MigConfigEntry(_Strict):
    """One entry of a named config: which GPUs, MIG on or off, which devices."""

    device_filter: tuple[str, ...] | None = Field(default=None, alias="device-filter")
    devices: Literal["all"] | tuple[StrictInt, ...]
    mig_enabled: StrictBool = Field(alias="mig-enabled")
    mig_devices: dict[str, StrictInt] | None = Field(default=None, alias="mig-devices")

    @field_validator("device_filter", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("devices")
    @classmethod
    def _indices(cls, value: Literal["all"] | tuple[int, ...]
                 ) -> Literal["all"] | tuple[int, ...]:
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


def parse_mig_parted_config(text: str | bytes, source: str = "<config>") -> MigPartedConfig:
    """Decode a mig-parted YAML (or JSON) document strictly; errors name ``source`` and line."""
    doc = load_lined(text, source)
    raw = doc.data
    if not isinstance(raw, dict):
        raise MigConfigError(f"{source}: line 1: expected a mapping with 'version' and "
                             "'mig-configs'")
    if "version" not in raw:
        raise MigConfigError(f"{source}: line 1: unable to parse with missing 'version' field")
    if raw["version"] != "v1":
        raise MigConfigError(f"{source}: line {doc.line(('version',))}: version: "
                             f"unknown version: {raw['version']}")
    try:
        return MigPartedConfig.model_validate(raw)
    except ValidationError as err:
        raise MigConfigError(_describe(err, doc, source)) from err


def _describe(err: ValidationError, doc: LinedYaml, source: str) -> str:
    """The first error as ``file: line N: key.path: message``, with YAML's spelling of keys."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    path = _yaml_path(loc)
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
    key = key.replace(".[", "[")
    message = first["msg"]
    if first["type"] in ("int_type", "int_parsing") and path and path[-2:-1] == ("mig-devices",):
        message = f"count must be an integer, not {first['input']!r}"
    return f"{source}: line {doc.line(path)}: {key or '(top)'}: {message}"


def _yaml_path(loc: tuple[object, ...]) -> tuple[str | int, ...]:
    """pydantic's error location in the document's own keys (drops union branch tags)."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and not part.startswith(
                ("literal[", "tuple[", "function-", "[key]"))):
            path.append(part)
    return tuple(path)


@cache
def default_mig_configs() -> MigPartedConfig:
    """The named configs every node knows (``catalog/default-mig-configs.yaml``)."""
    text = resources.files("gpumodel").joinpath("catalog/default-mig-configs.yaml").read_text()
    return parse_mig_parted_config(text, "default-mig-configs.yaml")
