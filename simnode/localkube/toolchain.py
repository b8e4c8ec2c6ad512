"""Build (or fetch) the Kubernetes binaries dgxsim runs: one pinned release.

Why this exists: dgxsim's embedded default and its tests run a real control
plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) as local
processes, plus kubectl and helm. Machines without a container engine or
without access to release downloads still have the Go module proxy, so the
binaries are built from Go modules:

* Kubernetes: a wrapper module requires ``k8s.io/kubernetes`` and replaces
  every staging module that the release's own ``go.mod`` points at
  ``./staging/...`` with its published ``v0.Y.Z`` tag. The list is read from
  the release's ``go.mod``, never written down here.
* etcd: a second wrapper with a ``main`` that calls ``etcdmain.Main``; the
  server module's relative replaces are turned into published tags the same way.
* helm: built from its module with the same ldflags its Makefile sets.
* kwok (on demand only, for ``bench/scale.py``): SIG Scheduling's fake
  kubelet, ``sigs.k8s.io/kwok/cmd/kwok``, with the version ldflags of its
  release script. ``make tools`` leaves it out; ``python -m localkube.toolchain
  kwok`` (or :func:`ensure_tools` naming it) builds it.

Binaries go to ``.tools/bin``. A stamp per binary records the pin it was built
from, so a rebuild happens only when a pin changes. Built binaries are also
kept in a per-user cache keyed by the pin, so a fresh clone on the same machine
copies instead of compiling. Where Go is missing but the network is reachable
the official release binaries are downloaded instead.

This module uses the standard library only: ``make tools`` runs it before any
virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
CONTAINERD_VERSION = "v2.4.2"
KWOK_VERSION = "v0.7.0"

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL_TOOLS = (*KUBE_COMMANDS, "etcd", "helm")
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
# Built only on demand (``python -m localkube.toolchain --real-node``): a real node's
# kubelet and container runtime. The default ``make tools`` stays fast without them.
REAL_NODE_TOOLS = ("kubelet", *CONTAINERD_COMMANDS)
# Built only when asked for by name (the scale benchmark's KWOK).
ON_DEMAND_TOOLS = ("kwok",)
KNOWN_TOOLS = (*ALL_TOOLS, *REAL_NODE_TOOLS, *ON_DEMAND_TOOLS)

REPO_ROOT = Path(__file__).resolve().parents[2]


class ToolchainError(RuntimeError):
    """A tool could not be built or fetched; the message says what to do."""


@dataclass(frozen=True)
class ToolPin:
    """What one binary is built from; its ``key`` is written to the stamp."""

    name: str
    source: str
    version: str

    @property
    def key(self) -> str:
        return f"{self.source}@{self.version} {platform.system().lower()}/{_goarch()}"


def pins() -> dict[str, ToolPin]:
    table = {c: ToolPin(c, "k8s.io/kubernetes", KUBERNETES_VERSION) for c in KUBE_COMMANDS}
    table["etcd"] = ToolPin("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION)
    table["helm"] = ToolPin("helm", "helm.sh/helm/v3", HELM_VERSION)
    table.update(real_node_pins())
    table.update(on_demand_pins())
    return table


def _in_checkout() -> bool:
    """True when this module runs from a source checkout (an editable install)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "simnode").is_dir()


