"""Rendering and inspecting the dgxsim Helm chart with the Go-built helm.

helm runs with its config, cache and data folders in a temporary directory so
the tests read and write nothing of the user's helm setup.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from localkube.toolchain import bin_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "dgxsim"
JSON = dict[str, Any]
_HELM_HOME = Path(tempfile.mkdtemp(prefix="dgxsim-helm-home-"))


def helm_env() -> dict[str, str]:
    return {**os.environ,
            "HELM_CONFIG_HOME": str(_HELM_HOME / "config"),
            "HELM_CACHE_HOME": str(_HELM_HOME / "cache"),
            "HELM_DATA_HOME": str(_HELM_HOME / "data")}


def helm(*args: str, check: bool = True, timeout_s: float = 300.0
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(bin_dir() / "helm"), *args], capture_output=True, text=True,
                            env=helm_env(), timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def values_args(values: JSON | None) -> list[str]:
    """``--values FILE`` for a values dict (written to a temporary file)."""
    if not values:
        return []
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "w", suffix=".yaml", prefix="values-", delete=False)
    with handle:
        yaml.safe_dump(values, handle)
    return ["--values", handle.name]


def template(values: JSON | None = None, *extra: str, release: str = "dgxsim",
             namespace: str = "dgxsim-system", check: bool = True
             ) -> subprocess.CompletedProcess[str]:
    return helm("template", release, str(CHART), "--namespace", namespace, "--include-crds",
                *values_args(values), *extra, check=check)


def render(values: JSON | None = None, *extra: str, release: str = "dgxsim",
           namespace: str = "dgxsim-system") -> list[JSON]:
    """Every manifest the chart renders (CRDs and the helm test hook included)."""
    out = template(values, *extra, release=release, namespace=namespace).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: Iterable[JSON], kind: str, name: str | None = None) -> JSON:
    matches = [d for d in docs
               if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(docs: Iterable[JSON]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def pod_spec(workload: JSON) -> JSON:
    spec: JSON = workload["spec"]["template"]["spec"]
    return spec


def container(workload: JSON, name: str | None = None) -> JSON:
    containers: list[JSON] = pod_spec(workload)["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def as_json_stream(docs: Iterable[JSON]) -> str:
    """Manifests as one ``kind: List`` for ``kubectl apply -f -``."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)})


def rule_set(role: JSON) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or '') for every rule of a (Cluster)Role."""
    found: set[tuple[str, str, str, str]] = set()
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        found.add((group, resource, verb, name))
    return found


RBAC_AND_CONFIG = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                   "ConfigMap")
"""What a component needs of the chart to run under its own ServiceAccount."""


def apply_in_namespace(cluster: Any, namespace: str, objects: list[JSON]) -> None:
    """Create ``namespace`` and apply ``objects`` in it."""
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
    cluster.kubectl("apply", "-f", "-", stdin=as_json_stream(objects))


def service_account_kubeconfig(cluster: Any, account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig that signs in with a fresh token of ``namespace/account``, as a pod
    of that ServiceAccount would."""
    token = cluster.kubectl("create", "token", account, "-n", namespace,
                            "--duration=1h").stdout.strip()
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(json.dumps(config))
    return path
