"""`dgxsim up / status / env / down` as a user runs them, and their refusals.

Each bad input must give a one-line error, a non-zero exit, and leave no
process running: these tests look for any process that mentions the state
directory before and after.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from kube import Cluster, dgxsim, processes_mentioning

from localkube.toolchain import KUBERNETES_VERSION, bin_dir


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "expected an error message on stderr"
    assert needle in lines[-1], result.stderr
    assert lines[-1].startswith("dgxsim"), result.stderr


def test_up_status_env_down_leaves_no_process(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    up = dgxsim("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    assert str(state / "kubeconfig") in up.stdout
    try:
        assert len(processes_mentioning(str(state))) == 6, \
            "four components, the operator and the supervisor"
        kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig")]
        readyz = subprocess.run([*kubectl, "get", "--raw", "/readyz"], capture_output=True,
                                text=True, timeout=60)
        assert readyz.stdout.strip() == "ok"
        version = subprocess.run([*kubectl, "version"], capture_output=True, text=True,
                                 timeout=60)
        assert f"Server Version: {KUBERNETES_VERSION}" in version.stdout

        status = dgxsim("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stdout
        for component in ("etcd", "kube-apiserver", "kube-controller-manager",
                          "kube-scheduler", "operator", "supervisor"):
            assert f"{component}" in status.stdout
        assert status.stdout.count("restarts 0, health ok") == 6

        again = dgxsim("up", "--state-dir", str(state))
        assert again.returncode == 0
        assert "already running" in again.stdout
        assert len(processes_mentioning(str(state))) == 6

        env = dgxsim("env", "--state-dir", str(state))
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in env.stdout
        assert str(bin_dir()) in env.stdout
    finally:
        down = dgxsim("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(state)) == []
    assert (state / "etcd").is_dir(), "down keeps the cluster's data"
    assert dgxsim("status", "--state-dir", str(state)).returncode != 0


def test_negative_node_count_is_refused(tmp_path: Path) -> None:
    result = dgxsim("up", "--nodes", "-1", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "--nodes: must be 0 to 10000, got -1" in result.stderr
    assert processes_mentioning(str(tmp_path)) == []


def test_unwritable_state_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = dgxsim("up", "--state-dir", str(blocker / "state"))
    assert_one_line_error(result, "is not writable")
    assert processes_mentioning(str(tmp_path)) == []


def test_taken_port_is_refused(tmp_path: Path, control_plane: Cluster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = dgxsim("up", "--state-dir", str(tmp_path / "s"), "--apiserver-port", str(port))
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")
    assert processes_mentioning(str(tmp_path)) == []


def test_missing_binaries_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    (empty / "bin").mkdir(parents=True)
    result = dgxsim("up", "--state-dir", str(tmp_path / "s"),
                    env={"DGXSIM_TOOLS_DIR": str(empty), "PATH": "/usr/bin:/bin"})
    assert_one_line_error(result, "not found")
    assert "make tools" in result.stderr
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.parametrize("broken", ["kube-apiserver", "kube-scheduler"])
def test_component_failing_at_start_stops_the_ones_already_started(
        tmp_path: Path, broken: str) -> None:
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        target = tools / "bin" / name
        if name == broken:
            target.write_text("#!/bin/sh\necho 'E0101 cannot start: simulated failure' >&2\n"
                              "exit 1\n")
            target.chmod(0o755)
        else:
            shutil.copy2(bin_dir() / name, target)
    state = tmp_path / "s"
    result = dgxsim("up", "--state-dir", str(state), env={"DGXSIM_TOOLS_DIR": str(tools)})
    assert_one_line_error(result, f"{broken} exited during start-up")
    assert "simulated failure" in result.stderr
    assert processes_mentioning(str(state)) == []
    assert not (state / "controlplane.json").exists()


def test_up_with_nodes_brings_ready_dgx_nodes_and_down_stops_them(tmp_path: Path) -> None:
    import json

    state = tmp_path / "cluster"
    up = dgxsim("up", "--state-dir", str(state), "--nodes", "2", "--mig-config", "all-balanced",
                "--time-scale", "10")
    try:
        assert up.returncode == 0, up.stderr
        assert "2 nodes Ready" in up.stdout
        kubectl = [str(bin_dir() / "kubectl"), "--kubeconfig", str(state / "kubeconfig")]
        nodes = json.loads(subprocess.run([*kubectl, "get", "nodes", "-o", "json"],
                                          capture_output=True, text=True, check=True).stdout)
        assert sorted(n["metadata"]["name"] for n in nodes["items"]) == ["dgx-0", "dgx-1"]
        for node in nodes["items"]:
            assert node["status"]["allocatable"]["nvidia.com/mig-1g.5gb"] == "16"
            assert node["metadata"]["labels"]["nvidia.com/mig.config.state"] == "success"
        status = dgxsim("status", "--state-dir", str(state))
        assert "node-agent" in status.stdout and "operator" in status.stdout
        smi = dgxsim("nvidia-smi", "--state-dir", str(state), "--node", "dgx-1", "-L")
        assert smi.returncode == 0, smi.stdout + smi.stderr
        assert smi.stdout.count("GPU ") == 8 and smi.stdout.count("MIG ") == 32
        assert_one_line_error(dgxsim("fault", "inject", "--state-dir", str(state), "--gpu", "0"),
                              "pass --node NAME (nodes: dgx-0, dgx-1)")
        settings = json.loads((state / "cluster.json").read_text())
        assert (settings["nodes"], settings["time_scale"]) == (2, 10.0)
        jobs = dgxsim("jobs", "--state-dir", str(state))
        assert jobs.returncode == 0, jobs.stderr
        assert jobs.stdout.split("\n")[0].split() == [
            "NAME", "KIND", "PHASE", "PLACEMENT", "PREDICTED", "RAN", "(WALL)", "RAN", "(SIM,",
            "x10)"]
        show = dgxsim("show", "--state-dir", str(state))
        assert show.returncode == 0, show.stderr
        assert [line.split()[0] for line in show.stdout.splitlines()
                if line.startswith("dgx-")] == ["dgx-0", "dgx-1"]
    finally:
        down = dgxsim("down", "--state-dir", str(state))
    assert down.returncode == 0
    assert processes_mentioning(str(state)) == []


def test_unknown_mig_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = dgxsim("up", "--state-dir", str(tmp_path / "s"), "--nodes", "1",
                    "--mig-config", "all-9g")
    assert_one_line_error(result, "--mig-config all-9g: no such config")
    assert processes_mentioning(str(tmp_path)) == []
