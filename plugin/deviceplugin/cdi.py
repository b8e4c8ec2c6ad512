"""The node's CDI specification: what makes the device names Allocate returns resolvable.

A kubelet with a CDI-aware runtime (containerd 2, CRI-O) hands the runtime the
``cdi_devices`` of an Allocate answer (``nvidia.com/gpu=GPU-<uuid>``), and the
runtime refuses to create the container unless a CDI specification in its CDI
directory (``/etc/cdi``, ``/var/run/cdi``) defines every one of them. NVIDIA's
container toolkit writes that file on a real node; here the node writes it, from
its inventory, and rewrites it (atomically) whenever the MIG layout changes.

The names follow the toolkit's (``nvidia-ctk cdi generate``) two naming
strategies at once: by UUID (``GPU-...``, ``MIG-...``, what the device plugin
returns) and by index (``0``..``7`` for GPUs, ``<gpu>:<mig>`` for MIG devices,
numbered on their GPU in ``nvidia-smi -L`` order), plus ``all``. A simulated
device has no device node: each device's edits only name it in the
environment, and the spec's common edits carry what every container of the
node needs (the node's endpoint socket and state, mounted read-only for
``nvidia-smi``), exactly what Allocate would otherwise add.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deviceplugin.servicer import AllocateContext
from gpumodel.inventory import InventoryDevice, NodeInventory
from gpumodel.vocabulary import GPU_RESOURCE
from localkube.files import atomic_write_text

CDI_VERSION = "0.6.0"
KIND = GPU_RESOURCE
"""The CDI kind, ``vendor/class``: the names Allocate returns are ``<kind>=<device>``."""
SPEC_FILE = "dgxsim-nvidia-gpu.json"
DEVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]*$")
"""The CDI specification's rule for device names."""
JSON = dict[str, Any]


def cdi_name(device_id: str) -> str:
    """The fully qualified CDI name of a device, as Allocate returns it."""
    return f"{KIND}={device_id}"


def _env_key(name: str) -> str:
    return "DGXSIM_CDI_DEVICE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _device(name: str, visible: str) -> JSON:
    return {"name": name, "containerEdits": {"env": [f"{_env_key(name)}={visible}"]}}


def _index_names(devices: Iterable[InventoryDevice]) -> dict[str, str]:
    """Device ID -> the toolkit's index name (``3``, ``3:0``)."""
    names: dict[str, str] = {}
    per_gpu: dict[int, int] = {}
    for dev in sorted(devices, key=lambda d: (d.gpu_index, d.kind != "gpu",
                                              d.mig.gi_id if d.mig else 0,
                                              d.mig.ci_id if d.mig else 0)):
        if dev.kind == "gpu":
            names[dev.id] = str(dev.gpu_index)
        else:
            n = per_gpu.get(dev.gpu_index, 0)
            names[dev.id] = f"{dev.gpu_index}:{n}"
            per_gpu[dev.gpu_index] = n + 1
    return names


def cdi_spec(inventory: NodeInventory, env: Mapping[str, str],
             mounts: Iterable[tuple[str, str, bool]]) -> JSON:
    """The specification for ``inventory``; ``env`` and ``mounts`` (host, container,
    read-only) go to every container that gets one of the node's devices."""
    devices: list[JSON] = []
    indexes = _index_names(inventory.devices)
    for dev in inventory.devices:
        devices.append(_device(dev.id, dev.id))
        devices.append(_device(indexes[dev.id], dev.id))
    whole = [d.id for d in inventory.devices if d.kind == "gpu"]
    devices.append(_device("all", ",".join(whole)))
    return {
        "cdiVersion": CDI_VERSION,
        "kind": KIND,
        "devices": devices,
        "containerEdits": {
            "env": [f"{k}={v}" for k, v in sorted(env.items())],
            "mounts": [{"hostPath": host, "containerPath": inside,
                        "options": ["rbind", "ro" if read_only else "rw"]}
                       for host, inside, read_only in mounts],
        },
    }


def spec_for(inventory: NodeInventory, context: AllocateContext) -> JSON:
    """The specification whose common edits are what Allocate gives every container."""
    env = {"DGXSIM_NODE": context.node, "DGXSIM_ENDPOINT": context.node_endpoint,
           **dict(context.extra_envs)}
    return cdi_spec(inventory, env, context.extra_mounts)


def spec_problems(spec: JSON) -> list[str]:
    """What a CDI-aware runtime would refuse in ``spec`` (empty when it is valid)."""
    problems = []
    if not re.fullmatch(r"[a-z0-9.-]+/[a-zA-Z0-9_.-]+", str(spec.get("kind", ""))):
        problems.append(f"kind {spec.get('kind')!r} is not vendor/class")
    names = [d.get("name", "") for d in spec.get("devices", [])]
    problems += [f"device name {n!r} is invalid" for n in names if not DEVICE_NAME.match(n)]
    problems += [f"device {n!r} is defined twice" for n in sorted(set(names))
                 if names.count(n) > 1]
    problems += [f"device {d.get('name')!r} has no edits" for d in spec.get("devices", [])
                 if not any((d.get("containerEdits") or {}).values())]
    return problems


def resolves(spec: JSON, qualified: str) -> bool:
    """True if ``kind=name`` names a device of ``spec``."""
    kind, _, name = qualified.partition("=")
    return kind == spec["kind"] and any(d["name"] == name for d in spec["devices"])


def spec_file(node: str) -> str:
    """The file of ``node``'s spec: one per node, so nodes that share a container runtime
    (real nodes on one machine) never replace each other's. Their UUID names never
    clash; the index names and ``all`` do, and a CDI registry drops names that two
    specs of one directory define, leaving the UUID names Allocate returns."""
    return f"dgxsim-nvidia-gpu-{node}.json"


def write_spec(directory: Path, spec: JSON, file_name: str = SPEC_FILE) -> Path:
    """Replace the node's spec in ``directory`` in one step (runtimes re-read it)."""
    problems = spec_problems(spec)
    if problems:
        raise ValueError(f"CDI spec refused: {'; '.join(problems)}")
    path = directory / file_name
    atomic_write_text(path, json.dumps(spec, indent=1) + "\n")
    return path
