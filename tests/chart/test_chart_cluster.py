"""The chart against the real API server: server-side dry-run and the RBAC matrix.

Every manifest the chart renders, under several value sets, must pass the API
server's own validation and admission (``kubectl apply --dry-run=server``).
The chart's ServiceAccounts, Roles and bindings are then created for real and
``kubectl auth can-i --as=system:serviceaccount:...`` is asked, for each
ServiceAccount, every verb on every resource of a matrix that holds what the
components need and their neighbours: the answers must be exactly the
components' needs (tests/chart/component_needs.py), nothing more, nothing less.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from chart_helpers import JSON, as_json_stream, render
from component_needs import (
    NODE_CLUSTER,
    NODE_NAMESPACED,
    OPERATOR_CLUSTER,
    OPERATOR_NAMESPACED,
    TARGETS,
    VERBS,
    Target,
    allowed,
)
from kube import Cluster
from test_chart_render import VALUE_SETS

from localkube.toolchain import ensure_tools

pytestmark = pytest.mark.cluster

RBAC_RELEASE = "rbac"
RBAC_NAMESPACE = "dgxsim-rbac"
OTHER_NAMESPACE = "default"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
SELF_REVIEWS = ("selfsubjectaccessreviews.authorization.k8s.io",
                "selfsubjectrulesreviews.authorization.k8s.io",
                "selfsubjectreviews.authentication.k8s.io")


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> None:
    ensure_tools(("helm",))


def ensure_namespace(cluster: Cluster, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


# ------------------------------------------------------- server-side dry-run


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_passes_server_side_dry_run(control_plane: Cluster, name: str) -> None:
    namespace = f"dgxsim-dry-{name}"
    ensure_namespace(control_plane, namespace)
    docs = render(VALUE_SETS[name], namespace=namespace, release=f"dry-{name}")
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-",
                                   stdin=as_json_stream(docs), check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(docs), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout


def test_server_side_dry_run_can_fail(control_plane: Cluster) -> None:
    docs = render(namespace="default")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "missing"
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-",
                                   stdin=as_json_stream([ds]), check=False)
    assert result.returncode != 0
    assert "missing" in result.stderr


# ------------------------------------------------------------- RBAC matrix


@pytest.fixture(scope="module")
def rbac_objects(control_plane: Cluster) -> Iterator[list[JSON]]:
    """The chart's RBAC objects, created on the API server; deleted afterwards.

    The CRD is installed too (and left, as helm leaves it), so that kubectl can
    resolve ``dgxjobs.dgxsim.io`` when it asks about it.
    """
    ensure_namespace(control_plane, RBAC_NAMESPACE)
    rendered = render(release=RBAC_RELEASE, namespace=RBAC_NAMESPACE)
    crds = [d for d in rendered if d["kind"] == "CustomResourceDefinition"]
    control_plane.kubectl("apply", "--server-side", "-f", "-", stdin=as_json_stream(crds))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/dgxjobs.dgxsim.io")
    docs = [d for d in rendered if d["kind"] in RBAC_KINDS]
    control_plane.kubectl("apply", "-f", "-", stdin=as_json_stream(docs))
    try:
        yield docs
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                              stdin=as_json_stream(docs), check=False)


def can_i(cluster: Cluster, account: str, verb: str, target: Target, namespace: str | None
          ) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    sub = ["--subresource", target.subresource] if target.subresource else []
    result = cluster.kubectl(
        "auth", "can-i", verb, target.kubectl_resource, *sub, *where,
        f"--as=system:serviceaccount:{RBAC_NAMESPACE}:{account}", check=False)
    answer = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), f"can-i said {result.stdout!r} {result.stderr!r}"
    assert (answer == "yes") == (result.returncode == 0)
    return answer == "yes"


def matrix(cluster: Cluster, account: str) -> dict[tuple[str, str, str], bool]:
    """(verb, resource, where) -> the API server's answer, for the whole matrix."""
    cells = []
    for target in TARGETS:
        places = [RBAC_NAMESPACE, OTHER_NAMESPACE] if target.namespaced else [None]
        for namespace in places:
            for verb in VERBS:
                cells.append((verb, target, namespace))
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda c: can_i(cluster, account, *c), cells))
    return {(verb, f"{t.kubectl_resource}{'/' + t.subresource if t.subresource else ''}",
             ns or "cluster"): a for (verb, t, ns), a in zip(cells, answers, strict=True)}


