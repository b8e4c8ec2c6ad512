"""``dgxsim node``, ``dgxsim mig`` and ``dgxsim nvidia-smi`` end to end (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dgxnode.node import SimNode
from dgxnode.store import NodeStore
from dgxsim.cli import main


def dgxsim(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_show_and_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert dgxsim(capsys, "node", "init", "--state-dir", d)[0] == 0
    code, _, err = dgxsim(capsys, "node", "init", "--state-dir", d)
    assert code == 1 and "already exists" in err
    code, out, _ = dgxsim(capsys, "node", "show", "--state-dir", d)
    assert code == 0 and "NVIDIA DGX A100 320GB" in out and "GPU 7" in out
    assert dgxsim(capsys, "node", "show", "--state-dir", d, "--kind", "dgx-a100-640gb")[0] == 1
    assert dgxsim(capsys, "node", "init", "--state-dir", d, "--force", "--kind",
                  "dgx-a100-640gb")[0] == 0
    code, out, _ = dgxsim(capsys, "node", "show", "--state-dir", d, "--json")
    inventory = json.loads(out)
    assert inventory["kind"] == "dgx-a100-640gb" and len(inventory["gpus"]) == 8
    assert {d["resource"] for d in inventory["devices"]} == {"nvidia.com/gpu"}


def test_apply_dry_run_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    dgxsim(capsys, "node", "init", "--state-dir", d)
    code, out, _ = dgxsim(capsys, "mig", "apply", "all-balanced", "--dry-run", "--state-dir", d)
    assert code == 0 and "enable MIG mode, then reset the GPU" in out
    assert "create  3g.20gb at 4" in out
    assert not SimNode.open(NodeStore(tmp_path)).state.gpu(0).mig_enabled
    code, out, _ = dgxsim(capsys, "mig", "apply", "all-balanced", "--state-dir", d)
    assert code == 0 and out.rstrip().endswith("MIG config 'all-balanced': success")
    code, out, _ = dgxsim(capsys, "nvidia-smi", "--state-dir", d, "-L", "-i", "0")
    assert code == 0 and out.count("MIG ") == 4


def test_apply_blocked_by_allocation(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    dgxsim(capsys, "node", "init", "--state-dir", d)
    dgxsim(capsys, "mig", "apply", "all-3g.20gb", "--state-dir", d)
    dev = SimNode.open(NodeStore(tmp_path)).mig_devices(4)[0]
    device = dev.uuid
    assert dgxsim(capsys, "node", "allocate", device, "--owner", "ns/p/c",
                  "--state-dir", d)[0] == 0
    code, _, err = dgxsim(capsys, "mig", "apply", "all-7g.40gb", "--state-dir", d)
    assert code == 1
    assert f"GPU 4: 3g.20gb (GI {dev.gi.gi_id}, {device}) is allocated to ns/p/c" in err
    code, _, _ = dgxsim(capsys, "mig", "apply", "all-7g.40gb", "--wait", "--timeout", "0.01",
                          "--state-dir", d)
    assert code == 1
    assert dgxsim(capsys, "node", "release", device, "--state-dir", d)[1].strip().endswith(
        "MIG config now success")


def test_custom_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "state")
    dgxsim(capsys, "node", "init", "--state-dir", d)
    config = tmp_path / "mine.yaml"
    config.write_text("version: v1\nmig-configs:\n  two:\n    - devices: [1]\n"
                      "      mig-enabled: true\n      mig-devices: {\"4g.20gb\": 1}\n")
    code, out, _ = dgxsim(capsys, "mig", "apply", "two", "--config", str(config),
                          "--state-dir", d)
    assert code == 0 and "GPU 0: untouched" in out
    config.write_text("version: v1\nmig-configs:\n  bad:\n    - devices: all\n"
                      "      mig-enabled: false\n      typo: 1\n")
    code, _, err = dgxsim(capsys, "mig", "apply", "bad", "--config", str(config),
                          "--state-dir", d)
    assert code == 1 and "typo" in err


def test_geometries(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dgxsim(capsys, "mig", "geometries")
    assert code == 0 and out.startswith("12 maximal layouts of a100-40gb")
    code, out, _ = dgxsim(capsys, "mig", "geometries", "--json")
    assert len(json.loads(out)) == 12
    code, out, _ = dgxsim(capsys, "mig", "geometries", "--json", "--profiles",
                          "1g.5gb,1g.10gb,2g.10gb,3g.20gb,4g.20gb,7g.40gb")
    layouts = json.loads(out)
    assert len(layouts) == 28 and {"7g.40gb": 1} in [g["profiles"] for g in layouts]
    assert dgxsim(capsys, "mig", "geometries", "--gpu", "a100-80gb", "--json")[0] == 0
    assert dgxsim(capsys, "mig", "geometries", "--profiles", "9g.99gb")[0] == 1


def test_restart_and_truncated_state(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    dgxsim(capsys, "node", "init", "--state-dir", d)
    dgxsim(capsys, "mig", "apply", "all-1g.5gb", "--state-dir", d)
    node = SimNode.open(NodeStore(tmp_path))
    a, b = node.mig_devices(0)[0].uuid, node.mig_devices(1)[3].uuid
    dgxsim(capsys, "node", "allocate", a, "--owner", "ns/a/c", "--state-dir", d)
    dgxsim(capsys, "node", "allocate", b, "--owner", "ns/b/c", "--state-dir", d)
    before = dgxsim(capsys, "node", "show", "--json", "--state-dir", d)[1]
    assert dgxsim(capsys, "node", "show", "--json", "--state-dir", d)[1] == before
    assert json.loads(before)["devices"][1]["owner"] == "ns/a/c"
    path = tmp_path / "node.json"
    path.write_bytes(path.read_bytes()[:100])
    code, _, err = dgxsim(capsys, "node", "show", "--state-dir", d)
    assert code == 1 and "unreadable" in err and "left in place" in err
    assert len(path.read_bytes()) == 100
    code, out, _ = dgxsim(capsys, "nvidia-smi", "--state-dir", d, "-L")
    assert code == 9 and "unusable" in out


def test_nvidia_smi_without_a_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dgxsim(capsys, "nvidia-smi", "--state-dir", str(tmp_path), "-L")
    assert code == 9 and "dgxsim node init" in out
