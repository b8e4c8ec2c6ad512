"""Every number a user types is checked at the door, in one line that names the flag.

Table-driven over the numeric options of every command and ``predict --param``:
values that are not finite (``nan``, ``inf``, ``1e308``), out of the hardware's
range (a DGX A100 has 8 GPUs; ports end at 65535; a wait or a time scale has a
ceiling) or unknown to the workload. argparse refuses what its option types
refuse (exit 2, ``argument --flag: ...``); the commands refuse the rest (exit 1,
``dgxsim CMD: --flag ...``). No case prints a traceback, and a command refused
changes nothing: a node's state file stays byte for byte what it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxsim.cli import main

PREDICT = ["predict", "--workload", "gemm", "--gpu", "a100-40gb", "--precision", "fp16"]
USAGE = [
    (["up", "--nodes", "20000"], "argument --nodes: must be 0 to 10000, got 20000"),
    (["up", "--nodes", "-1"], "argument --nodes: must be 0 to 10000, got -1"),
    (["up", "--nodes", "1e3"], "argument --nodes: '1e3' is not a whole number"),
    (["up", "--apiserver-port", "70000"], "argument --apiserver-port: must be 0 to 65535"),
    (["up", "--time-scale", "nan"], "argument --time-scale: must be a finite number"),
    (["up", "--time-scale", "inf"], "argument --time-scale: must be a finite number"),
    (["up", "--time-scale", "1e308"], "argument --time-scale: must be a finite number"),
    (["up", "--time-scale", "0"], "argument --time-scale: must be a finite number more than 0"),
    (["agent", "--kubeconfig", "k", "--nodes", "99999"], "argument --nodes: must be 0 to"),
    (["node", "run", "--node-name", "n", "--time-scale", "-1"],
     "argument --time-scale: must be a finite number more than 0"),
    (["mig", "apply", "x", "--timeout", "nan"], "argument --timeout: must be a finite number"),
    (["mig", "apply", "x", "--timeout", "-5"], "argument --timeout: must be a finite number at "
                                               "least 0"),
    (["fault", "inject", "--gpu", "-1"], "argument --gpu: must be 0 to"),
    ([*PREDICT, "--nodes", "x"], "argument --nodes: invalid int value: 'x'"),
]
REFUSED = [
    ([*PREDICT, "--param", "m=nan"], "--param m=nan: not a finite number"),
    ([*PREDICT, "--param", "m=inf"], "--param m=inf: not a finite number"),
    ([*PREDICT, "--param", "m=1e308"], "--param m=1e+308 must be a finite number in"),
    ([*PREDICT, "--param", "m=-1"], "--param m=-1.0 must be a finite number in"),
    ([*PREDICT, "--param", "mm=64"], "--param mm is not one of gemm's (it reads: k, m, n)"),
    (["predict", "--workload", "allreduce", "--gpu", "a100-40gb", "--precision", "fp16",
      "--param", "bytes=-1"], "--param bytes=-1.0 must be a finite number in 1..1e+15"),
    ([*PREDICT, "--gpus-per-node", "100000"], "--gpus-per-node: must be at most 56"),
    ([*PREDICT, "--gpus-per-node", "9"], "--gpus-per-node 9 exceeds the 8 GPUs"),
    ([*PREDICT, "--nodes", "100000"], "--nodes: must be at most 10000, got 100000"),
    ([*PREDICT, "--batch", "99999999999"], "--batch: must be at most 1048576"),
    ([*PREDICT, "--seq-len", "99999999999"], "--seq-len: must be at most 1048576"),
    ([*PREDICT, "--epoch", "0"], "--epoch: must be at least 1, got 0"),
    (["workload", "--workload", "gemm", "--steps", "2000000000"],
     "--steps: must be at most 1000000000"),
    (["workload", "--workload", "gemm", "--batch", "4000000"], "--batch: must be at most"),
    (["operator", "--metrics-port", "70000"], "--metrics-port: must be at most 65535"),
]


@pytest.mark.parametrize(("argv", "words"), USAGE, ids=[" ".join(c[0]) for c in USAGE])
def test_option_types_refuse_the_value_naming_the_flag(
        argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "words"), REFUSED, ids=[" ".join(c[0][-2:]) for c in REFUSED])
def test_commands_refuse_the_value_naming_the_flag(
        argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1, "one line"


@pytest.mark.parametrize("content", [
    bytes(range(256)), b"\xff\xfe\x00v\x00e\x00r", b"version: v1\nmig-configs:\n  x: \xc3\x28\n",
], ids=["binary", "utf16", "broken-utf8"])
def test_a_binary_mig_config_is_one_line_and_changes_nothing(
        tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node"
    assert main(["node", "init", "--state-dir", str(node)]) == 0
    before = (node / "node.json").read_bytes()
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    capsys.readouterr()
    assert main(["mig", "apply", "all-1g.5gb", "--config", str(config),
                 "--state-dir", str(node)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dgxsim mig: {config}: not a mig-parted config")
    assert "UTF-8" in err and err.count("\n") == 1
    assert (node / "node.json").read_bytes() == before
