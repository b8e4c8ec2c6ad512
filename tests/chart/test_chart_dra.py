"""The chart's DRA value: NVIDIA's DeviceClasses, the node's DRA flags, sockets and RBAC."""

from __future__ import annotations

from chart_helpers import container, find, kinds, pod_spec, render, rule_set, template

from gpumodel.dra import device_classes


def test_without_dra_the_chart_installs_no_device_class_and_no_dra_flag() -> None:
    docs = render()
    assert not [k for k in kinds(docs) if k[0] == "DeviceClass"]
    args = container(find(docs, "DaemonSet"))["args"]
    assert "--dra" not in args


def test_dynamic_dra_installs_nvidias_device_classes_and_the_kubelet_plugin_dirs() -> None:
    docs = render({"dra": "dynamic"})
    for wanted in device_classes():
        rendered = find(docs, "DeviceClass", wanted["metadata"]["name"])
        assert rendered["spec"] == wanted["spec"], "the chart and gpumodel.dra agree"
    daemonset = find(docs, "DaemonSet")
    args = container(daemonset)["args"]
    assert args[args.index("--dra") + 1] == "dynamic"
    assert args[args.index("--kubelet-registry-dir") + 1] == "/var/lib/kubelet/plugins_registry"
    paths = {v["hostPath"]["path"] for v in pod_spec(daemonset)["volumes"] if "hostPath" in v}
    assert {"/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/plugins"} <= paths
    node_role = next(d for d in docs if d["kind"] == "ClusterRole"
                     and d["metadata"]["name"].endswith("-node"))
    rules = rule_set(node_role)
    assert ("resource.k8s.io", "resourceslices", "create", "") in rules
    assert ("resource.k8s.io", "resourceclaims", "get", "") in rules


def test_an_unknown_dra_mode_is_refused() -> None:
    result = template({"dra": "sometimes"}, check=False)
    assert result.returncode != 0
    assert "dra" in result.stderr
