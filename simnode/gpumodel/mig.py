"""The MIG vocabulary: profile strings as values, and the per-GPU profile tables.

A profile string is how every layer names a MIG device: ``3g.20gb`` (a GPU
instance of 3 compute slices and 20 GB), ``1c.3g.20gb`` (a 1-slice compute
instance inside it), ``1g.5gb+me`` (with media extensions), and on newer GPUs
``1g.24gb+gfx``, ``1g.24gb+me.all`` or ``1g.24gb-me`` (without them).
:class:`MigProfile` parses such a string as mig-parted does (``pkg/types``):
any well-formed attribute is accepted, because a config file names profiles of
every GPU NVIDIA makes and only the GPU it is applied to decides which exist.
It prints the string back unchanged, so configs, resource names
(``nvidia.com/mig-3g.20gb``) and ``nvidia-smi`` output never drift apart.

The facts behind each GPU-instance profile (NVML profile ID, memory, SMs,
engines, allowed start slices, maximum per GPU) are data in
``catalog/mig-profiles.yaml``, one table per profile family, read on first use.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpumodel.errors import ProfileParseError, UnknownProfileError
from gpumodel.gpus import device
from gpumodel.vocabulary import mig_resource

Family = Literal["40gb", "80gb"]
_FIELD = re.compile(r"^(\d+)(c|g|gb)$")
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MigProfile(_Frozen):
    """A MIG device profile: ``[Cc.]Gg.Mgb[+attr,...|-attr,...]``; ``str()`` gives it back."""

    compute_slices: int = Field(ge=1)
    gpu_slices: int = Field(ge=1)
    memory_gb: int = Field(ge=1)
    attributes: tuple[str, ...] = ()
    negative_attributes: tuple[str, ...] = ()
    """Attributes the profile leaves out (``1g.24gb-me``); never with ``attributes``."""

    @model_validator(mode="after")
    def _consistent(self) -> MigProfile:
        if self.compute_slices > self.gpu_slices:
            raise ValueError(f"{self}: a compute instance cannot exceed its GPU instance")
        return self

    @classmethod
    def parse(cls, text: str) -> MigProfile:
        """Parse ``text``; :class:`ProfileParseError` says what is wrong with it."""
        if not text:
            raise ProfileParseError("empty MIG profile string")
        if text.strip() != text:
            raise ProfileParseError(f"{text!r}: leading or trailing spaces")
        if "+" in text and "-" in text:
            raise ProfileParseError(f"{text!r}: both '+' and '-' attributes")
        sign = "+" if "+" in text else "-"
        base, marked, attr_text = text.partition(sign)
        attributes = _parse_attributes(text, attr_text) if marked else ()
        compute, gpu, memory = _parse_fields(text, base.split("."))
        if compute > gpu:
            raise ProfileParseError(f"{text!r}: {compute}c is larger than {gpu}g")
        plus, minus = (attributes, ()) if sign == "+" else ((), attributes)
        return cls(compute_slices=compute, gpu_slices=gpu, memory_gb=memory,
                   attributes=plus, negative_attributes=minus)

    @property
    def is_gpu_instance(self) -> bool:
        """True when the compute instance spans the whole GPU instance (``3g.20gb``)."""
        return self.compute_slices == self.gpu_slices

    @property
    def gpu_instance(self) -> MigProfile:
        """The GPU-instance part: ``1c.3g.20gb+me`` -> ``3g.20gb+me``."""
        return self.model_copy(update={"compute_slices": self.gpu_slices})

    def __str__(self) -> str:
        suffix = "+" + ",".join(self.attributes) if self.attributes else ""
        if self.negative_attributes:
            suffix = "-" + ",".join(self.negative_attributes)
        body = f"{self.gpu_slices}g.{self.memory_gb}gb"
        if self.compute_slices != self.gpu_slices:
            body = f"{self.compute_slices}c.{body}"
        return body + suffix


def _parse_fields(text: str, parts: list[str]) -> tuple[int, int, int]:
    if len(parts) == 2:  # "3g.20gb": the compute instance spans the GPU instance
        gpu = _number(text, parts[0], "g")
        return gpu, gpu, _number(text, parts[1], "gb")
    if len(parts) == 3:
        return (_number(text, parts[0], "c"), _number(text, parts[1], "g"),
                _number(text, parts[2], "gb"))
    raise ProfileParseError(f"{text!r}: expected [Cc.]Gg.Mgb")


def _number(text: str, part: str, unit: str) -> int:
    match = _FIELD.match(part)
    if not match or match.group(2) != unit:
        raise ProfileParseError(f"{text!r}: {part!r} is not of the form N{unit}")
    if match.group(1).startswith("0"):
        raise ProfileParseError(f"{text!r}: {part!r} must be a positive number")
    return int(match.group(1))


def _parse_attributes(text: str, attr_text: str) -> tuple[str, ...]:
    """mig-parted's rule: letters and digits (dots inside), not starting with a digit."""
    attributes = tuple(attr_text.split(","))
    for attr in attributes:
        if not attr:
            raise ProfileParseError(f"{text!r}: empty attribute")
        if not _ATTRIBUTE.match(attr) or attr.endswith("."):
            raise ProfileParseError(f"{text!r}: malformed attribute {attr!r}")
    if len(set(attributes)) != len(attributes):
        raise ProfileParseError(f"{text!r}: repeated attribute")
    return attributes


