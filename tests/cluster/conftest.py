"""Fixtures shared by the cluster tests: a namespace of the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kube import Cluster, unique_name, wait_for


@pytest.fixture
def namespace(control_plane: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, ready for pods (its default service
    account exists); deleted afterwards without waiting."""
    name = unique_name("t", request)
    control_plane.kubectl("create", "namespace", name)
    wait_for("default service account", lambda: control_plane.kubectl(
        "get", "serviceaccount", "default", "-n", name, check=False).returncode == 0)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")
