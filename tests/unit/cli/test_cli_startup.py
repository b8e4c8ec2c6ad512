"""The CLI imports what a command needs when it runs, and matplotlib only to draw.

Start-up time is what a user feels on every command; it comes from imports, so
these tests guard the imports rather than the time (a timing assertion would
fail on a loaded machine and pass on a fast one). Each check runs in a fresh
interpreter, since this test process has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dgxsim.cli import main
from dgxsim.commands import PLOT_EXTRA_HINT, CommandError, pyplot

HEAVY = ("aiohttp", "httpx", "kubernetes_asyncio", "kopf", "grpc", "cryptography",
         "matplotlib", "localkube.cluster")
"""Imported only by commands that talk to a cluster, a node or a plotting backend."""

COMPONENTS = ("dgxnode", "deviceplugin", "migoperator", "localkube", "kubewire")
"""The project's components: none is needed to build the parser."""

MODEL = ("pydantic", "yaml", "asyncio", "gpumodel.perf", "gpumodel.gpus")
"""What running a prediction needs and printing the help does not."""

PREDICT = ["predict", "--workload", "gemm", "--gpu", "a100-40gb", "--precision", "fp16",
           "--param", "m=4096"]
PUBLISHED_CSV = Path(__file__).resolve().parents[3] / "validation" / "published.csv"


def modules_after(code: str, tmp_path: Path) -> set[str]:
    """The names in ``sys.modules`` after ``code`` ran in a fresh interpreter; ``code``
    prints them as a JSON list on the last line of stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.fixture(scope="module")
def parser_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return modules_after("import dgxsim.cli, json, sys; dgxsim.cli.build_parser(); "
                         "print(json.dumps(sorted(sys.modules)))",
                         tmp_path_factory.mktemp("parser"))


@pytest.fixture(scope="module")
def predict_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return modules_after(f"import dgxsim.cli, json, sys; code = dgxsim.cli.main({PREDICT!r}); "
                         "print(json.dumps(sorted(sys.modules) if code == 0 else []))",
                         tmp_path_factory.mktemp("predict"))


@pytest.mark.parametrize("name", HEAVY + COMPONENTS + MODEL)
def test_building_the_parser_imports_no_client_node_or_plotting(
        parser_modules: set[str], name: str) -> None:
    assert "dgxsim.commands.cluster" in parser_modules  # every command module registered
    assert not loaded(parser_modules, name)


@pytest.mark.parametrize("name", HEAVY + COMPONENTS)
def test_predict_imports_the_performance_model_and_nothing_heavy(
        predict_modules: set[str], name: str) -> None:
    assert "gpumodel.perf.model" in predict_modules  # the prediction ran
    assert not loaded(predict_modules, name)


def test_pyplot_without_matplotlib_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what a missing package looks like
    with pytest.raises(CommandError, match=r"matplotlib, which is not installed"):
        pyplot()


def test_validate_plot_without_matplotlib_fails_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = PUBLISHED_CSV.read_text().splitlines()[:2]
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code = main(["validate", str(tmp_path / "rows.csv"), "--plot", str(tmp_path / "v.png")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and PLOT_EXTRA_HINT in err
    assert not (tmp_path / "v.png").exists()
