"""The operator's settings, grouped by concern, each field documented.

Why grouped pydantic models rather than loose globals: the CLI, environment
variables (``DGXSIM_OPERATOR_<GROUP>__<FIELD>``, for the chart) and tests all
build the same frozen object, and every value is validated once at startup
(a negative interval is an error there, not a busy loop later), as kopf's own
``OperatorSettings`` groups its knobs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.vocabulary import LEAF_SWITCH, SYSTEM_NAMESPACE

ENV_PREFIX = "DGXSIM_OPERATOR_"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class KubeSettings(_Group):
    kubeconfig: Path | None = None
    """Kubeconfig to use; None means the in-cluster service account."""
    namespace: str = SYSTEM_NAMESPACE
    """Namespace of the operator's own objects (the mig-parted ConfigMap)."""
    install_crd: bool = True
    """Create or update the DGXJob CRD at startup (the chart also ships it)."""


class MetricsSettings(_Group):
    port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Prometheus endpoint (``/metrics``); None serves none, 0 picks a free one."""
    host: str = "127.0.0.1"
    """Address the endpoints bind to (a pod sets ``0.0.0.0`` through the environment)."""
    liveness_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of kopf's liveness endpoint (``/healthz``); None serves none."""


class DynamicSettings(_Group):
    """Dynamic MIG partitioning of nodes labelled ``dgxsim.io/mig-policy=dynamic``."""

    interval_s: float = Field(default=2.0, gt=0)
    """How often the partitioner looks at pending demand even without news."""
    settle_s: float = Field(default=1.0, ge=0)
    """Demand is acted on once no new request arrived for this long (hysteresis)."""
    max_wait_s: float = Field(default=10.0, ge=0)
    """...or once the oldest request has waited this long, while requests keep arriving."""
    min_interval_s: float = Field(default=5.0, ge=0)
    """Least time between two reconfigurations of one node (rate limit)."""
    keep_s: float = Field(default=30.0, ge=0)
    """A GPU carved for demand is not rebuilt for other demand within this time."""
    failure_backoff_s: float = Field(default=30.0, ge=0)
    """After a failed reconfiguration the node is left alone this long."""


class PlacementSettings(_Group):
    """Gang placement of DGXJobs."""

    scheduler_name: str = "dgxsim-scheduler"
    """``schedulerName`` of the pods the operator creates (nothing else binds them)."""
    retry_delay_s: float = Field(default=3.0, gt=0)
    """How soon a job that did not fit is tried again."""
    leaf_label: str = LEAF_SWITCH
    """Node label naming the leaf switch of the node's compute fabric."""
    default_duration_s: float = Field(default=60.0, gt=0)
    """Run time of a job whose workload the performance model cannot predict."""
    max_requeues: int = Field(default=3, ge=0)
    """How often a job whose replica a node refused at admission is placed again
    before it fails (a kubelet refuses when its devices went in the meantime)."""


class OperatorSettings(_Group):
    kube: KubeSettings = KubeSettings()
    metrics: MetricsSettings = MetricsSettings()
    dynamic: DynamicSettings = DynamicSettings()
    placement: PlacementSettings = PlacementSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Mapping[str, Any]) -> OperatorSettings:
        """Defaults, then ``DGXSIM_OPERATOR_<GROUP>__<FIELD>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        groups: dict[str, dict[str, Any]] = {}
        for key, value in env.items():
            if not key.startswith(ENV_PREFIX) or "__" not in key:
                continue
            group, _, name = key.removeprefix(ENV_PREFIX).lower().partition("__")
            groups.setdefault(group, {})[name] = value
        for group, values in overrides.items():
            groups.setdefault(group, {}).update({k: v for k, v in values.items()
                                                 if v is not None})
        return cls.model_validate(groups)
