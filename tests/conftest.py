"""Shared fixtures: the real control plane for cluster tests, and its logs on failure.

The control plane is a session fixture: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from the pinned release,
started on free loopback ports in a temporary directory and stopped at the end
of the session even when tests fail. When a test that used it fails, the tail
of every component's log is attached to the failure report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube import Cluster

from localkube import ControlPlane
from localkube.processes import log_tail
from localkube.toolchain import ensure_tools

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_LINES_ON_FAILURE = 40


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ensure_tools(("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                  "kubectl"))
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    state = plane.up()
    try:
        yield Cluster(plane, state)
    finally:
        plane.down()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        cluster = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
        if isinstance(cluster, Cluster):
            for name, path in cluster.logs().items():
                report.sections.append(
                    (f"{name} log (last {LOG_LINES_ON_FAILURE} lines of {path})",
                     log_tail(path, LOG_LINES_ON_FAILURE)))
    return report
