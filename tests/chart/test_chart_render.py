"""The dgxsim chart as rendered by helm: lint, the objects, their fields, the schema.

No cluster: ``helm lint --strict`` and ``helm template`` with several value
sets, assertions on the rendered YAML, offline validation of every manifest
against the Kubernetes 1.36 OpenAPI schemas (kubernetes-validate), and the
values schema and validation template refusing bad values with a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from chart_helpers import (
    CHART,
    JSON,
    REPO_ROOT,
    container,
    find,
    helm,
    kinds,
    pod_spec,
    render,
    rule_set,
    template,
)
from component_needs import (
    NODE_CLUSTER,
    NODE_NAMESPACED,
    OPERATOR_CLUSTER,
    OPERATOR_NAMESPACED,
)

from dgxsim.realnodes import chart_values
from gpumodel.migparted import default_mig_configs, parse_mig_parted_config
from localkube.toolchain import ensure_tools

KUBERNETES_SCHEMA_VERSION = "1.36"
IMAGE_UID = 10001
DEVICE_PLUGINS = "/var/lib/kubelet/device-plugins"
REAL_NODE_STATE = Path("/srv/dgxsim-state")

# Value sets every structural test runs with.
VALUE_SETS: dict[str, JSON] = {
    "defaults": {},
    "a100-640gb-single": {"nodeKind": "dgx-a100-640gb", "migStrategy": "single",
                          "timeScale": 60, "image": {"repository": "registry.example/dgxsim",
                                                     "tag": "1.2.3", "pullPolicy": "Always"}},
    "no-operator": {"operator": {"enabled": False}, "migStrategy": "none"},
    "custom": {"timeScale": 0.25,
               "nodeSelector": {"dgxsim.io/dgx-node": None, "node-role.example/dgx": "yes"},
               "tolerations": [], "priorityClassName": "",
               "operator": {"replicas": 0, "nodeSelector": {"kubernetes.io/os": "linux"}},
               "migConfigs": {"version": "v1", "mig-configs": {
                   "half": [{"devices": [0, 1, 2, 3], "mig-enabled": True,
                             "mig-devices": {"3g.20gb": 2}}]}}},
    # What `dgxsim real-node-values` prints for `up --real-node-agent chart`.
    "real-nodes": chart_values(REAL_NODE_STATE, 40123, ["dgx-real-0", "dgx-real-1"]),
}


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> None:
    ensure_tools(("helm",))


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[JSON, list[JSON]]:
    values = VALUE_SETS[request.param]
    return values, render(values)


def daemonset(docs: list[JSON]) -> JSON:
    return find(docs, "DaemonSet", "dgxsim-node")


def operator(docs: list[JSON]) -> JSON:
    return find(docs, "Deployment", "dgxsim-operator")


def all_containers(docs: list[JSON]) -> Iterator[tuple[str, JSON, JSON]]:
    """(workload name, pod spec, container) for every container of every workload."""
    for doc in docs:
        if doc["kind"] in ("DaemonSet", "Deployment", "Job"):
            spec = pod_spec(doc)
            for c in spec["containers"] + spec.get("initContainers", []):
                yield doc["metadata"]["name"], spec, c


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


# ------------------------------------------------------------------ lint


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    result = helm("lint", "--strict", str(CHART), "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_lint_fails_on_a_broken_chart(tmp_path: Path) -> None:
    """The lint gate can fail: a copy of the chart with a template error is refused."""
    broken = tmp_path / "dgxsim"
    broken.mkdir()
    for path in CHART.rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(CHART)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (broken / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    result = helm("lint", "--strict", str(broken), check=False)
    assert result.returncode != 0


# ------------------------------------------------------------ inventory


def test_default_render_has_every_object_once() -> None:
    assert kinds(render()) == [
        ("ClusterRole", "dgxsim-node"), ("ClusterRole", "dgxsim-operator"),
        ("ClusterRoleBinding", "dgxsim-node"), ("ClusterRoleBinding", "dgxsim-operator"),
        ("ConfigMap", "dgxsim-mig-configs"),
        ("CustomResourceDefinition", "dgxjobs.dgxsim.io"),
        ("DaemonSet", "dgxsim-node"), ("Deployment", "dgxsim-operator"),
        ("Job", "dgxsim-test-gpu-job"),
        ("Role", "dgxsim-node"), ("Role", "dgxsim-operator"),
        ("RoleBinding", "dgxsim-node"), ("RoleBinding", "dgxsim-operator"),
        ("Service", "dgxsim-dcgm-metrics"),
        ("ServiceAccount", "dgxsim-node"), ("ServiceAccount", "dgxsim-operator"),
    ]


def test_node_pods_serve_dcgm_metrics_behind_a_service() -> None:
    docs = render()
    node = container(find(docs, "DaemonSet"))
    args = node["args"]
    assert args[args.index("--metrics-port") + 1] == "9400"
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert node["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    service = find(docs, "Service", "dgxsim-dcgm-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9400,
                                         "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = find(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    off = render({"dcgmMetricsPort": 0})
    assert "--metrics-port" not in container(find(off, "DaemonSet"))["args"]
    assert not [k for k in kinds(off) if k[0] == "Service"]


def test_operator_disabled_removes_its_deployment_and_rbac() -> None:
    names = kinds(render({"operator": {"enabled": False}}))
    assert not [n for n in names if "operator" in n[1]]
    assert ("DaemonSet", "dgxsim-node") in names


def test_names_follow_the_release() -> None:
    docs = render(release="lab", namespace="gpu")
    assert find(docs, "DaemonSet")["metadata"]["name"] == "lab-dgxsim-node"
    assert find(docs, "ConfigMap")["metadata"]["name"] == "dgxsim-mig-configs", \
        "nodes look the mig-parted ConfigMap up by this fixed name"
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert doc["metadata"]["namespace"] == "gpu", doc["metadata"]["name"]


# ------------------------------------------------------------ DaemonSet


def test_node_daemonset_runs_dgxsim_node_run_with_the_values(
        rendered: tuple[JSON, list[JSON]]) -> None:
    values, docs = rendered
    ds = daemonset(docs)
    node = container(ds)
    args = node["args"]
    assert args[:2] == ["node", "run"]
    assert arg_after(args, "--node-name") == "$(NODE_NAME)"
    state = values.get("hostPaths", {}).get("state", {"path": "/var/lib/dgxsim"})
    assert arg_after(args, "--state-dir") == "/".join(
        p for p in (state["path"], state.get("subPathExpr")) if p)
    assert arg_after(args, "--kind") == values.get("nodeKind", "dgx-a100-320gb")
    assert arg_after(args, "--mig-strategy") == values.get("migStrategy", "mixed")
    assert arg_after(args, "--device-plugin-dir") == DEVICE_PLUGINS
    assert float(arg_after(args, "--time-scale")) == float(values.get("timeScale", 1))
    env = {e["name"]: e for e in node["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    image = values.get("image", {})
    assert node["image"] == (f"{image.get('repository', 'dgxsim')}:"
                             f"{image.get('tag', '0.1.0')}")
    assert node["imagePullPolicy"] == image.get("pullPolicy", "IfNotPresent")


def test_time_scale_renders_as_a_plain_number() -> None:
    for given, shown in ((1000000, "1000000"), (0.001, "0.001"), (2.5, "2.5")):
        args = container(daemonset(render({"timeScale": given})))["args"]
        text = arg_after(args, "--time-scale")
        assert "e" not in text and float(text) == float(shown), text


def test_node_daemonset_mounts_the_kubelet_device_plugin_dir_at_the_same_path() -> None:
    ds = daemonset(render())
    volumes = {v["name"]: v for v in pod_spec(ds)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(ds)["volumeMounts"]}
    plugins = volumes[mounts[DEVICE_PLUGINS]["name"]]
    assert plugins["hostPath"]["path"] == DEVICE_PLUGINS
    assert not mounts[DEVICE_PLUGINS].get("readOnly")
    state = volumes[mounts["/var/lib/dgxsim"]["name"]]
    assert state["hostPath"] == {"path": "/var/lib/dgxsim", "type": "DirectoryOrCreate"}, \
        "node state must survive pod restarts, at the path Allocate mounts into job containers"
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]
    cdi = volumes[mounts["/var/run/cdi"]["name"]]
    assert cdi["hostPath"] == {"path": "/var/run/cdi", "type": "DirectoryOrCreate"}, \
        "the runtime resolves the CDI names Allocate returns from the host's CDI directory"
    assert arg_after(container(ds)["args"], "--cdi-dir") == "/var/run/cdi"
    pod_resources = "/var/lib/kubelet/pod-resources"
    assert volumes[mounts[pod_resources]["name"]]["hostPath"]["path"] == pod_resources
    assert mounts[pod_resources]["readOnly"] is True, "the node only asks the kubelet"
    assert arg_after(container(ds)["args"], "--pod-resources-socket") == \
        f"{pod_resources}/kubelet.sock"


def test_node_daemonset_defaults_use_the_pod_network_and_the_service() -> None:
    ds = daemonset(render())
    assert "hostNetwork" not in pod_spec(ds)
    env = {e["name"] for e in container(ds)["env"]}
    assert not env & {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    assert not [m for m in container(ds)["volumeMounts"] if "subPathExpr" in m]


def test_node_daemonset_on_real_nodes_sharing_one_file_system() -> None:
    """Each node's own folders by $(NODE_NAME); the state folder at its host path."""
    ds = daemonset(render(VALUE_SETS["real-nodes"]))
    spec, node = pod_spec(ds), container(ds)
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m for m in node["volumeMounts"]}
    base = "/srv/dgxsim-state/realnodes/nodes"
    for path, sub in ((DEVICE_PLUGINS, "$(NODE_NAME)/kubelet/device-plugins"),
                      ("/var/run/cdi", "$(NODE_NAME)/containerd/cdi"),
                      ("/var/lib/kubelet/pod-resources", "$(NODE_NAME)/kubelet/pod-resources")):
        assert volumes[mounts[path]["name"]] == base, path
        assert mounts[path]["subPathExpr"] == sub
    state = "/srv/dgxsim-state/nodes"
    assert volumes[mounts[state]["name"]] == state and "subPathExpr" not in mounts[state]
    assert arg_after(node["args"], "--state-dir") == f"{state}/$(NODE_NAME)"
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "40123"
    assert node["image"] == "dgxsim:dev" and node["imagePullPolicy"] == "Never"
    assert "--metrics-port" not in node["args"], "no port opened on the node's network"
    assert not find_all(render(VALUE_SETS["real-nodes"]), "Deployment")
    (term,) = spec["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "In",
                                         "values": ["dgx-real-0", "dgx-real-1"]}]


