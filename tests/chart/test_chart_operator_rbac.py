"""``dgxsim operator`` under the chart's operator ServiceAccount and nothing more.

The chart's RBAC objects and ConfigMap are created on the real API server, a
token is issued for the operator's ServiceAccount (TokenRequest, as the pod
would get one), and the operator runs with a kubeconfig that signs in with it
and with the environment the chart's Deployment sets. It must start (kopf's
startup activity succeeds), answer a DGXJob with a status, and never be
refused by the API server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_helpers import (
    JSON,
    RBAC_AND_CONFIG,
    apply_in_namespace,
    as_json_stream,
    container,
    find,
    render,
    service_account_kubeconfig,
)
from kube import Cluster, stop_process

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "oprbac"
NAMESPACE = "dgxsim-oprbac"
ACCOUNT = f"{RELEASE}-dgxsim-operator"
STARTED = "Activity 'startup' succeeded"
DENIED_TO = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
"""RBAC denials name the user: 'pods is forbidden: User "system:serviceaccount:..." cannot
create resource ...'. Other 403s (an Event for an object in a namespace another test is
deleting) say nothing about the chart's rules."""
TIMEOUT_S = 90.0


@pytest.fixture
def chart_objects(control_plane: Cluster) -> Iterator[list[JSON]]:
    docs = render(release=RELEASE, namespace=NAMESPACE)
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    control_plane.kubectl("apply", "--server-side", "-f", "-", stdin=as_json_stream(crds))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/dgxjobs.dgxsim.io")
    objects = [d for d in docs if d["kind"] in RBAC_AND_CONFIG]
    apply_in_namespace(control_plane, NAMESPACE, objects)
    try:
        yield docs
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                              stdin=as_json_stream(objects), check=False)
        for job in control_plane.kubectl_json("get", "dgxjobs", "-n", NAMESPACE)["items"]:
            control_plane.kubectl("patch", "dgxjob", "-n", NAMESPACE, job["metadata"]["name"],
                                  "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                                  check=False)
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found",
                              "--wait=true", "--timeout=120s", check=False)


def chart_env(docs: list[JSON]) -> dict[str, str]:
    op = container(find(docs, "Deployment"))
    env = {e["name"]: e["value"] for e in op["env"] if "value" in e}
    env["DGXSIM_OPERATOR_METRICS__HOST"] = "127.0.0.1"  # the test binds to loopback only
    env["POD_NAMESPACE"] = NAMESPACE
    return env


def dgxjob(name: str) -> str:
    return json.dumps({
        "apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"workload": "resnet50-train", "replicas": 1, "gpusPerReplica": 1}})


def test_operator_runs_under_the_chart_rbac(control_plane: Cluster, chart_objects: list[JSON],
                                            tmp_path: Path) -> None:
    import os

    kubeconfig = service_account_kubeconfig(control_plane, ACCOUNT, NAMESPACE,
                                            tmp_path / "operator.kubeconfig")
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dgxsim", "operator", "--kubeconfig", str(kubeconfig),
             "--namespace", NAMESPACE, "--metrics-port", "0"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **chart_env(chart_objects)})
    try:
        wait_in_log(proc, log, STARTED)
        control_plane.kubectl("apply", "-f", "-", stdin=dgxjob("rbac-probe"))
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            refused(log)
            job = control_plane.kubectl_json("get", "dgxjob", "-n", NAMESPACE, "rbac-probe")
            if (job.get("status") or {}).get("phase"):
                break
            assert time.monotonic() < deadline, f"DGXJob got no status:\n{tail(log)}"
            time.sleep(0.5)
        refused(log)
    finally:
        # Remove the job and its pods while the operator still runs (it may hold a
        # finalizer), so nothing of this test is left for later tests to see as demand.
        control_plane.kubectl("delete", "dgxjobs,pods", "--all", "-n", NAMESPACE,
                              "--wait=true", "--timeout=60s", check=False)
        stop_process(proc)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def refused(log: Path) -> None:
    text = log.read_text(errors="replace")
    hits = [line for line in text.splitlines() if DENIED_TO in line and "cannot" in line]
    assert not hits, "the API server refused the operator:\n" + "\n".join(hits[:5])


def wait_in_log(proc: subprocess.Popen[bytes], log: Path, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while text not in log.read_text(errors="replace"):
        refused(log)
        assert proc.poll() is None, f"operator exited:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {text!r}:\n{tail(log)}"
        time.sleep(0.2)