class GpuInstanceProfile(_Frozen):
    """One GPU-instance profile of one GPU family, with NVIDIA's figures."""

    name: str
    profile_id: int = Field(ge=0)
    memory_mib: int = Field(gt=0)
    sms: int = Field(gt=0)
    compute_slices: int = Field(ge=1)
    memory_slices: int = Field(ge=1)
    copy_engines: int = Field(ge=0)
    decoders: int = Field(ge=0)
    encoders: int = Field(ge=0)
    jpeg_decoders: int = Field(ge=0)
    ofa: int = Field(ge=0)
    max_per_gpu: int = Field(ge=1)
    starts: tuple[int, ...]
    compute_instance_slices: tuple[int, ...]

    @model_validator(mode="after")
    def _consistent(self) -> GpuInstanceProfile:
        parsed = MigProfile.parse(self.name)
        if not parsed.is_gpu_instance or parsed.gpu_slices != self.compute_slices:
            raise ValueError(f"{self.name}: name and compute slices disagree")
        if self.compute_slices not in self.compute_instance_slices:
            raise ValueError(f"{self.name}: the full-size compute instance must be allowed")
        return self

    @property
    def profile(self) -> MigProfile:
        return MigProfile.parse(self.name)

    @property
    def resource_name(self) -> str:
        """The extended resource of NVIDIA's mixed strategy: ``nvidia.com/mig-3g.20gb``."""
        return mig_resource(self.name)

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


class ProfileTable(_Frozen):
    """The MIG profiles of one GPU kind and its slice geometry."""

    family: Family
    memory_slices: int = Field(ge=1)
    compute_slices: int = Field(ge=1)
    profiles: tuple[GpuInstanceProfile, ...]
    compute_instance_profile_ids: tuple[tuple[int, int], ...]
    """(compute slices, NVML compute-instance profile ID) pairs."""

    def get(self, name_or_id: str | int) -> GpuInstanceProfile:
        """A GPU-instance profile by name (``3g.20gb``, ``MIG 3g.20gb``) or NVML ID (``9``)."""
        key = name_or_id.removeprefix("MIG ") if isinstance(name_or_id, str) else name_or_id
        for spec in self.profiles:
            if key in (spec.name, spec.profile_id):
                return spec
        known = ", ".join(p.name for p in self.profiles)
        raise UnknownProfileError(f"no MIG profile {name_or_id!r} on {self.family} GPUs; "
                                  f"known: {known}")

    def get_by_id(self, profile_id: int) -> GpuInstanceProfile:
        return self.get(profile_id)

    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)

    def ci_profile_id(self, compute_slices: int) -> int:
        """NVML's compute-instance profile ID for a size (1c: 0, 2c: 1, 3c: 2, 4c: 3, 7c: 4)."""
        return dict(self.compute_instance_profile_ids)[compute_slices]

    def ci_slices_for_id(self, ci_profile_id: int) -> int:
        for slices, pid in self.compute_instance_profile_ids:
            if pid == ci_profile_id:
                return slices
        raise UnknownProfileError(f"no compute instance profile ID {ci_profile_id}")

    def base_profile_names(self) -> tuple[str, ...]:
        """Profiles without attributes and with distinct compute sizes (``1g.5gb`` ... ``7g``).

        For each compute size the profile with the fewest memory slices: on a 40GB
        A100 these are 1g.5gb, 2g.10gb, 3g.20gb, 4g.20gb and 7g.40gb.
        """
        best: dict[int, GpuInstanceProfile] = {}
        for spec in self.profiles:
            if spec.profile.attributes:
                continue
            held = best.get(spec.compute_slices)
            if held is None or spec.memory_slices < held.memory_slices:
                best[spec.compute_slices] = spec
        return tuple(best[c].name for c in sorted(best))


class _Catalog(_Frozen):
    version: Literal["v1"]
    compute_instance_profile_ids: dict[int, int]
    families: dict[Family, tuple[dict[str, object], ...]]


@cache
def _catalog() -> _Catalog:
    text = resources.files("gpumodel").joinpath("catalog/mig-profiles.yaml").read_text()
    return _Catalog.model_validate(yaml.safe_load(text))


@cache
def profile_table(device_name: str) -> ProfileTable:
    """The MIG profile table of a device kind from gpus.yaml (``a100-40gb``)."""
    spec = device(device_name)
    if spec.mig is None:
        raise UnknownProfileError(f"{device_name} does not support MIG")
    catalog = _catalog()
    rows = catalog.families[spec.mig.profile_family]
    return ProfileTable(
        family=spec.mig.profile_family, memory_slices=spec.mig.memory_slices,
        compute_slices=spec.mig.compute_slices,
        profiles=tuple(GpuInstanceProfile.model_validate(r) for r in rows),
        compute_instance_profile_ids=tuple(sorted(catalog.compute_instance_profile_ids.items())))
