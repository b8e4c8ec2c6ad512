"""mig-parted's ``export`` and ``assert``: the current layout as a config, and a match test.

Scripts written for a real node read the node's MIG layout back with
``nvidia-mig-parted export`` and gate on ``nvidia-mig-parted assert``; dgxsim
answers both the same way. ``export`` builds one entry per GPU (its PCI device
ID as filter, its index, MIG mode and device counts), then merges them as
mig-parted does (``cmd/nvidia-mig-parted/export/config.go``): equal GPUs share
an entry, a filter that covers every GPU is dropped, and a device list that
covers every GPU the filter matches becomes ``all``. The YAML is printed in
the style of Go's ``gopkg.in/yaml.v2`` that mig-parted uses, so the text is
the same as on a real node and ``apply`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpumodel.migparted import MigPartedConfig

DEFAULT_LABEL = "current"


@dataclass(frozen=True)
class CurrentGpu:
    """One GPU as it is now: index, PCI device ID, MIG mode and MIG devices by profile."""

    index: int
    pci_device_id: str
    mig_enabled: bool
    devices: dict[str, int] = field(default_factory=dict)


@dataclass
class _Entry:
    filters: list[str]
    indices: list[int]
    mig_enabled: bool
    devices: dict[str, int]


def export_spec(gpus: Sequence[CurrentGpu], label: str = DEFAULT_LABEL) -> dict[str, object]:
    """The mig-parted spec (``version``, ``mig-configs``) describing ``gpus`` under ``label``."""
    merged: list[_Entry] = []
    for gpu in gpus:
        twin = next((m for m in merged if (m.mig_enabled, m.devices) == (
            gpu.mig_enabled, gpu.devices)), None)
        if twin is None:
            merged.append(_Entry([gpu.pci_device_id], [gpu.index], gpu.mig_enabled,
                                 dict(gpu.devices)))
        else:
            twin.filters = sorted({*twin.filters, gpu.pci_device_id})
            twin.indices = sorted({*twin.indices, gpu.index})
    per_filter: dict[str, set[int]] = {}
    for gpu in gpus:
        per_filter.setdefault(gpu.pci_device_id, set()).add(gpu.index)
    entries = [_entry(m, per_filter, single=len(merged) == 1) for m in merged]
    return {"version": "v1", "mig-configs": {label: entries}}


def _entry(m: _Entry, per_filter: dict[str, set[int]], single: bool) -> dict[str, object]:
    covered = set().union(*(per_filter[f] for f in m.filters))
    entry: dict[str, object] = {}
    if not single and len(per_filter) > 1:
        entry["device-filter"] = m.filters[0] if len(m.filters) == 1 else m.filters
    entry["devices"] = "all" if set(m.indices) == covered else m.indices
    entry["mig-enabled"] = m.mig_enabled
    entry["mig-devices"] = dict(sorted(m.devices.items()))
    return entry


def render_yaml(spec: dict[str, object]) -> str:
    """``spec`` as Go's yaml.v2 prints mig-parted's structs (flow lists, sorted maps)."""
    lines = [f"version: {spec['version']}", "mig-configs:"]
    configs = spec["mig-configs"]
    assert isinstance(configs, dict)
    for label in sorted(configs):
        lines.append(f"  {_scalar(label)}:")
        for entry in configs[label]:
            lines.extend(_entry_lines(entry))
    return "\n".join(lines) + "\n"


def _entry_lines(entry: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key in ("device-filter", "devices", "mig-enabled"):
        if key in entry:
            out.append(f"{'  - ' if not out else '    '}{key}: {_flow(entry[key])}")
    devices = entry["mig-devices"]
    assert isinstance(devices, dict)
    if not devices:
        out.append("    mig-devices: {}")
        return out
    out.append("    mig-devices:")
    out.extend(f"      {_scalar(name)}: {count}" for name, count in devices.items())
    return out


def _flow(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: object) -> str:
    """A plain scalar unless YAML 1.1 would read it as something else (hex IDs are quoted)."""
    text = str(value)
    if isinstance(value, int):
        return text
    if text.lower().startswith("0x") or text in ("", "true", "false", "null"):
        return json.dumps(text)
    return text


def render_json(spec: dict[str, object]) -> str:
    """``spec`` as mig-parted's ``-o json`` prints it (two-space indent, no final newline)."""
    return json.dumps(spec, indent=2)


def asserts(config: MigPartedConfig, name: str, gpus: Sequence[CurrentGpu]) -> bool:
    """True when every GPU config ``name`` selects is in the mode and layout it asks for.

    Raises :class:`~gpumodel.errors.MigConfigError` when ``name`` is not in ``config``.
    """
    targets = config.targets(name, [(g.index, g.pci_device_id) for g in gpus])
    for gpu in gpus:
        target = targets.get(gpu.index)
        if target is None:
            continue
        if target.mig_enabled != gpu.mig_enabled:
            return False
        if target.mig_enabled and target.devices != {k: v for k, v in gpu.devices.items() if v}:
            return False
    return True