def tools_dir() -> Path:
    """``DGXSIM_TOOLS_DIR``; else ``.tools`` of the checkout; else, from an installed
    wheel, a per-user data folder (``$XDG_DATA_HOME/dgxsim/tools``)."""
    explicit = os.environ.get("DGXSIM_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    if _in_checkout():
        return REPO_ROOT / ".tools"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "dgxsim" / "tools"


def bin_dir() -> Path:
    return tools_dir() / "bin"


def cache_dir() -> Path:
    base = os.environ.get("DGXSIM_TOOLS_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "dgxsim" / "tools"


def _goarch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _say(message: str) -> None:
    print(f"[tools] {message}", flush=True)


# ----------------------------------------------------------------- freshness


def _stamp_path(name: str) -> Path:
    return bin_dir() / ".stamps" / name


def is_current(pin: ToolPin) -> bool:
    binary = bin_dir() / pin.name
    stamp = _stamp_path(pin.name)
    return binary.is_file() and stamp.is_file() and stamp.read_text().strip() == pin.key


def missing_tools(names: tuple[str, ...] = ALL_TOOLS) -> list[str]:
    table = pins()
    return [n for n in names if not is_current(table[n])]


def _install(pin: ToolPin, built: Path) -> None:
    """Copy a built binary into the cache and into .tools/bin, then stamp it."""
    cached = _cache_slot(pin) / pin.name
    if built.resolve() != cached.resolve():
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, cached.with_suffix(".part"))
        os.replace(cached.with_suffix(".part"), cached)
    _place(pin, cached)


def _place(pin: ToolPin, source: Path) -> None:
    target = bin_dir() / pin.name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{pin.name}.part")
    shutil.copy2(source, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, target)
    _stamp_path(pin.name).parent.mkdir(parents=True, exist_ok=True)
    _stamp_path(pin.name).write_text(pin.key + "\n")


def _cache_slot(pin: ToolPin) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pin.key)
    return cache_dir() / slug


# ---------------------------------------------------------------- go helpers


def _go() -> str | None:
    return shutil.which("go")


