"""etcd and the API server killed with SIGKILL under ``dgxsim up``: everything resumes.

A cluster of the test's own (``dgxsim up --nodes 1``: supervisor, node agent,
operator). The test kills etcd, then the API server, each by the pid the
cluster recorded. After each death the supervisor starts the component again
(a new pid, one more restart in ``dgxsim status``, health ok), and the watches
of the node agent and of the operator resume: a pod created afterwards runs to
completion on the agent's node, a DGXJob created afterwards is placed by the
operator and succeeds, and a MIG relabel of the node reaches ``success``.
``dgxsim status`` is healthy again only once the agent's watches are live.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kube import cli_cluster, cli_kubectl, dgxsim, kill_and_see_it_back, status_line, wait_for

from gpumodel.vocabulary import MIG_CONFIG, MIG_CONFIG_STATE

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
NODE = "dgx-0"


def get(state: Path, kind: str, name: str) -> dict:  # type: ignore[type-arg]
    try:
        return dict(cli_kubectl(state, "get", kind, name, "-o", "json"))
    except Exception:  # the API server may still be coming back
        return {}


def succeeded(state: Path, kind: str, name: str) -> bool:
    return get(state, kind, name).get("status", {}).get("phase") == "Succeeded"


def apply(state: Path, obj: dict) -> None:  # type: ignore[type-arg]
    wait_for(f"{obj['metadata']['name']} created", lambda: _apply(state, obj), timeout_s=60)


def _apply(state: Path, obj: dict) -> bool:  # type: ignore[type-arg]
    try:
        cli_kubectl(state, "apply", "-f", "-", stdin=json.dumps(obj))
    except Exception:
        return False
    return True


def pod(name: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"dgxsim.io/duration": "2s"}},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"dgxsim.io/node": "true"},
                     "containers": [{"name": "main", "image": "dgxsim/workload",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def job(name: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "dgxsim.io/v1", "kind": "DGXJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"workload": "gemm", "durationSeconds": 2}}


def relabel(state: Path, config: str) -> None:
    wait_for("relabelled", lambda: _label(state, config), timeout_s=60)
    wait_for(f"{config} reaches success", lambda: (labels := get(state, "node", NODE).get(
        "metadata", {}).get("labels", {})).get(MIG_CONFIG) == config
        and labels.get(MIG_CONFIG_STATE) == "success", timeout_s=120)


def _label(state: Path, config: str) -> bool:
    try:
        cli_kubectl(state, "label", "node", NODE, f"{MIG_CONFIG}={config}", "--overwrite")
    except Exception:
        return False
    return True


def everything_resumes(state: Path, after: str) -> None:
    """Work created after ``after``'s restart reaches its end: pods (agent), a DGXJob
    (operator), a MIG relabel there and back (agent's node watch)."""
    wait_for("status healthy: every component up, the agent's watches live", lambda: dgxsim(
        "status", "--state-dir", str(state)).returncode == 0, timeout_s=90)
    apply(state, pod(f"pod-after-{after}"))
    apply(state, job(f"job-after-{after}"))
    wait_for(f"the pod created after {after}'s restart succeeds",
             lambda: succeeded(state, "pod", f"pod-after-{after}"), timeout_s=120)
    wait_for(f"the DGXJob created after {after}'s restart succeeds",
             lambda: succeeded(state, "dgxjob", f"job-after-{after}"), timeout_s=120)
    relabel(state, "all-1g.5gb")
    relabel(state, "all-disabled")


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver"])
def test_etcd_and_the_api_server_come_back_and_every_watch_resumes(
        tmp_path: Path, component: str) -> None:
    with cli_cluster(tmp_path / "cluster", "--nodes", "1") as state:
        everything_resumes(state, "start")
        record = kill_and_see_it_back(state, component)
        assert record["restarts"] == 1
        everything_resumes(state, component)
        assert "restarts 1, health ok" in status_line(state, component)
