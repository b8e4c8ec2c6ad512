"""One distribution ships its packages under their own names; none is shadowed by a folder
or shadows the stdlib, and a plain editable install works from any directory."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gpumodel", "kubeletapi", "kubewire", "localkube", "dgxnode", "deviceplugin",
            "migoperator", "dgxsim")
SOURCE_ROOTS = ("simnode", "plugin", "operator")


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


def test_no_package_is_named_like_the_folder_that_holds_it() -> None:
    for root in SOURCE_ROOTS:
        assert not (REPO_ROOT / root / root).exists(), f"{root}/{root} would be shadowed"


@pytest.mark.parametrize("cwd", [REPO_ROOT, Path("/")], ids=["repo-root", "filesystem-root"])
def test_every_package_resolves_to_the_checkout_from_any_directory(cwd: Path) -> None:
    code = f"import importlib; print(*(importlib.import_module(n).__file__ for n in {PACKAGES!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                         text=True, check=True).stdout.split()
    for name, path in zip(PACKAGES, out, strict=True):
        assert Path(path).parent.name == name
        assert Path(path).is_relative_to(REPO_ROOT), (name, path)


def test_the_install_needs_no_path_file_of_its_own() -> None:
    """The editable install is pip's own: no hand-written ``.pth`` outlives an uninstall."""
    site = Path(sysconfig.get_paths()["purelib"])
    assert not (site / "dgxsim-source-roots.pth").exists()


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
            "import gpumodel.gpus, dgxsim.cli, localkube.toolchain as t; "
            "print(gpumodel.gpus.__file__); print(gpumodel.gpus.device('a100-40gb').sms); "
            "print(t.tools_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "108"
    assert not out[2].startswith(str(target)), "binaries never go into site-packages"
