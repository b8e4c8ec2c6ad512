"""What each dgxsim component may do on the API server, written down once.

The render tests compare the chart's Roles with these tables; the cluster tests
ask the real API server (``kubectl auth can-i``) whether each ServiceAccount
can do exactly this and nothing else of a wider matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

MIG_CONFIGS = "dgxsim-mig-configs"

# (apiGroup, resource, verb, resourceName) on every namespace / cluster-scoped objects
NODE_CLUSTER = {
    *{("", "nodes", v, "") for v in ("get", "list", "watch", "patch")},
    ("", "nodes/status", "patch", ""),
    *{("", "pods", v, "") for v in ("get", "list", "watch")},
    *{("", "events", v, "") for v in ("create", "patch")},
}
# ... and in the release namespace only
NODE_NAMESPACED = {("", "configmaps", v, MIG_CONFIGS) for v in ("get", "list", "watch")}

OPERATOR_CLUSTER = {
    *{("dgxsim.io", "dgxjobs", v, "") for v in ("get", "list", "watch", "patch")},
    *{("dgxsim.io", "dgxjobs/status", v, "") for v in ("get", "patch")},
    *{("", "pods", v, "") for v in ("create", "get", "list", "watch", "delete")},
    ("", "pods/binding", "create", ""),
    *{("", "nodes", v, "") for v in ("get", "list", "watch", "patch")},
    *{("", "events", v, "") for v in ("create", "patch")},
    *{("apiextensions.k8s.io", "customresourcedefinitions", v, "")
      for v in ("get", "list", "watch")},
    *{("", "namespaces", v, "") for v in ("list", "watch")},
    ("resource.k8s.io", "resourceslices", "list", ""),
    ("resource.k8s.io", "resourceclaims", "list", ""),
    *{("resource.k8s.io", "resourceclaimtemplates", v, "") for v in ("create", "get")},
}
OPERATOR_NAMESPACED = {("", "configmaps", v, "")
                       for v in ("get", "list", "watch", "create", "update", "patch")}

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Target:
    """One row of the can-i matrix: a resource (with subresource or name) and where."""

    group: str
    resource: str
    subresource: str = ""
    name: str = ""
    namespaced: bool = True

    @property
    def kubectl_resource(self) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{kind}/{self.name}" if self.name else kind

    @property
    def rule_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


# The matrix: everything the components need, plus neighbours they must not reach.
TARGETS = (
    Target("", "pods"), Target("", "pods", "status"), Target("", "pods", "binding"),
    Target("", "pods", "exec"), Target("", "pods", "log"), Target("", "pods", "eviction"),
    Target("", "nodes", namespaced=False), Target("", "nodes", "status", namespaced=False),
    Target("", "configmaps"), Target("", "configmaps", name=MIG_CONFIGS),
    Target("", "configmaps", name="kube-root-ca.crt"),
    Target("", "secrets"), Target("", "events"), Target("events.k8s.io", "events"),
    Target("", "services"), Target("", "serviceaccounts"),
    Target("", "serviceaccounts", "token"),
    Target("", "namespaces", namespaced=False),
    Target("dgxsim.io", "dgxjobs"), Target("dgxsim.io", "dgxjobs", "status"),
    Target("apiextensions.k8s.io", "customresourcedefinitions", namespaced=False),
    Target("apps", "daemonsets"), Target("apps", "deployments"), Target("batch", "jobs"),
    Target("coordination.k8s.io", "leases"), Target("kopf.dev", "kopfpeerings"),
    Target("kopf.dev", "clusterkopfpeerings", namespaced=False),
    Target("rbac.authorization.k8s.io", "roles"),
    Target("rbac.authorization.k8s.io", "clusterroles", namespaced=False),
    Target("rbac.authorization.k8s.io", "clusterrolebindings", namespaced=False),
    Target("resource.k8s.io", "resourceslices", namespaced=False),
    Target("resource.k8s.io", "resourceclaims"),
    Target("resource.k8s.io", "resourceclaimtemplates"),
)


def allowed(cluster_rules: set[tuple[str, str, str, str]],
            namespaced_rules: set[tuple[str, str, str, str]], target: Target, verb: str,
            in_release_namespace: bool) -> bool:
    """Whether the tables above grant ``verb`` on ``target``, as RBAC would decide it."""
    rules = set(cluster_rules)
    if in_release_namespace and target.namespaced:
        rules |= namespaced_rules
    for group, resource, rule_verb, name in rules:
        if (group, resource, rule_verb) != (target.group, target.rule_resource, verb):
            continue
        if not name or name == target.name:
            return True
    return False
