"""``--dra``: the modes, and the refusal of a named MIG layout in dynamic mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxsim.cli import main


@pytest.mark.parametrize("command", ["up", "agent"])
def test_dynamic_dra_refuses_a_named_mig_layout(command: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, "--state-dir", str(tmp_path), "--nodes", "1", "--dra", "dynamic",
            "--mig-config", "all-1g.5gb"]
    if command == "agent":
        argv += ["--kubeconfig", str(tmp_path / "kubeconfig")]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dra dynamic" in err[0] and "--mig-config all-1g.5gb" in err[0]


def test_an_unknown_dra_mode_is_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--state-dir", str(tmp_path), "--dra", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