def _run_go(args: list[str], cwd: Path, label: str, env: dict[str, str] | None = None) -> None:
    """Run a go command, printing a progress line every 15 s while it works."""
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    compiled: list[str] = []
    proc = subprocess.Popen(
        ["go", *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(15):
            last = compiled[-1] if compiled else "resolving modules"
            _say(f"{label}: {int(time.monotonic() - started)}s, "
                 f"{len(compiled)} packages compiled (last: {last})")

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    for line in proc.stdout:
        output.append(line)
        stripped = line.strip()
        if stripped and " " not in stripped and not stripped.startswith("go:"):
            compiled.append(stripped)
    rc = proc.wait()
    stop.set()
    if rc != 0:
        tail = "".join(output[-30:])
        raise ToolchainError(f"{label} failed (go {' '.join(args[:2])} exited {rc}):\n{tail}")
    _say(f"{label}: done in {int(time.monotonic() - started)}s")


def _module_gomod(module: str, version: str, workdir: Path) -> str:
    """Fetch a module's go.mod through the module proxy and return its text."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=workdir, capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise ToolchainError(f"cannot fetch {module}@{version}: {out.stdout}{out.stderr}".strip())
    info = json.loads(out.stdout)
    if "Error" in info:
        raise ToolchainError(f"cannot fetch {module}@{version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def _go_directive(gomod: str) -> str:
    match = re.search(r"^go (\S+)", gomod, re.M)
    return match.group(1) if match else "1.24"


def staging_replaces(kubernetes_gomod: str, kube_version: str) -> dict[str, str]:
    """Every ``k8s.io/x => ./staging/...`` replace of a release, mapped to ``v0.Y.Z``."""
    names = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+=>\s+\./staging/", kubernetes_gomod, re.M)
    if not names:
        raise ToolchainError("k8s.io/kubernetes go.mod lists no staging modules")
    staging_tag = "v0." + kube_version.removeprefix("v").split(".", 1)[1]
    return {name: staging_tag for name in sorted(set(names))}


def relative_replaces(gomod: str, version: str) -> dict[str, str]:
    """Every ``module => ../dir`` replace of a multi-module repo, mapped to ``version``."""
    names = re.findall(r"^\s*(go\.etcd\.io/[\w.\-/]+)\s+=>\s+\.\./", gomod, re.M)
    return {name: version for name in sorted(set(names))}


def _write_wrapper(
    workdir: Path, module: str, require: dict[str, str], replaces: dict[str, str],
    go_version: str, main_go: str | None = None,
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", f"go {go_version}", "", "require ("]
    lines += [f"\t{m} {v}" for m, v in require.items()] + [")", ""]
    if replaces:
        lines += ["replace ("] + [f"\t{m} => {m} {v}" for m, v in replaces.items()] + [")", ""]
    new = "\n".join(lines)
    gomod = workdir / "go.mod"
    if not gomod.exists() or gomod.read_text() != new:
        gomod.write_text(new)
        (workdir / "go.sum").unlink(missing_ok=True)
    if main_go is not None:
        (workdir / "main.go").write_text(main_go)


def version_ldflags(kube_version: str) -> str:
    major, minor = kube_version.removeprefix("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={kube_version}", f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


# -------------------------------------------------------------- go builders


def build_kubernetes(names: list[str]) -> None:
    work = tools_dir() / "src" / "kubernetes"
    work.mkdir(parents=True, exist_ok=True)
    _say(f"resolving k8s.io/kubernetes {KUBERNETES_VERSION} staging modules")
    gomod = _module_gomod("k8s.io/kubernetes", KUBERNETES_VERSION, work)
    replaces = staging_replaces(gomod, KUBERNETES_VERSION)
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in KUBE_COMMANDS)
    _write_wrapper(
        work, "dgxsim.local/kubetools", {"k8s.io/kubernetes": KUBERNETES_VERSION}, replaces,
        _go_directive(gomod),
    )
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run_go(["mod", "tidy"], work, "go mod tidy (kubernetes)")
    out = work / "out"
    out.mkdir(exist_ok=True)
    for name in names:
        _run_go(
            ["build", "-v", "-trimpath", "-ldflags", f"-s -w {version_ldflags(KUBERNETES_VERSION)}",
             "-o", str(out / name), f"k8s.io/kubernetes/cmd/{name}"],
            work, f"building {name} {KUBERNETES_VERSION}",
        )
        _install(pins()[name], out / name)


ETCD_MAIN = """// Command etcd starts the etcd server of the pinned go.etcd.io/etcd/server/v3.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
"""


def build_etcd() -> None:
    work = tools_dir() / "src" / "etcd"
    work.mkdir(parents=True, exist_ok=True)
    _say(f"resolving go.etcd.io/etcd/server/v3 {ETCD_VERSION}")
    gomod = _module_gomod("go.etcd.io/etcd/server/v3", ETCD_VERSION, work)
    replaces = relative_replaces(gomod, ETCD_VERSION)
    _write_wrapper(
        work, "dgxsim.local/etcd", {"go.etcd.io/etcd/server/v3": ETCD_VERSION}, replaces,
        _go_directive(gomod), ETCD_MAIN,
    )
    _run_go(["mod", "tidy"], work, "go mod tidy (etcd)")
    binary = work / "out" / "etcd"
    _run_go(["build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
            work, f"building etcd {ETCD_VERSION}")
    _install(pins()["etcd"], work / "out" / "etcd")


def helm_ldflags(helm_gomod: str) -> str:
    match = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", helm_gomod, re.M)
    if not match:
        raise ToolchainError("helm go.mod does not name k8s.io/client-go")
    minor = match.group(1)
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def build_helm() -> None:
    work = tools_dir() / "src" / "helm"
    work.mkdir(parents=True, exist_ok=True)
    gomod = _module_gomod("helm.sh/helm/v3", HELM_VERSION, work)
    out = work / "out"
    _run_go(
        ["install", "-v", "-trimpath", "-ldflags", helm_ldflags(gomod),
         f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
        work, f"building helm {HELM_VERSION}", env={"GOBIN": str(out)},
    )
    _install(pins()["helm"], out / "helm")



# ---------------------------------------------------------- real-node tools


def real_node_pins() -> dict[str, ToolPin]:
    """The kubelet (same Kubernetes release as the control plane) and containerd 2."""
    table = {"kubelet": ToolPin("kubelet", "k8s.io/kubernetes", KUBERNETES_VERSION)}
    for name in CONTAINERD_COMMANDS:
        table[name] = ToolPin(name, "github.com/containerd/containerd/v2", CONTAINERD_VERSION)
    return table


def build_kubelet() -> None:
    """The kubelet from the same wrapper recipe as the control plane, in a folder of its
    own so the default tools' module graph stays as it is."""
    work = tools_dir() / "src" / "kubelet"
    work.mkdir(parents=True, exist_ok=True)
    _say(f"resolving k8s.io/kubernetes {KUBERNETES_VERSION} staging modules (kubelet)")
    gomod = _module_gomod("k8s.io/kubernetes", KUBERNETES_VERSION, work)
    _write_wrapper(
        work, "dgxsim.local/kubelet", {"k8s.io/kubernetes": KUBERNETES_VERSION},
        staging_replaces(gomod, KUBERNETES_VERSION), _go_directive(gomod),
    )
    (work / "tools.go").write_text(
        '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n'
    )
    _run_go(["mod", "tidy"], work, "go mod tidy (kubelet)")
    out = work / "out" / "kubelet"
    _run_go(
        ["build", "-v", "-trimpath", "-ldflags", f"-s -w {version_ldflags(KUBERNETES_VERSION)}",
         "-o", str(out), "k8s.io/kubernetes/cmd/kubelet"],
        work, f"building kubelet {KUBERNETES_VERSION}",
    )
    _install(pins()["kubelet"], out)


def containerd_ldflags() -> str:
    pkg = "github.com/containerd/containerd/v2"
    return (f"-s -w -X {pkg}/version.Version={CONTAINERD_VERSION} "
            f"-X {pkg}/version.Package=github.com/containerd/containerd")


def build_containerd() -> None:
    """containerd, its runc shim and ctr, as its Makefile builds them: static (no cgo, so
    no btrfs snapshotter), without generated docs. The module has no replaces, so
    ``go install module/cmd/x@version`` builds exactly the release's dependency graph."""
    work = tools_dir() / "src" / "containerd"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    module = "github.com/containerd/containerd/v2"
    _run_go(
        ["install", "-v", "-trimpath", "-tags", "urfave_cli_no_docs no_btrfs",
         "-ldflags", containerd_ldflags(),
         *(f"{module}/cmd/{name}@{CONTAINERD_VERSION}" for name in CONTAINERD_COMMANDS)],
        work, f"building containerd {CONTAINERD_VERSION}",
        env={"GOBIN": str(out), "CGO_ENABLED": "0"},
    )
    for name in CONTAINERD_COMMANDS:
        _install(pins()[name], out / name)


def build_real_node_tools(todo: list[str]) -> None:
    if not _go():
        raise ToolchainError(
            "cannot build " + ", ".join(todo) + ": the real-node tools are built from the Go "
            "module proxy; install Go 1.26 or newer"
        )
    if "kubelet" in todo:
        build_kubelet()
    if any(name in CONTAINERD_COMMANDS for name in todo):
        build_containerd()


# ---------------------------------------------------------- on-demand tools


def on_demand_pins() -> dict[str, ToolPin]:
    return {"kwok": ToolPin("kwok", "sigs.k8s.io/kwok", KWOK_VERSION)}


def kwok_ldflags() -> str:
    return f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.removeprefix('v')}"


def build_kwok() -> None:
    """``sigs.k8s.io/kwok/cmd/kwok`` at the pin (its module has no replaces: go install works)."""
    work = tools_dir() / "src" / "kwok"
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out"
    _run_go(
        ["install", "-v", "-trimpath", "-ldflags", kwok_ldflags(),
         f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"],
        work, f"building kwok {KWOK_VERSION}", env={"GOBIN": str(out)},
    )
    _install(pins()["kwok"], out / "kwok")


# ------------------------------------------------------------ downloads


def _download(url: str, dest: Path) -> None:
    _say(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as fh:  # noqa: S310
        shutil.copyfileobj(resp, fh)


def _extract_member(archive: Path, member_suffix: str, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith(member_suffix):
                src = tar.extractfile(member)
                if src is None:
                    continue
                with open(dest, "wb") as fh:
                    shutil.copyfileobj(src, fh)
                return
    raise ToolchainError(f"{archive.name} has no {member_suffix}")


def download_official(names: list[str]) -> None:
    arch, osname = _goarch(), platform.system().lower()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in names:
            target = tmp / name
            if name in KUBE_COMMANDS:
                _download(f"https://dl.k8s.io/release/{KUBERNETES_VERSION}/bin/{osname}/{arch}/{name}",
                          target)
            elif name == "etcd":
                stem = f"etcd-{ETCD_VERSION}-{osname}-{arch}"
                _download(f"https://github.com/etcd-io/etcd/releases/download/{ETCD_VERSION}/"
                          f"{stem}.tar.gz", tmp / "etcd.tgz")
                _extract_member(tmp / "etcd.tgz", f"{stem}/etcd", target)
            elif name == "kwok":
                _download(f"https://github.com/kubernetes-sigs/kwok/releases/download/"
                          f"{KWOK_VERSION}/kwok-{osname}-{arch}", target)
            else:
                _download(f"https://get.helm.sh/helm-{HELM_VERSION}-{osname}-{arch}.tar.gz",
                          tmp / "helm.tgz")
                _extract_member(tmp / "helm.tgz", f"{osname}-{arch}/helm", target)
            _install(pins()[name], target)


def _network_reachable() -> bool:
    try:
        urllib.request.urlopen("https://dl.k8s.io/release/stable.txt", timeout=5)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ entry


def ensure_tools(names: tuple[str, ...] = ALL_TOOLS, force: bool = False) -> None:
    """Make every named binary current in .tools/bin, building only what changed."""
    table = pins()
    todo = [n for n in names if force or not is_current(table[n])]
    for name in list(todo):
        cached = _cache_slot(table[name]) / name
        if not force and cached.is_file():
            _place(table[name], cached)
            _say(f"{name}: copied from cache {cached.parent}")
            todo.remove(name)
    real = [n for n in todo if n in REAL_NODE_TOOLS]
    if real:
        build_real_node_tools(real)
        todo = [n for n in todo if n not in REAL_NODE_TOOLS]
    if not todo:
        _say(f"all tools current in {bin_dir()}")
        return
    if _go():
        kube = [n for n in todo if n in KUBE_COMMANDS]
        if kube:
            build_kubernetes(kube)
        if "etcd" in todo:
            build_etcd()
        if "helm" in todo:
            build_helm()
        if "kwok" in todo:
            build_kwok()
    elif _network_reachable():
        download_official(todo)
    else:
        raise ToolchainError(
            "cannot get " + ", ".join(todo) + ": install Go 1.24 or newer (to build them from "
            "the Go module proxy) or give this machine internet access (to download releases)"
        )
    _say(f"tools ready in {bin_dir()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgxsim-tools", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    parser.add_argument("--check", action="store_true", help="only report what is missing")
    parser.add_argument("--real-node", action="store_true",
                        help=f"the real-node tools: {', '.join(REAL_NODE_TOOLS)}")
    parser.add_argument("tools", nargs="*", metavar="TOOL",
                        help=f"subset of {', '.join(ALL_TOOLS)} (default: all of them), "
                        f"or {', '.join((*REAL_NODE_TOOLS, *ON_DEMAND_TOOLS))}, "
                        "built only when named")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(KNOWN_TOOLS))
    if unknown:
        parser.error(f"unknown tool {', '.join(unknown)}; known: {', '.join(KNOWN_TOOLS)}")
    names = tuple(args.tools) + (REAL_NODE_TOOLS if args.real_node else ())
    names = names or ALL_TOOLS
    if args.check:
        missing = missing_tools(names)
        for name in missing:
            print(f"missing or stale: {name}")
        return 1 if missing else 0
    started = time.monotonic()
    try:
        ensure_tools(names, force=args.force)
    except ToolchainError as err:
        print(f"dgxsim tools: {err}", file=sys.stderr)
        return 1
    _say(f"finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
