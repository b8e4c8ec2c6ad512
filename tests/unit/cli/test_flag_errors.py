"""A value the models refuse is reported with the flag the user typed, in one line.

Table-driven over the commands whose options become pydantic models: the
message names the flag as typed (``--nodes``, also in ``--nodes=0`` form) and
says what the value must be, not pydantic's field path and wording; a value
that came from no flag keeps its field path.
"""

from __future__ import annotations

import pytest

from dgxsim.cli import main
from dgxsim.flagerrors import flag_for

PREDICT = ["predict", "--workload", "gemm", "--gpu", "a100-40gb", "--precision", "fp16"]
CASES = [
    ([*PREDICT, "--nodes", "0"], "dgxsim predict: --nodes: must be at least 1, got 0"),
    ([*PREDICT, "--nodes=0"], "dgxsim predict: --nodes: must be at least 1, got 0"),
    ([*PREDICT, "--gpus-per-node", "-2"],
     "dgxsim predict: --gpus-per-node: must be at least 1, got -2"),
    ([*PREDICT, "--batch", "0"], "dgxsim predict: --batch: must be at least 1, got 0"),
    ([*PREDICT, "--seq-len", "0"], "dgxsim predict: --seq-len: must be at least 1, got 0"),
    ([*PREDICT, "--epoch", "0", "--nodes", "0"],
     "dgxsim predict: --nodes: must be at least 1, got 0 (and 1 more)"),
    (["operator", "--metrics-port", "70000"],
     "dgxsim operator: --metrics-port: must be at most 65535, got 70000"),
    (["operator", "--liveness-port", "0"],
     "dgxsim operator: --liveness-port: must be at least 1, got 0"),
    (["workload", "--workload", "gemm", "--steps", "0"],
     "dgxsim workload: --steps: must be at least 1, got 0"),
    (["workload", "--workload", "gemm", "--seq-len", "0"],
     "dgxsim workload: --seq-len: must be at least 1, got 0"),
]


@pytest.mark.parametrize(("argv", "line"), CASES, ids=[" ".join(c[0][:1] + c[0][-2:])
                                                        for c in CASES])
def test_refused_value_names_the_flag(argv: list[str], line: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert capsys.readouterr().err == line + "\n"


def test_a_value_from_the_environment_keeps_its_field_path(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DGXSIM_OPERATOR_DYNAMIC__INTERVAL_S", "soon")
    assert main(["operator"]) == 1
    assert capsys.readouterr().err == ("dgxsim operator: dynamic.interval_s: must be a number, "
                                       "got 'soon'\n")


@pytest.mark.parametrize(("loc", "argv", "flag"), [
    (("nodes",), ["--nodes", "0"], "--nodes"),
    (("gpus_per_node",), ["--gpus-per-node=0"], "--gpus-per-node"),
    (("metrics", "port"), ["--metrics-port", "1"], "--metrics-port"),
    (("metrics", "liveness_port"), ["--liveness-port", "0"], "--liveness-port"),
    (("params", 0, 1), ["--param", "m=x"], None),
    (("nodes",), [], None),
    (("nodes",), ["--nodesx", "1"], None),
])
def test_flag_for(loc: tuple[int | str, ...], argv: list[str], flag: str | None) -> None:
    assert flag_for(loc, argv) == flag
