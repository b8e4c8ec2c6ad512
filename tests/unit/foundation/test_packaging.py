"""One distribution ships four packages with their own names; none shadows the stdlib."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gpumodel", "simnode", "deviceplugin", "migoperator", "dgxsim")


def test_import_operator_from_the_repository_root_is_the_stdlib_module() -> None:
    code = ("import operator, sysconfig; "
            "print(operator.__file__); print(hasattr(operator, 'itemgetter'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    stdlib = Path(subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    assert Path(out[0]).parent == stdlib
    assert out[1] == "True"


def test_from_the_repository_root_simnode_is_the_package_not_the_folder() -> None:
    code = "import simnode, gpumodel.gpus; print(simnode.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == str(REPO_ROOT / "simnode" / "simnode" / "__init__.py")


def test_every_package_imports_from_the_editable_install() -> None:
    for name in PACKAGES:
        module = __import__(name)
        assert Path(module.__file__ or "").is_relative_to(REPO_ROOT), name


@pytest.mark.slow
def test_wheel_holds_the_packages_data_and_console_script(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(REPO_ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("dgxsim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    assert not any(n.startswith("operator/") for n in names)
    assert "gpumodel/catalog/gpus.yaml" in names
    assert "gpumodel/catalog/systems.yaml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dgxsim = dgxsim.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # Installed from the wheel (not the source tree), the packages import and read their data.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); "
            "import gpumodel.gpus, dgxsim.cli; "
            "print(gpumodel.gpus.__file__); print(gpumodel.gpus.device('a100-40gb').sms)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "108"
