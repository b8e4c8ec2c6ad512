"""What a real node is made of, checked without root: images, containerd's and the kubelet's
configuration, addresses. The tier in tests/realnode runs them for real."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from localkube import containerd, images, realnode
from localkube.pki import ensure_pki


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    assert member is not None
    data = member.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_an_oci_archive_is_a_consistent_image_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "link").symlink_to("bin/tool")
    images.layer_from_dir(root, tmp_path / "layer.tar")
    archive = images.write_oci_archive(tmp_path / "image.tar", "registry.local/x/y:1",
                                       [tmp_path / "layer.tar"], {"Cmd": ["/bin/tool"]})
    with tarfile.open(archive.path) as tar:
        assert json.loads(tar.extractfile("oci-layout").read())["imageLayoutVersion"]  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == "registry.local/x/y:1"
        manifest = json.loads(_blob(tar, entry["digest"]))
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        layer = manifest["layers"][0]
        assert config["rootfs"]["diff_ids"] == [layer["digest"]]
        with tarfile.open(fileobj=io.BytesIO(_blob(tar, layer["digest"]))) as inner:
            names = inner.getnames()
            assert inner.getmember("link").issym()
    assert names == ["bin", "bin/tool", "link"]
    assert config["config"] == {"Cmd": ["/bin/tool"]}


def test_the_same_tree_gives_the_same_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_text("a")
    images.layer_from_dir(root, tmp_path / "one.tar")
    images.layer_from_dir(root, tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


def test_console_scripts_of_installed_wheels_are_found(tmp_path: Path) -> None:
    info = tmp_path / "dgxsim-0.1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(
        "[console_scripts]\ndgxsim = dgxsim.cli:main\nnvidia-smi = dgxnode.nvidia_smi:main\n"
        "\n[other]\nx = y:z\n")
    assert images._console_scripts(tmp_path) == {
        "dgxsim": "dgxsim.cli:main", "nvidia-smi": "dgxnode.nvidia_smi:main"}


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> realnode.Runtime:
    monkeypatch.setattr(containerd.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(containerd, "cni_bin_dir", lambda: Path("/usr/lib/cni"))
    return realnode.Runtime(tmp_path / "state")


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _record(runtime: realnode.Runtime, name: str = "dgx-real-0", slot: int = 3
            ) -> realnode.RealNodeRecord:
    return runtime.plan_node(name, slot, 41234)


def test_each_node_gets_its_own_addresses_and_names(runtime: realnode.Runtime) -> None:
    first, second = _record(runtime, "dgx-real-0", 0), _record(runtime, "dgx-real-1", 1)
    assert (first.host_ip, first.node_ip, second.node_ip) == (
        "198.18.0.1", "198.18.0.2", "198.18.0.6")
    assert (first.pod_subnet, second.pod_subnet) == ("198.19.0.0/24", "198.19.1.0/24")
    assert first.netns != second.netns and first.bridge != second.bridge
    assert first.containerd_dir != second.containerd_dir
    assert all(len(n) <= 15 for n in (first.host_veth, first.bridge))  # IFNAMSIZ


def test_containerd_keeps_its_files_under_the_state_dir(runtime: realnode.Runtime) -> None:
    record = _record(runtime)
    ctd = runtime.containerd(record)
    config = tomllib.loads(ctd.config("registry.local/dgxsim/pause:3.10", 41234))
    cri = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["cdi_spec_dirs"] == [str(ctd.cdi_dir)]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    images_cfg = config["plugins"]["io.containerd.cri.v1.images"]
    assert images_cfg["pinned_images"]["sandbox"] == "registry.local/dgxsim/pause:3.10"
    assert config["plugins"]["io.containerd.nri.v1.nri"]["disable"] is True
    stream = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert (stream["stream_server_address"], stream["stream_server_port"]) == ("127.0.0.1",
                                                                              "41234")
    assert config["grpc"]["address"] == str(record.short_dir / "containerd.sock")
    paths = [s for s in _strings(config) if s.startswith("/")]
    outside = [p for p in paths if not p.startswith((str(runtime.state_dir),
                                                     str(record.short_dir)))
               and p not in ("/usr/sbin/runc", "/usr/lib/cni")
               and not p.endswith("containerd-shim-runc-v2")]
    assert outside == []


def test_cni_gives_pods_addresses_without_a_gateway(runtime: realnode.Runtime) -> None:
    record = _record(runtime)
    bridge = runtime.containerd(record).cni_config()["plugins"][0]  # type: ignore[index]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert bridge["bridge"] == record.bridge
    assert bridge["ipam"]["ranges"] == [[{"subnet": record.pod_subnet}]]
    assert bridge["ipam"]["dataDir"].startswith(str(runtime.state_dir))


def test_the_kubelet_is_configured_for_cgroupfs_on_v1(runtime: realnode.Runtime,
                                                      tmp_path: Path) -> None:
    record = _record(runtime)
    pki = ensure_pki(tmp_path / "pki")
    config = runtime.kubelet_config(record, pki)
    assert config["cgroupDriver"] == "cgroupfs" and config["failCgroupV1"] is False
    assert config["cgroupRoot"] == record.cgroup_root
    assert config["address"] == record.node_ip
    assert config["containerRuntimeEndpoint"] == \
        f"unix://{runtime.containerd(record).socket}"
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]
    paths = [s for s in _strings(config) if s.startswith("/") and s != record.cgroup_root
             and not s.startswith("unix://")]
    assert all(p.startswith((str(record.root_dir), str(pki.root))) for p in paths), paths


def test_the_kubelet_runs_in_the_nodes_namespace_with_its_own_plugin_dir(
        runtime: realnode.Runtime) -> None:
    record = _record(runtime)
    argv = runtime.kubelet_argv(record)
    assert argv[:2] == ["nsenter", f"--net=/run/netns/{record.netns}"]
    assert str(record.device_plugin_dir) in argv
    assert str(realnode.KUBELET_DEVICE_PLUGINS) in argv
    assert f"--node-ip={record.node_ip}" in argv and "--hostname-override=dgx-real-0" in argv
    assert len(str(record.device_plugin_link / "nvidia-mig-1g.5gb.sock")) < 108
    assert len(str(runtime.containerd(record).socket) + ".ttrpc") < 108


def test_node_addresses_skip_those_the_machine_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = ("1: lo    inet 127.0.0.1/8 scope host lo\n"
               "5: dgxa-0    inet 198.18.0.1/30 scope global dgxa-0\n"
               "7: dgxa-2    inet 198.18.0.9/30 scope global dgxa-2\n")
    monkeypatch.setattr(realnode, "_run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 0, listing, ""))
    assert realnode.free_slots(3) == [1, 3, 4]


def test_without_root_real_nodes_are_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    with pytest.raises(realnode.RealNodeError) as err:
        realnode.require_root()
    assert "need root" in str(err.value) and "\n" not in str(err.value)


def test_chart_values_name_each_real_nodes_own_folders(runtime: realnode.Runtime) -> None:
    """$(NODE_NAME) in the chart values expands to exactly the folders ``up`` gives a node."""
    from dgxsim.realnodes import chart_values
    from dgxsim.statedir import node_dir

    values = chart_values(runtime.state_dir, 40123, ["dgx-real-0", "dgx-real-1"])
    record = runtime.plan_node("dgx-real-1", 1, 1)

    def expanded(key: str) -> Path:
        entry = values["hostPaths"][key]
        return Path(entry["path"]) / entry["subPathExpr"].replace("$(NODE_NAME)", record.name)

    assert expanded("devicePlugins") == record.device_plugin_dir
    assert expanded("podResources") == record.pod_resources_dir
    assert expanded("cdi") == runtime.containerd(record).cdi_dir
    assert expanded("state") == node_dir(runtime.state_dir, record.name)
    assert values["apiServer"] == {"host": "127.0.0.1", "port": "40123"}
    assert values["hostNetwork"] is True and values["image"]["pullPolicy"] == "Never"
    assert values["gpuTest"]["nodeSelector"] == {"kubernetes.io/hostname": "dgx-real-0"}


def test_real_node_values_without_a_cluster_is_one_line(tmp_path: Path) -> None:
    import sys

    result = subprocess.run([sys.executable, "-m", "dgxsim", "real-node-values",
                             "--state-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no control plane running" in lines[0], result.stderr


def test_real_node_agent_without_real_nodes_is_one_line(tmp_path: Path) -> None:
    import sys

    result = subprocess.run([sys.executable, "-m", "dgxsim", "up", "--state-dir",
                             str(tmp_path / "s"), "--real-node-agent", "chart"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--real-node-agent chart needs --real-nodes" in lines[0], \
        result.stderr
    assert not (tmp_path / "s" / "controlplane.json").exists()
