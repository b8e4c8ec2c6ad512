"""``dgxsim show``: every node's GPUs and MIG slices, drawn in the terminal or as a PNG.

Reads the ``dgxsim.io/inventory`` annotation each node publishes (the same
document the operator plans from) and the pods bound to each node (kubelet-less,
a pod's ``dgxsim.io/devices`` names what it holds; under a real kubelet the
inventory names the owners), so it shows what the cluster shows: each
GPU as its 8 memory slices, each GPU instance over the slices it holds, with
the pod that holds it, ``free``, or ``UNHEALTHY``; a GPU outside MIG mode as
one bar. ``--png FILE`` draws the same picture with matplotlib.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, add_state_dir, pyplot, state_dir_of
from gpumodel.vocabulary import INVENTORY_ANNOTATION, MIG_CONFIG, MIG_CONFIG_STATE

if TYPE_CHECKING:
    from gpumodel.inventory import InventoryDevice, NodeInventory
    from kubewire import KubeClient

SLICES = 8
CELL = 14


@dataclass(frozen=True)
class Block:
    """One bar segment: slices ``[start, start + size)`` of a GPU."""

    start: int
    size: int
    label: str
    state: str  # free | held | unhealthy


def register(sub: Any) -> None:
    parser = sub.add_parser("show", help="draw every node's GPUs and MIG slices")
    add_state_dir(parser)
    parser.add_argument("--kubeconfig", type=Path, default=None, metavar="PATH",
                        help="cluster to read (default: the kubeconfig of the state dir)")
    parser.add_argument("--png", type=Path, default=None, metavar="FILE",
                        help="also write the picture as a PNG")
    parser.set_defaults(func=cmd_show)


def gpu_blocks(inventory: NodeInventory, index: int, held: Mapping[str, str] | None = None
               ) -> list[Block]:
    """The segments of one GPU, lowest slice first (free slices as their own blocks);
    ``held`` (device ID -> pod) defaults to the owners the inventory names."""
    from gpumodel.inventory import held_devices

    holder = held if held is not None else held_devices(inventory, ())
    devices = [d for d in inventory.devices if d.gpu_index == index]
    whole = next((d for d in devices if d.kind == "gpu"), None)
    migs = [d for d in devices if d.kind == "mig" and d.mig is not None]
    if not migs and whole is not None and whole.usable:
        owner = holder.get(whole.id, "")
        state = "unhealthy" if whole.health != "Healthy" else "held" if owner else "free"
        return [Block(0, SLICES, owner or ("whole GPU free" if state != "unhealthy"
                                           else "UNHEALTHY"), state)]
    blocks: list[Block] = []
    used: set[int] = set()
    by_gi: dict[int, list[InventoryDevice]] = {}
    for d in migs:
        assert d.mig is not None
        by_gi.setdefault(d.mig.gi_id, []).append(d)
    for cis in by_gi.values():
        place = cis[0].mig
        assert place is not None
        held_by = [holder[c.id] for c in cis if c.id in holder]
        unhealthy = any(c.health != "Healthy" for c in cis)
        state = "unhealthy" if unhealthy else "held" if held_by else "free"
        name = str(cis[0].profile) if len(cis) == 1 else f"{len(cis)} CIs"
        label = (f"{name} {held_by[0]}" if held_by
                 else f"{name} {'UNHEALTHY' if unhealthy else 'free'}")
        blocks.append(Block(place.memory_start, place.memory_slices, label, state))
        used.update(range(place.memory_start, place.memory_start + place.memory_slices))
    blocks += [Block(s, 1, "", "empty") for s in range(SLICES) if s not in used]
    return sorted(blocks, key=lambda b: b.start)


def _cell(text: str, width: int) -> str:
    return text[:width].center(width)


def render_text(node: str, inventory: NodeInventory, labels: dict[str, str],
                held: Mapping[str, str] | None = None) -> str:
    config = labels.get(MIG_CONFIG)
    head = f"{node} ({inventory.kind})"
    if config:
        head += f"  mig.config={config} ({labels.get(MIG_CONFIG_STATE, '?')})"
    lines = [head]
    for gpu in inventory.gpus:
        mode = "MIG" if gpu.mig_mode == "Enabled" else "   "
        cells = "".join("[" + _cell(b.label if b.state != "empty" else ".",
                                    b.size * CELL - 2) + "]"
                        for b in gpu_blocks(inventory, gpu.index, held))
        lines.append(f"  GPU{gpu.index} {mode} {cells}")
    return "\n".join(lines)


def render_png(path: Path, nodes: list[tuple[str, NodeInventory]],
               held: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """The picture of ``nodes``; ``held``: node -> device ID -> pod (default: the owners
    each inventory names)."""
    plt = pyplot()

    colours = {"free": "#8fd18f", "held": "#6fa8dc", "unhealthy": "#e06666",
               "empty": "#eeeeee"}
    rows = sum(len(inv.gpus) + 1 for _, inv in nodes)
    fig, ax = plt.subplots(figsize=(12, max(2.0, rows * 0.35)))
    y = 0
    ticks, names = [], []
    for node, inv in nodes:
        ax.text(0, y - 0.1, node, fontsize=9, fontweight="bold", va="bottom")
        y += 1
        for gpu in inv.gpus:
            for b in gpu_blocks(inv, gpu.index, None if held is None else held.get(node)):
                ax.barh(y, b.size, left=b.start, color=colours[b.state], edgecolor="black",
                        height=0.8)
                if b.label:
                    ax.text(b.start + b.size / 2, y, b.label, ha="center", va="center",
                            fontsize=6)
            ticks.append(y)
            names.append(f"GPU{gpu.index}")
            y += 1
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlim(0, SLICES)
    ax.set_ylim(y, -1)
    ax.set_xlabel("memory slice")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


async def _list_nodes_and_pods(kube: KubeClient
                               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Nodes and the pods bound to a node (kubelet-less, the pods record which
    devices they hold; the inventory names no owners)."""
    return ((await kube.list_nodes()).items,
            (await kube.list_pods(field_selector="spec.nodeName!=")).items)


def cmd_show(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dgxsim.kubeapi import read_cluster
    from gpumodel.inventory import NodeInventory, held_devices

    kubeconfig = args.kubeconfig or state_dir_of(args) / "kubeconfig"
    if not Path(kubeconfig).is_file():
        raise CommandError(f"no kubeconfig at {kubeconfig} (start a cluster with dgxsim up "
                           "or pass --kubeconfig)")
    items, pods = read_cluster(Path(kubeconfig), _list_nodes_and_pods)
    by_node: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        by_node.setdefault(pod["spec"]["nodeName"], []).append(pod)
    shown: list[tuple[str, NodeInventory]] = []
    held: dict[str, dict[str, str]] = {}
    for node in sorted(items, key=lambda n: n["metadata"]["name"]):
        meta = node["metadata"]
        text = (meta.get("annotations") or {}).get(INVENTORY_ANNOTATION)
        if not text:
            continue
        try:
            inventory = NodeInventory.model_validate_json(text)
        except ValidationError:
            continue
        shown.append((meta["name"], inventory))
        held[meta["name"]] = held_devices(inventory, by_node.get(meta["name"], []))
        print(render_text(meta["name"], inventory, dict(meta.get("labels") or {}),
                          held[meta["name"]]))
    if not shown:
        print("no dgxsim nodes (no node carries the dgxsim.io/inventory annotation)")
    if args.png is not None:
        render_png(args.png, shown, held)
        print(f"wrote {args.png}")
    return 0
