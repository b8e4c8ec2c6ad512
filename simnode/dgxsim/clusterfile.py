"""What ``dgxsim up`` started, recorded in the state directory for later commands.

The node agent's settings (time scale, node count and kind, MIG strategy)
decide how other commands read the cluster: ``dgxsim jobs`` converts wall time
to simulated time with the time scale. They are written once, when ``up``
starts the cluster, in a small versioned file (``cluster.json``) that rejects
unknown keys, rather than recovered from another process's command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpumodel.vocabulary import MigStrategy
from localkube.files import atomic_write_text

CLUSTER_FILE = "cluster.json"


class ClusterFileError(ValueError):
    """``cluster.json`` exists but cannot be read as this version's settings."""


class ClusterSettings(BaseModel):
    """The settings ``dgxsim up`` gave the cluster's node agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["v1"] = "v1"
    nodes: int = Field(ge=0)
    """Simulated nodes the agent runs (0: a control plane alone)."""
    kind: str
    """The node kind (``dgx-a100-320gb``...)."""
    mig_strategy: MigStrategy
    mig_config: str | None = None
    """The ``nvidia.com/mig.config`` new nodes were labelled with, if any."""
    time_scale: float = Field(gt=0)
    """Simulated seconds per wall-clock second."""
    real_nodes: int = Field(default=0, ge=0)
    """Nodes under a real kubelet and containerd (``--real-nodes``)."""
    metrics: dict[str, str] = Field(default_factory=dict)
    """Prometheus endpoints by component (``node-agent``: the nodes' DCGM metrics)."""


def save_settings(state_dir: Path, settings: ClusterSettings) -> Path:
    """Write ``cluster.json`` (atomically: a reader sees the old file or the new one)."""
    path = state_dir / CLUSTER_FILE
    atomic_write_text(path, settings.model_dump_json(indent=2) + "\n")
    return path


def load_settings(state_dir: Path) -> ClusterSettings | None:
    """The recorded settings, or None when ``up`` recorded none here."""
    path = state_dir / CLUSTER_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return ClusterSettings.model_validate_json(text)
    except ValidationError as err:
        raise ClusterFileError(f"{path} is unreadable ({err.error_count()} errors: "
                               f"{err.errors()[0]['msg']}); run dgxsim up again") from err
