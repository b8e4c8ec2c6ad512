"""``dgxsim show``: the drawing of GPUs and MIG slices from a node's inventory."""

from __future__ import annotations

from pathlib import Path

from dgxnode.node import SimNode
from dgxsim.commands.show import Block, gpu_blocks, render_png, render_text


def balanced_node() -> SimNode:
    node = SimNode.create("dgx-show")
    node.apply("all-balanced")
    return node


def test_a_gpu_instance_spans_its_memory_slices_and_names_its_pod() -> None:
    node = balanced_node()
    held = next(d for d in node.inventory().devices
                if d.kind == "mig" and d.profile == "3g.20gb" and d.gpu_index == 0)
    node.allocate(held.id, "team/infer-0/main")
    blocks = gpu_blocks(node.inventory(), 0)
    assert sum(b.size for b in blocks) == 8
    assert held.mig is not None
    assert Block(held.mig.memory_start, 4, "3g.20gb team/infer-0", "held") in blocks
    assert [b.state for b in gpu_blocks(node.inventory(), 1)].count("held") == 0


def test_text_and_png(tmp_path: Path) -> None:
    node = balanced_node()
    text = render_text("dgx-show", node.inventory(), {
        "nvidia.com/mig.config": "all-balanced", "nvidia.com/mig.config.state": "success"})
    lines = text.splitlines()
    assert lines[0] == "dgx-show (dgx-a100-320gb)  mig.config=all-balanced (success)"
    assert len(lines) == 9 and all("MIG" in line for line in lines[1:])
    assert "2g.10gb free" in lines[1] and "1g.5gb free" in lines[1]
    whole = render_text("dgx-plain", SimNode.create("dgx-plain").inventory(), {})
    assert "whole GPU free" in whole.splitlines()[1]
    out = tmp_path / "nodes.png"
    render_png(out, [("dgx-show", node.inventory())])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
