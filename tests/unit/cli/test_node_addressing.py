"""``dgxsim nvidia-smi`` and ``dgxsim fault`` address one node of a cluster state dir.

The state dirs here are laid out by the node agent's own code
(:func:`dgxsim.kubeletless.open_node`, as ``dgxsim up --nodes N`` runs it) and by
``dgxsim node init``, so a change to either layout shows up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxnode.node import SimNode
from dgxnode.store import NodeStore
from dgxsim.cli import main
from dgxsim.kubeletless import open_node
from dgxsim.statedir import cluster_nodes, node_dir
from gpumodel.vocabulary import DEFAULT_NODE_KIND


def cluster(root: Path, *names: str) -> Path:
    """A state dir as the node agent leaves it after starting ``names``."""
    for name in names:
        open_node(root, name, DEFAULT_NODE_KIND)
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def gpu_uuid(root: Path, name: str, index: int = 0) -> str:
    return str(SimNode.open(NodeStore(node_dir(root, name))).hardware.gpu(index).uuid)


def unhealthy(root: Path, name: str) -> tuple[str, ...]:
    return SimNode.open(NodeStore(node_dir(root, name))).state.unhealthy


def test_the_agent_layout_is_what_cluster_nodes_reads(tmp_path: Path) -> None:
    cluster(tmp_path, "dgx-1", "dgx-0")
    (tmp_path / "nodes" / "not-a-node").mkdir()
    assert cluster_nodes(tmp_path) == ["dgx-0", "dgx-1"]
    assert cluster_nodes(tmp_path / "missing") == []


@pytest.mark.parametrize("form", [("--node", "dgx-1"), ("--node=dgx-1",)])
def test_nvidia_smi_node_of_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      form: tuple[str, ...]) -> None:
    root = cluster(tmp_path, "dgx-0", "dgx-1")
    code, out, _ = run(capsys, "nvidia-smi", "--state-dir", str(root), *form, "-L")
    assert code == 0
    assert gpu_uuid(root, "dgx-1") in out and gpu_uuid(root, "dgx-0") not in out
    assert out.count("GPU ") == 8


def test_nvidia_smi_unknown_node_lists_the_nodes(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = cluster(tmp_path, "dgx-0", "dgx-1")
    code, out, err = run(capsys, "nvidia-smi", "--state-dir", str(root), "--node", "dgx-7", "-L")
    assert code == 1 and out == ""
    assert err == (f"dgxsim nvidia-smi: --node dgx-7: no such node in {root} "
                   "(nodes: dgx-0, dgx-1)\n")


def test_nvidia_smi_without_node_needs_one_when_there_are_several(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = cluster(tmp_path, "dgx-0", "dgx-1")
    code, _, err = run(capsys, "nvidia-smi", "--state-dir", str(root), "-L")
    assert code == 1 and err.count("\n") == 1
    assert "pass --node NAME (nodes: dgx-0, dgx-1)" in err


def test_nvidia_smi_single_node_state_dir_as_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "node", "init", "--state-dir", str(tmp_path), "--name", "solo")[0] == 0
    code, out, _ = run(capsys, "nvidia-smi", f"--state-dir={tmp_path}", "-L", "-i", "0")
    uuid = SimNode.open(NodeStore(tmp_path)).hardware.gpu(0).uuid
    assert code == 0 and out.strip() == f"GPU 0: NVIDIA A100-SXM4-40GB (UUID: {uuid})"


def test_nvidia_smi_empty_state_dir_reports_no_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "nvidia-smi", "--state-dir", str(tmp_path), "-L")
    assert code == 9 and "the node state is unusable" in out and str(tmp_path) in out


def test_fault_without_node_on_a_one_node_cluster(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = cluster(tmp_path, "dgx-0")
    code, out, _ = run(capsys, "fault", "inject", "--state-dir", str(root), "--gpu", "3")
    assert code == 0 and out.startswith("dgx-0: XID 79")
    assert unhealthy(root, "dgx-0") == (gpu_uuid(root, "dgx-0", 3),)
    assert run(capsys, "fault", "clear", "--state-dir", str(root), "--gpu", "3")[0] == 0
    assert unhealthy(root, "dgx-0") == ()


def test_fault_names_one_node_of_several(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = cluster(tmp_path, "dgx-0", "dgx-1", "dgx-2")
    code, _, err = run(capsys, "fault", "inject", "--state-dir", str(root), "--gpu", "0")
    assert code == 1
    assert err == (f"dgxsim fault: {root} holds 3 nodes: pass --node NAME "
                   "(nodes: dgx-0, dgx-1, dgx-2)\n")
    assert run(capsys, "fault", "inject", "--state-dir", str(root), "--node", "dgx-2",
               "--nvlink", "--gpu", "1")[0] == 0
    assert unhealthy(root, "dgx-2") == (gpu_uuid(root, "dgx-2", 1),)
    assert unhealthy(root, "dgx-0") == unhealthy(root, "dgx-1") == ()
    code, _, err = run(capsys, "fault", "clear", "--state-dir", str(root), "--node", "dgx-9",
                       "--gpu", "1")
    assert code == 1 and "no such node" in err and "(nodes: dgx-0, dgx-1, dgx-2)" in err
