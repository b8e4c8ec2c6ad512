"""The toolchain reads staging modules from the release's go.mod and rebuilds only on change."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube import toolchain

KUBE_GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/utils v0.0.0-20250820121507-0af2bda4dd1d
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-20250910181357-589584f1c912
)
"""

ETCD_GOMOD = """module go.etcd.io/etcd/server/v3

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/client/pkg/v3 => ../client/pkg
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_staging_replaces_come_from_the_go_mod_only() -> None:
    assert toolchain.staging_replaces(KUBE_GOMOD, "v1.36.3") == {
        "k8s.io/api": "v0.36.3", "k8s.io/client-go": "v0.36.3"}


def test_a_go_mod_without_staging_modules_is_an_error() -> None:
    with pytest.raises(toolchain.ToolchainError, match="no staging modules"):
        toolchain.staging_replaces("module x\n", "v1.36.3")


def test_etcd_relative_replaces_map_to_the_pinned_tag() -> None:
    assert toolchain.relative_replaces(ETCD_GOMOD, "v3.6.16") == {
        "go.etcd.io/etcd/api/v3": "v3.6.16", "go.etcd.io/etcd/client/pkg/v3": "v3.6.16"}


def test_version_ldflags_stamp_both_version_packages() -> None:
    flags = toolchain.version_ldflags("v1.36.3")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.36.3" in flags
        assert f"-X {pkg}.gitMinor=36" in flags


def test_helm_ldflags_follow_its_client_go() -> None:
    flags = toolchain.helm_ldflags("require (\n\tk8s.io/client-go v0.35.2\n)\n")
    assert "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=35" in flags
    assert "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" in flags


@pytest.fixture
def isolated_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DGXSIM_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("DGXSIM_TOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_a_binary_is_current_only_with_a_matching_stamp(isolated_tools: Path) -> None:
    pin = toolchain.pins()["etcd"]
    assert not toolchain.is_current(pin)
    built = isolated_tools / "etcd"
    built.write_text("#!/bin/sh\n")
    toolchain._install(pin, built)
    assert toolchain.is_current(pin)
    assert "etcd" not in toolchain.missing_tools()
    toolchain._stamp_path("etcd").write_text("go.etcd.io/etcd/server/v3@v3.5.0 linux/amd64\n")
    assert not toolchain.is_current(pin), "a changed pin means a rebuild"


def test_a_fresh_tools_dir_is_filled_from_the_cache(isolated_tools: Path) -> None:
    pin = toolchain.pins()["helm"]
    built = isolated_tools / "helm"
    built.write_text("#!/bin/sh\n")
    toolchain._install(pin, built)
    (isolated_tools / "tools").rename(isolated_tools / "old-tools")
    assert not toolchain.is_current(pin)
    toolchain.ensure_tools(("helm",))
    assert toolchain.is_current(pin)


def test_without_go_or_network_one_message_says_what_to_install(
        isolated_tools: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(toolchain, "_go", lambda: None)
    monkeypatch.setattr(toolchain, "_network_reachable", lambda: False)
    assert toolchain.main(["etcd"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "install Go" in err[0] and "internet" in err[0]


def test_unknown_tool_names_are_refused() -> None:
    with pytest.raises(SystemExit) as exit_info:
        toolchain.main(["kube-proxy"])
    assert exit_info.value.code == 2


def test_real_node_tools_are_built_only_when_asked_for() -> None:
    assert not set(toolchain.REAL_NODE_TOOLS) & set(toolchain.ALL_TOOLS)
    table = toolchain.pins()
    assert table["kubelet"].version == toolchain.KUBERNETES_VERSION
    assert {table[n].source for n in toolchain.CONTAINERD_COMMANDS} == {
        "github.com/containerd/containerd/v2"}
    assert toolchain.CONTAINERD_VERSION.startswith("v2.")


def test_real_node_tools_without_go_say_so_in_one_line(
        isolated_tools: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(toolchain, "_go", lambda: None)
    assert toolchain.main(["--real-node"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "kubelet" in err[0] and "containerd" in err[0] and "install Go" in err[0]


def test_kwok_is_built_only_when_named(isolated_tools: Path) -> None:
    assert "kwok" not in toolchain.ALL_TOOLS
    assert "kwok" not in toolchain.missing_tools(), "make tools does not build it"
    assert "kwok" in toolchain.missing_tools(("kwok",))
    assert toolchain.pins()["kwok"].key.startswith(f"sigs.k8s.io/kwok@{toolchain.KWOK_VERSION} ")


def test_kwok_ldflags_stamp_its_version() -> None:
    assert (f"-X sigs.k8s.io/kwok/pkg/consts.Version={toolchain.KWOK_VERSION.removeprefix('v')}"
            in toolchain.kwok_ldflags())


def test_kwok_is_a_known_tool_name(isolated_tools: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(toolchain, "_go", lambda: None)
    monkeypatch.setattr(toolchain, "_network_reachable", lambda: False)
    assert toolchain.main(["kwok"]) == 1
    assert "cannot get kwok" in capsys.readouterr().err