def find_all(docs: list[JSON], kind: str) -> list[JSON]:
    return [d for d in docs if d["kind"] == kind]


def test_node_daemonset_scheduling_defaults() -> None:
    spec = pod_spec(daemonset(render()))
    assert spec["nodeSelector"] == {"dgxsim.io/dgx-node": "true"}
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        spec["tolerations"]
    assert spec["serviceAccountName"] == "dgxsim-node"


def test_node_daemonset_scheduling_follows_values() -> None:
    spec = pod_spec(daemonset(render(VALUE_SETS["custom"])))
    assert spec["nodeSelector"] == {"node-role.example/dgx": "yes"}
    assert "priorityClassName" not in spec
    assert "tolerations" not in spec


def test_node_pods_restart_when_the_mig_configs_change() -> None:
    def checksum(values: JSON) -> str:
        annotations = daemonset(render(values))["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/mig-configs"])

    assert checksum({}) != checksum(VALUE_SETS["custom"])


# ------------------------------------------------------------- operator


def test_operator_deployment(rendered: tuple[JSON, list[JSON]]) -> None:
    values, docs = rendered
    if not values.get("operator", {}).get("enabled", True):
        assert not [d for d in docs if d["kind"] == "Deployment"]
        return
    deploy = operator(docs)
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert deploy["spec"]["replicas"] == values.get("operator", {}).get("replicas", 1)
    op = container(deploy)
    assert op["args"] == ["operator", "--namespace", "dgxsim-system", "--metrics-port", "8080",
                          "--liveness-port", "8081"]
    probe = op["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8081
    assert ports["metrics"] == 8080
    assert pod_spec(deploy)["serviceAccountName"] == "dgxsim-operator"


def test_operator_namespace_is_the_release_namespace() -> None:
    op = container(operator(render(namespace="gpu-sim")))
    assert arg_after(op["args"], "--namespace") == "gpu-sim"


# ------------------------------------------------------- securityContext


def effective(spec: JSON, c: JSON, key: str) -> Any:
    """A container's securityContext field, falling back to the pod's, as the kubelet does."""
    own = c.get("securityContext") or {}
    return own[key] if key in own else (spec.get("securityContext") or {}).get(key)


def test_every_container_is_locked_down(rendered: tuple[JSON, list[JSON]]) -> None:
    values, docs = rendered
    seen = 0
    for name, spec, c in all_containers(docs):
        seen += 1
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert not sc.get("capabilities", {}).get("add"), name
        assert not sc.get("privileged"), name
        assert effective(spec, c, "seccompProfile") == {"type": "RuntimeDefault"}, name
        # hostNetwork only where the values ask for it (an EXCEPTION in values.yaml)
        assert spec.get("hostNetwork", False) is bool(
            name == "dgxsim-node" and values.get("hostNetwork")), name
        assert not spec.get("hostPID"), name
        assert not spec.get("hostIPC"), name
    assert seen >= 2


def test_only_the_node_container_runs_as_root() -> None:
    for name, spec, c in all_containers(render()):
        if name == "dgxsim-node":
            assert effective(spec, c, "runAsUser") == 0
        else:
            assert effective(spec, c, "runAsNonRoot") is True, name
            assert effective(spec, c, "runAsUser") == IMAGE_UID, name


def test_only_the_node_daemonset_uses_host_paths() -> None:
    for doc in render():
        if doc["kind"] in ("Deployment", "Job"):
            assert not [v for v in pod_spec(doc).get("volumes", []) if "hostPath" in v]


def _comment_above(lines: list[str], index: int) -> str:
    block = []
    for line in reversed(lines[:index]):
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        block.append(stripped.lstrip("# "))
    return " ".join(reversed(block))


def test_every_security_exception_is_justified_in_values() -> None:
    """Root, and hostPath volumes: each carries an EXCEPTION comment that says why."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    exceptions = [i for i, line in enumerate(lines)
                  if re.match(r"\s*(runAsUser: 0|runAsNonRoot: false|privileged: true)\b", line)]
    assert exceptions, "the node container's root user is an exception to justify"
    securitycontext_start = max(i for i in range(exceptions[0])
                                if lines[i].strip().startswith("securityContext:"))
    comment = " ".join(_comment_above(lines, i) for i in range(securitycontext_start + 1,
                                                               exceptions[-1] + 1))
    assert "EXCEPTION runAsUser 0" in comment
    assert "kubelet.sock" in comment and "capabil" in comment
    text = "\n".join(lines)
    assert re.search(r"# EXCEPTION hostPath volumes.*\n(#.*\n)*", text)
    assert "/var/lib/kubelet/device-plugins" in text and "survive" in text
    assert re.search(r"# EXCEPTION hostNetwork \(off by default\).*\n(#.*\n)*hostNetwork: false",
                     text)


# ------------------------------------------------------------------ RBAC


def test_rbac_rules_are_exactly_what_each_component_needs() -> None:
    docs = render()
    assert rule_set(find(docs, "ClusterRole", "dgxsim-node")) == NODE_CLUSTER
    assert rule_set(find(docs, "Role", "dgxsim-node")) == NODE_NAMESPACED
    assert rule_set(find(docs, "ClusterRole", "dgxsim-operator")) == OPERATOR_CLUSTER
    assert rule_set(find(docs, "Role", "dgxsim-operator")) == OPERATOR_NAMESPACED


def test_rbac_has_no_wildcards_and_no_builtin_roles() -> None:
    for doc in render():
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for key in ("apiGroups", "resources", "verbs", "resourceNames",
                            "nonResourceURLs"):
                    assert "*" not in rule.get(key, []), (doc["metadata"]["name"], rule)
            assert "aggregationRule" not in doc
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            ref = doc["roleRef"]
            assert ref["name"] == doc["metadata"]["name"], "each binding binds its own role"
            assert ref["name"] not in ("cluster-admin", "admin", "edit", "view")


def test_bindings_bind_each_role_to_its_own_service_account() -> None:
    docs = render(namespace="dgxsim-system")
    for component in ("node", "operator"):
        for kind in ("ClusterRoleBinding", "RoleBinding"):
            binding = find(docs, kind, f"dgxsim-{component}")
            assert binding["subjects"] == [{"kind": "ServiceAccount",
                                            "name": f"dgxsim-{component}",
                                            "namespace": "dgxsim-system"}]
        find(docs, "ServiceAccount", f"dgxsim-{component}")


# ------------------------------------------------------- mig-parted configs


def test_default_mig_configs_are_the_nodes_defaults() -> None:
    shipped = CHART / "files" / "default-mig-configs.yaml"
    catalog = REPO_ROOT / "simnode" / "gpumodel" / "catalog" / "default-mig-configs.yaml"
    assert shipped.read_text() == catalog.read_text(), \
        "copy simnode/gpumodel/catalog/default-mig-configs.yaml to charts/dgxsim/files/"
    text = find(render(), "ConfigMap", "dgxsim-mig-configs")["data"]["config.yaml"]
    parsed = parse_mig_parted_config(text, "chart ConfigMap")
    assert parsed == default_mig_configs()
    for name in ("all-disabled", "all-enabled", "all-1g.5gb", "all-1g.5gb.me", "all-1g.10gb",
                 "all-2g.10gb", "all-3g.20gb", "all-4g.20gb", "all-7g.40gb", "all-balanced",
                 "custom-config"):
        assert name in parsed.mig_configs


def test_mig_configs_value_replaces_the_defaults() -> None:
    values = VALUE_SETS["custom"]
    text = find(render(values), "ConfigMap", "dgxsim-mig-configs")["data"]["config.yaml"]
    parsed = parse_mig_parted_config(text, "chart ConfigMap")
    assert set(parsed.mig_configs) == {"half"}
    assert yaml.safe_load(text) == values["migConfigs"]


# ------------------------------------------------------------ helm test


def test_helm_test_hook_runs_one_gpu_job_to_completion() -> None:
    job = find(render({"gpuTest": {"duration": "12s"}}), "Job")
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert job["spec"]["backoffLimit"] == 0
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    c = container(job)
    assert c["args"] == ["workload", "--duration", "12s"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 1}
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dgxsim.io/duration"] == "12s"
    env = {e["name"]: e for e in c["env"]}
    assert env["DGXSIM_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["DGXSIM_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


# ------------------------------------------------------------------- CRD


def test_chart_crd_is_the_operators_crd() -> None:
    chart_crd = CHART / "crds" / "dgxjob.yaml"
    operator_crd = REPO_ROOT / "operator" / "migoperator" / "crds" / "dgxjob.yaml"
    crd = yaml.safe_load(chart_crd.read_text())
    if operator_crd.exists():
        assert chart_crd.read_text() == operator_crd.read_text(), \
            "copy operator/migoperator/crds/dgxjob.yaml to charts/dgxsim/crds/"
    assert crd["metadata"]["name"] == "dgxjobs.dgxsim.io"
    assert crd["spec"]["group"] == "dgxsim.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "DGXJob"
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Workload", "GPUs", "Nodes", "Predicted", "Age"]


# ------------------------------------------------------ schema rejections


@pytest.mark.parametrize(("values", "wanted"), [
    ({"migStrategy": "dynamic"}, ["/migStrategy", "'none', 'single', 'mixed'"]),
    ({"operator": {"replicas": -1}}, ["/operator/replicas", "minimum", "-1"]),
    ({"operator": {"replicas": 1.5}}, ["/operator/replicas", "integer"]),
    ({"timeScale": 0}, ["/timeScale", "exclusiveMinimum"]),
    ({"timeScale": "fast"}, ["/timeScale", "number"]),
    ({"nodeKind": "dgx-h100"}, ["/nodeKind", "dgx-a100-320gb"]),
    ({"migStrategys": "mixed"}, ["additional properties 'migStrategys' not allowed"]),
    ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy"]),
    ({"hostPaths": {"cdi": {"path": "run/cdi", "subPathExpr": ""}}},
     ["/hostPaths/cdi/path", "does not match"]),
    ({"hostPaths": {"state": {"path": "/srv", "subPathExpr": "/abs"}}},
     ["/hostPaths/state/subPathExpr", "does not match"]),
    ({"hostNetwork": "yes"}, ["/hostNetwork", "boolean"]),
    ({"migConfigs": {"mig-configs": {"a": [{"devices": "all", "mig-enabled": True}]}}},
     ["/migConfigs", "version"]),
])
def test_schema_rejects_bad_values_with_a_clear_message(values: JSON, wanted: list[str]
                                                         ) -> None:
    for command in ("template", "lint"):
        if command == "template":
            result = template(values, check=False)
        else:
            from chart_helpers import values_args
            result = helm("lint", str(CHART), *values_args(values), check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "values don't meet the specifications of the schema" in output
        for text in wanted:
            assert text in output, f"{text!r} not in:\n{output}"


@pytest.mark.parametrize(("values", "wanted"), [
    ({"operator": {"replicas": 2}}, "operator.replicas=2: the operator runs kopf standalone"),
    ({"nodeSelector": {"dgxsim.io/dgx-node": None}}, "nodeSelector is empty"),
])
def test_validation_rejects_inconsistent_values(values: JSON, wanted: str) -> None:
    result = template(values, check=False)
    assert result.returncode != 0
    assert wanted in result.stderr


def test_replicas_zero_and_one_are_accepted() -> None:
    for replicas in (0, 1):
        assert operator(render({"operator": {"replicas": replicas}}))["spec"]["replicas"] \
            == replicas


# ------------------------------------------- offline OpenAPI validation


def test_every_manifest_is_valid_for_kubernetes_1_36(rendered: tuple[JSON, list[JSON]]) -> None:
    _, docs = rendered
    for doc in docs:
        try:
            version = kubernetes_validate.validate(doc, KUBERNETES_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {err}") from err
        assert version == KUBERNETES_SCHEMA_VERSION


def test_offline_validation_can_fail() -> None:
    ds = daemonset(render())
    container(ds)["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBERNETES_SCHEMA_VERSION, strict=True)
