"""``dgxsim up`` gets the binaries it lacks (an installed wheel has no ``make tools``),
and leaves a tools folder the user named alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dgxsim.commands import cluster
from localkube import toolchain


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "etcd").write_text("present")
    monkeypatch.setattr(toolchain, "bin_dir", lambda: tmp_path / "bin")
    monkeypatch.setattr(toolchain, "ensure_tools", calls.append)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/kubectl" if name == "kubectl"
                        else None)
    monkeypatch.delenv("DGXSIM_TOOLS_DIR", raising=False)
    return calls


def test_up_gets_only_the_binaries_neither_the_tools_folder_nor_path_has(
        asked: list[tuple[str, ...]]) -> None:
    cluster._ensure_binaries()
    assert asked == [("kube-apiserver", "kube-controller-manager", "kube-scheduler")]


def test_a_tools_folder_the_user_named_is_left_alone(
        asked: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DGXSIM_TOOLS_DIR", str(tmp_path))
    cluster._ensure_binaries()
    assert asked == []