def expected(cluster_rules: set[tuple[str, str, str, str]],
             namespaced_rules: set[tuple[str, str, str, str]]
             ) -> dict[tuple[str, str, str], bool]:
    table = {}
    for target in TARGETS:
        places = [RBAC_NAMESPACE, OTHER_NAMESPACE] if target.namespaced else [None]
        for namespace in places:
            for verb in VERBS:
                key = (verb, f"{target.kubectl_resource}"
                             f"{'/' + target.subresource if target.subresource else ''}",
                       namespace or "cluster")
                table[key] = allowed(cluster_rules, namespaced_rules, target, verb,
                                     namespace == RBAC_NAMESPACE)
    return table


def differences(got: dict[tuple[str, str, str], bool], want: dict[tuple[str, str, str], bool]
                ) -> list[str]:
    return [f"{'can' if got[k] else 'cannot'} {k[0]} {k[1]} in {k[2]}"
            for k in sorted(want) if got[k] != want[k]]


@pytest.mark.parametrize(("account", "cluster_rules", "namespaced_rules"), [
    ("rbac-dgxsim-node", NODE_CLUSTER, NODE_NAMESPACED),
    ("rbac-dgxsim-operator", OPERATOR_CLUSTER, OPERATOR_NAMESPACED),
], ids=["node", "operator"])
def test_each_service_account_can_do_exactly_what_its_component_needs(
        control_plane: Cluster, rbac_objects: list[JSON], account: str,
        cluster_rules: set[tuple[str, str, str, str]],
        namespaced_rules: set[tuple[str, str, str, str]]) -> None:
    got = matrix(control_plane, account)
    want = expected(cluster_rules, namespaced_rules)
    assert not differences(got, want), "\n".join(differences(got, want))
    granted = sum(want.values())
    assert granted >= 10 and granted < len(want) / 4, (granted, len(want))


def test_needs_are_granted_in_every_namespace_where_they_must_be(
        control_plane: Cluster, rbac_objects: list[JSON]) -> None:
    """Spot checks that read as the contract does."""
    node, op = "rbac-dgxsim-node", "rbac-dgxsim-operator"
    pods, nodes = Target("", "pods"), Target("", "nodes", namespaced=False)
    mig = Target("", "configmaps", name="dgxsim-mig-configs")
    assert can_i(control_plane, node, "patch", nodes, None)
    assert can_i(control_plane, node, "watch", pods, "team-a")
    assert can_i(control_plane, node, "get", mig, RBAC_NAMESPACE)
    assert not can_i(control_plane, node, "get", mig, "team-a")
    assert not can_i(control_plane, node, "patch", Target("", "pods", "status"), "team-a")
    assert can_i(control_plane, op, "create", Target("", "pods", "binding"), "team-a")
    assert can_i(control_plane, op, "patch", Target("dgxsim.io", "dgxjobs", "status"), "team-a")
    assert not can_i(control_plane, op, "create", Target("", "configmaps"), "team-a")
    assert not can_i(control_plane, op, "list", Target("", "secrets"), RBAC_NAMESPACE)


@pytest.mark.parametrize("account", ["rbac-dgxsim-node", "rbac-dgxsim-operator"])
def test_nothing_outside_the_matrix_is_granted(
        control_plane: Cluster, rbac_objects: list[JSON], account: str) -> None:
    """``can-i --list``: every resource a ServiceAccount may touch is one of the matrix."""
    in_matrix = {(f"{t.resource}.{t.group}" if t.group else t.resource)
                 + (f"/{t.subresource}" if t.subresource else "") for t in TARGETS}
    for namespace in (RBAC_NAMESPACE, OTHER_NAMESPACE):
        out = control_plane.kubectl(
            "auth", "can-i", "--list", "-n", namespace,
            f"--as=system:serviceaccount:{RBAC_NAMESPACE}:{account}").stdout
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        resources = {row[0] for row in rows if not row[0].startswith("[")}
        outside = resources - in_matrix - set(SELF_REVIEWS)
        assert not outside, f"{account} may reach {sorted(outside)} in {namespace}:\n{out}"
        assert "*" not in resources and "*.*" not in resources, out
