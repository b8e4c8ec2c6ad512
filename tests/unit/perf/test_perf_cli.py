"""``dgxsim predict`` and ``dgxsim validate`` end to end (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from perf_rows import COMMITTED_CSV

from dgxsim.cli import main


def test_validate_json_has_mape_and_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(COMMITTED_CSV), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mape"] <= 5
    assert {"id", "predicted", "published", "error_pct"} <= set(out["rows"][0])
    assert len(out["rows"]) == 34 and out["unpredictable"] == []


def test_validate_lists_unpredictable_rows(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lines = COMMITTED_CSV.read_text().splitlines()
    bad = lines[1].replace("P01,", "X1,").replace("a100-40gb", "b200")
    unparsable = lines[2].replace("P02,", "X2,").replace(",8,1,", ",eight,1,")
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([lines[0], lines[3], bad, unparsable]) + "\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "X1    cannot predict: unknown device 'b200'" in out
    assert "X2    cannot predict: gpus_per_node" in out
    assert "MAPE" in out


def test_validate_plot_and_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "v.png"
    assert main(["validate", str(COMMITTED_CSV), "--plot", str(png), "--claims"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert out.count("[holds]") == 6 and "DOES NOT HOLD" not in out
    for text in ("6x", "172x", "7x one V100", "600 GB/s", "3.2 Tb/s", "5 PetaFLOPS"):
        assert text in out


def test_validate_needs_a_file_or_claims(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 1
    assert "give a CSV file" in capsys.readouterr().err


def test_predict_prints_throughput_and_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--workload", "bert-large-pretrain", "--gpu", "a100-40gb",
                 "--gpus-per-node", "8", "--precision", "fp16", "--batch", "64"]) == 0
    out = capsys.readouterr().out
    for text in ("samples/s", "step time", "latency", "compute", "communication exposed",
                 "communication overlapped", "I/O"):
        assert text in out


def test_predict_json_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--workload", "gemm", "--gpu", "h100-80gb", "--precision", "bf16",
                 "--param", "m=4096", "--param", "n=4096", "--param", "k=4096", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tflops"] > 100 and out["request"]["params"] == [["k", 4096.0], ["m", 4096.0],
                                                                ["n", 4096.0]]


@pytest.mark.parametrize(("args", "message"), [
    (["--gpu", "v100-16gb", "--precision", "tf32"], "no tf32"),
    (["--gpu", "a100-40gb", "--precision", "fp16", "--mig-profile", "9g.90gb"], "9g.90gb"),
    (["--gpu", "a100-40gb", "--precision", "fp16", "--param", "novalue"], "KEY=VALUE"),
    (["--gpu", "a100-40gb", "--precision", "fp16", "--batch", "0"], "--batch: must be at least 1"),
])
def test_predict_errors_are_one_line(args: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--workload", "bert-large-inference", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(("workload", "args", "flag"), [
    ("gemm", ["--param", "m=nan"], "--param m=nan"),
    ("gemm", ["--param", "m=inf"], "--param m=inf"),
    ("gemm", ["--param", "m=1e308"], "--param m="),
    ("gemm", ["--param", "k=0"], "--param k="),
    ("allreduce", ["--param", "bytes=-1", "--gpus-per-node", "8"], "--param bytes="),
    ("allreduce", ["--param", "bytes=1e308", "--gpus-per-node", "8"], "--param bytes="),
    ("allreduce", ["--gpus-per-node", "9"], "--gpus-per-node"),
    ("bert-large-inference", ["--mig-profile", "1g.5gb", "--gpus-per-node", "57"],
     "--gpus-per-node"),
    ("gemm", ["--nodes", "0"], "--nodes"),
])
def test_bad_numbers_are_refused_naming_the_flag(workload: str, args: list[str], flag: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--workload", workload, "--gpu", "a100-40gb", "--precision", "fp16",
                 *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert flag in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_a_parameter_yaml_read_as_a_boolean_is_named_with_the_fix() -> None:
    """kubectl reads a bare YAML key ``n`` as ``false``: the refusal says to quote it."""
    from gpumodel.perf import PerfError, PerfRequest, predict

    request = PerfRequest(workload="gemm", gpu="a100-40gb", precision="fp64",
                          params=(("false", 16384), ("k", 16384), ("m", 16384)))
    with pytest.raises(PerfError, match="reads as a boolean: quote it"):
        predict(request)
