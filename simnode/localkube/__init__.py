"""A local Kubernetes control plane and the pinned binaries it runs.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local
processes on 127.0.0.1 with generated certificates (``localkube.cluster``), and
the toolchain that builds or fetches their binaries (``localkube.toolchain``).
It works from an installed wheel as from a checkout, and imports nothing of the
rest of the project, so the tests, the benchmarks and the CLI share one.

The names below load on first use: ``python -m localkube.toolchain`` must run
with nothing but the standard library installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localkube.cluster import AlreadyRunningError, ControlPlane, ControlPlaneState
    from localkube.errors import ControlPlaneError

__all__ = ["AlreadyRunningError", "ControlPlane", "ControlPlaneError", "ControlPlaneState"]


def __getattr__(name: str) -> Any:
    if name == "ControlPlaneError":
        from localkube.errors import ControlPlaneError

        return ControlPlaneError
    if name in ("AlreadyRunningError", "ControlPlane", "ControlPlaneState"):
        from localkube import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'localkube' has no attribute {name!r}")
