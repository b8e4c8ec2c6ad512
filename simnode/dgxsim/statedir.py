"""Where a state directory keeps each simulated node's state.

Two layouts share the name "state dir": ``dgxsim node init`` keeps one node's
state in ``S/node.json``; ``dgxsim up --nodes N`` (the node agent) keeps node
``NAME``'s in ``S/nodes/NAME/node.json``, beside the control plane's files. The
agent writes the second layout and the host-side commands (``nvidia-smi``,
``fault``) read both, so the layout is written down once, here.
"""

from __future__ import annotations

from pathlib import Path

from dgxnode.store import STATE_FILE

NODES_DIR = "nodes"
"""The folder of a cluster state dir that holds one folder per node."""


def node_dir(state_dir: Path, name: str) -> Path:
    """The folder of node ``name`` in a cluster state dir (its store's ``state_dir``)."""
    return Path(state_dir) / NODES_DIR / name


def cluster_nodes(state_dir: Path) -> list[str]:
    """The names of the nodes whose state a cluster state dir holds, sorted."""
    root = Path(state_dir) / NODES_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file())


def has_single_node(state_dir: Path) -> bool:
    """True for a single-node state dir (``dgxsim node init``): ``S/node.json``."""
    return (Path(state_dir) / STATE_FILE).is_file()
