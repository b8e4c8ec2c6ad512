"""Container images for a real node, built on this machine: never pulled.

A kubelet needs a pause image for every pod sandbox, and the pods need an
image to run. No registry is reachable where dgxsim runs its real nodes, so
both are assembled here and handed to containerd as OCI image-layout archives
(``ctr images import``):

* the pause image: one static binary (a C program compiled with ``gcc
  -static``) that sleeps until SIGTERM and reaps orphans, as Kubernetes' own
  pause does;
* a Python image: a Debian root file system from ``debootstrap --variant=
  minbase`` with ``python3`` (cached once: the base layer), plus a second layer
  with wheels installed into ``/opt/python`` and launchers for their console
  scripts (rebuilt when the wheels change).

Archives are written with :mod:`tarfile`, uncompressed (a layer's digest is
then its diff ID) and with sorted members and fixed times, so the same input
gives the same digest. Everything lands in the per-user tools cache under
``images/``; a finished archive is reused by its input key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localkube.errors import ControlPlaneError
from localkube.toolchain import cache_dir

PAUSE_IMAGE = "registry.local/dgxsim/pause:3.10"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3",)
PYTHON_PREFIX = "/opt/python"
"""Where the image's wheels are installed (on ``PYTHONPATH`` in the image's config)."""
_EPOCH = 0

PAUSE_C = r"""
/* The sandbox's first process: waits for a signal, reaps orphans. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction stop = {.sa_handler = quit};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) pause();
    return 1;
}
"""

LAUNCHER = """#!/usr/bin/python3
import sys
sys.path.insert(0, "{prefix}")
from {module} import {attr}
sys.exit({attr}())
"""

Progress = Callable[[str], None]


class ImageError(ControlPlaneError):
    """An image could not be built; the message names the step and the missing tool."""


@dataclass(frozen=True)
class ImageArchive:
    """An OCI image-layout archive on disk and the reference it is imported as."""

    reference: str
    path: Path


def images_dir() -> Path:
    return cache_dir() / "images"


# ------------------------------------------------------------------ layout


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = _EPOCH if info.isdir() else info.mtime
    info.uname = info.gname = ""
    return info


def layer_from_dir(root: Path, dest: Path) -> None:
    """A layer tar of everything under ``root`` (paths relative to it, owners kept)."""
    paths: list[str] = []
    for top, dirs, files in os.walk(root, followlinks=False):
        rel = os.path.relpath(top, root)
        paths += [os.path.normpath(os.path.join(rel, n)) for n in (*dirs, *files)]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(paths):
            tar.add(root / rel, arcname=rel, recursive=False, filter=_normalise)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _EPOCH
    tar.addfile(info, io.BytesIO(data))


def write_oci_archive(dest: Path, reference: str, layers: Iterable[Path],
                      config: Mapping[str, object]) -> ImageArchive:
    """An OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256``) in a tar,
    named ``reference`` for containerd (``io.containerd.image.name``)."""
    layers = list(layers)
    layer_digests = [_file_sha(layer) for layer in layers]
    image_config = {
        "architecture": "amd64", "os": "linux", "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest, "size": layer.stat().st_size}
                   for digest, layer in zip(layer_digests, layers, strict=True)],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _sha(manifest_bytes), "size": len(manifest_bytes),
            "annotations": {"io.containerd.image.name": reference,
                            "org.opencontainers.image.ref.name": reference},
        }],
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        _add_bytes(tar, f"blobs/sha256/{_sha(config_bytes)[7:]}", config_bytes)
        _add_bytes(tar, f"blobs/sha256/{_sha(manifest_bytes)[7:]}", manifest_bytes)
        for digest, layer in zip(layer_digests, layers, strict=True):
            tar.add(layer, arcname=f"blobs/sha256/{digest[7:]}", filter=_normalise)
    os.replace(part, dest)
    return ImageArchive(reference, dest)


# ------------------------------------------------------------------ pause


def _run(argv: list[str], step: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise ImageError(f"{step}: {argv[0]} is not installed") from err
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ImageError(f"{step} failed (exit {result.returncode}): {' | '.join(tail)}")


def pause_image(progress: Progress = lambda _m: None) -> ImageArchive:
    """The pause image, compiled once per source text."""
    key = hashlib.sha256(PAUSE_C.encode()).hexdigest()[:16]
    dest = images_dir() / f"pause-{key}.tar"
    if dest.is_file():
        return ImageArchive(PAUSE_IMAGE, dest)
    progress("building the pause image (gcc -static)")
    with tempfile.TemporaryDirectory(prefix="dgxsim-pause-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "pause.c").write_text(PAUSE_C)
        root = tmp / "root"
        root.mkdir()
        _run(["gcc", "-static", "-Os", "-s", "-o", str(root / "pause"), str(tmp / "pause.c")],
             "compiling the pause binary")
        layer_from_dir(root, tmp / "layer.tar")
        return write_oci_archive(dest, PAUSE_IMAGE, [tmp / "layer.tar"],
                                 {"Entrypoint": ["/pause"], "User": "65535:65535"})


# ------------------------------------------------------------------ python image


def base_rootfs_layer(progress: Progress) -> Path:
    """A Debian minbase root file system with ``BASE_PACKAGES``, as one cached layer."""
    key = hashlib.sha256(f"{DEBIAN_SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:16]
    dest = images_dir() / f"debian-{DEBIAN_SUITE}-{key}.layer.tar"
    if dest.is_file():
        return dest
    if shutil.which("debootstrap") is None:
        raise ImageError("building the workload image needs debootstrap "
                         "(apt-get install debootstrap)")
    progress(f"building a Debian {DEBIAN_SUITE} root file system with "
             f"{', '.join(BASE_PACKAGES)} (debootstrap, once: a few minutes)")
    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dgxsim-rootfs-", dir=images_dir()) as tmp_s:
        root = Path(tmp_s) / "root"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              DEBIAN_SUITE, str(root), DEBIAN_MIRROR], "debootstrap")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*.deb"):
                entry.unlink()
        part = dest.with_name(dest.name + ".part")
        layer_from_dir(root, part)
        os.replace(part, dest)
    return dest


def _console_scripts(site: Path) -> dict[str, str]:
    """Console scripts of the wheels installed in ``site``: name -> ``module:attr``."""
    scripts: dict[str, str] = {}
    for entry_points in site.glob("*.dist-info/entry_points.txt"):
        section = ""
        for raw in entry_points.read_text().splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "console_scripts" and "=" in line:
                name, target = (part.strip() for part in line.split("=", 1))
                scripts[name] = target
    return scripts


def python_image(reference: str, wheels: list[Path], pip: list[str],
                 progress: Progress = lambda _m: None, entrypoint: str | None = None
                 ) -> ImageArchive:
    """Debian's python3 plus ``wheels`` (and their dependencies) installed with ``pip``
    (a pip of the same Python minor version as Debian's), their console scripts on PATH;
    ``entrypoint`` names one of them as the image's entrypoint."""
    digest = hashlib.sha256(f"{reference} {entrypoint}".encode())
    for wheel in sorted(wheels):
        digest.update(_file_sha(wheel).encode())
    base = base_rootfs_layer(progress)
    key = digest.hexdigest()[:16]
    dest = images_dir() / f"python-{key}.tar"
    if dest.is_file():
        return ImageArchive(reference, dest)
    progress(f"installing {', '.join(w.name for w in wheels)} into the workload image")
    with tempfile.TemporaryDirectory(prefix="dgxsim-app-", dir=images_dir()) as tmp_s:
        root = Path(tmp_s) / "root"
        site = root / PYTHON_PREFIX.lstrip("/")
        _run([*pip, "install", "--quiet", "--no-compile", "--target", str(site),
              *map(str, wheels)], "pip install into the workload image")
        shutil.rmtree(site / "bin", ignore_errors=True)
        bin_dir = root / "usr" / "local" / "bin"
        bin_dir.mkdir(parents=True)
        for name, target in _console_scripts(site).items():
            module, attr = target.split(":", 1)
            script = bin_dir / name
            script.write_text(LAUNCHER.format(prefix=PYTHON_PREFIX, module=module, attr=attr))
            script.chmod(0o755)
        app = Path(tmp_s) / "app.layer.tar"
        layer_from_dir(root, app)
        return write_oci_archive(dest, reference, [base, app], {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"PYTHONPATH={PYTHON_PREFIX}",
                    "PYTHONUNBUFFERED=1"],
        } | ({"Entrypoint": [entrypoint]} if entrypoint else {"Cmd": ["/bin/sh"]}))
