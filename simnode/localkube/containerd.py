"""One real node's containerd 2: its configuration, its ``ctr`` and its clean-up.

Every real node has a containerd of its own. A kubelet takes its runtime to be
its own: it garbage-collects every container it did not start, so two kubelets
on one containerd remove each other's containers (seen here: a finished pod's
container removed by the other node's kubelet before its logs were read). A
containerd of one's own also keeps each node's CDI specification in its own
CDI directory, as on separate machines, where NVIDIA's index names (``0``,
``all``) never clash.

Its root, state, CNI and CDI directories are under the node's directory; its
sockets are in the node's short directory (``/run/dgxsim/<namespace>``; a Unix
socket path may not exceed 107 bytes). ``restrict_oom_score_adj``: a root
without ``CAP_SYS_RESOURCE`` may not lower ``oom_score_adj``, and runc fails
every sandbox otherwise. The sandbox (pause) image is pinned to one built
locally; nothing is ever pulled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from localkube.errors import ControlPlaneError
from localkube.files import atomic_write_text
from localkube.images import ImageArchive
from localkube.toolchain import bin_dir

CRI_NAMESPACE = "k8s.io"
CNI_CACHE = Path("/var/lib/cni/results")
"""libcni's result cache (containerd does not let it move)."""


class ContainerdError(ControlPlaneError):
    """containerd could not be configured or used; the message names the step."""


def run(argv: list[str], step: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as err:
        raise ContainerdError(f"{step}: {argv[0]} is not installed") from err
    if check and result.returncode != 0:
        raise ContainerdError(f"{step} failed: {(result.stderr or result.stdout).strip()[:300]}")
    return result


def cni_bin_dir() -> Path:
    for candidate in (Path("/usr/lib/cni"), Path("/opt/cni/bin")):
        if (candidate / "bridge").is_file():
            return candidate
    raise ContainerdError("the CNI plugins are not installed (apt-get install "
                          "containernetworking-plugins, or make real-node-deps)")


class Containerd:
    """One node's containerd: ``directory`` holds its data, ``short_dir`` its sockets."""

    def __init__(self, directory: Path, short_dir: Path, bridge: str, pod_subnet: str) -> None:
        self.dir = directory
        self.short_dir = short_dir
        self.bridge = bridge
        self.pod_subnet = pod_subnet

    @property
    def socket(self) -> Path:
        return self.short_dir / "containerd.sock"

    @property
    def cdi_dir(self) -> Path:
        return self.dir / "cdi"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    def config(self, sandbox_image: str, stream_port: int) -> str:
        """containerd's configuration (version 3). ``stream_port``: its streaming server
        (exec, attach, port-forward) on the host's loopback."""
        runc = shutil.which("runc")
        if runc is None:
            raise ContainerdError("runc is not installed (apt-get install runc, or "
                                  "make real-node-deps)")
        d = self.dir
        cri = "plugins.'io.containerd.cri.v1.runtime'"
        return f"""version = 3
root = '{d / "root"}'
state = '{d / "state"}'
temp = '{d / "tmp"}'
imports = []

[grpc]
  address = '{self.socket}'

[ttrpc]
  address = '{self.socket}.ttrpc'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{sandbox_image}'

  [{cri}]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = ['{self.cdi_dir}']
    [{cri}.containerd]
      default_runtime_name = 'runc'
      [{cri}.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '{bin_dir() / "containerd-shim-runc-v2"}'
        [{cri}.containerd.runtimes.runc.options]
          BinaryName = '{runc}'
          Root = '{d / "runc"}'
          SystemdCgroup = false
    [{cri}.cni]
      bin_dirs = ['{cni_bin_dir()}']
      conf_dir = '{self.cni_conf_dir}'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '{stream_port}'

  [plugins.'io.containerd.internal.v1.opt']
    path = '{d / "opt"}'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '{d / "image-verifier"}'
"""

    def cni_config(self) -> dict[str, object]:
        """A bridge without a gateway: pods get addresses, nothing is routed or masqueraded."""
        return {
            "cniVersion": "1.0.0", "name": "dgxsim",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": False, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_subnet}]],
                          "dataDir": str(self.dir / "cni" / "ipam")}},
                {"type": "loopback"},
            ],
        }

    def prepare(self, sandbox_image: str, stream_port: int) -> None:
        """Write containerd's and CNI's configuration (IP reservations start afresh)."""
        for sub in ("root", "state", "tmp", "opt", "runc", "cdi", "cni/net.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.short_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dir / "cni" / "ipam", ignore_errors=True)
        atomic_write_text(self.config_path, self.config(sandbox_image, stream_port))
        atomic_write_text(self.cni_conf_dir / "10-dgxsim.conflist",
                          json.dumps(self.cni_config(), indent=1))

    def argv(self) -> list[str]:
        return [str(bin_dir() / "containerd"), "--config", str(self.config_path)]

    def ctr(self, *args: str, step: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return run([str(bin_dir() / "ctr"), "--address", str(self.socket),
                    "--namespace", CRI_NAMESPACE, *args], step, check)

    def ready(self) -> bool:
        return self.socket.exists() and self.ctr("version", step="ctr version",
                                                 check=False).returncode == 0

    def import_image(self, archive: ImageArchive, *aliases: str) -> None:
        """Import ``archive``, also under ``aliases``; pinned, so image GC keeps them."""
        self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive.path),
                 step=f"importing {archive.reference}")
        for alias in aliases:
            self.ctr("images", "tag", "--force", archive.reference, alias,
                     step=f"tagging {archive.reference} as {alias}")
        for name in (archive.reference, *aliases):
            self.ctr("images", "label", name, "io.cri-containerd.pinned=pinned",
                     step=f"pinning {name}")

    def remove_containers(self) -> list[str]:
        """Kill and delete every task and container of the ``k8s.io`` namespace."""
        if not self.ready():
            return []
        listed = self.ctr("containers", "list", "--quiet", step="listing containers",
                          check=False)
        ids = listed.stdout.split()
        for cid in ids:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", cid, step="kill", check=False)
        for cid in ids:
            for _ in range(50):
                if self.ctr("tasks", "delete", "--force", cid, step="delete task",
                            check=False).returncode == 0 or not self._has_task(cid):
                    break
                time.sleep(0.1)
            self.ctr("containers", "delete", cid, step="delete container", check=False)
            # Without the kubelet no CNI DEL runs: drop CNI's cached results of the sandbox.
            for cached in CNI_CACHE.glob(f"*-{cid}-*"):
                cached.unlink(missing_ok=True)
        return ids

    def _has_task(self, cid: str) -> bool:
        tasks = self.ctr("tasks", "list", "--quiet", step="listing tasks", check=False)
        return cid in tasks.stdout.split()

    def stop_shims(self) -> list[int]:
        """Kill the shims this containerd started and left (their argv names its socket)."""
        shim = str(bin_dir() / "containerd-shim-runc-v2")
        killed = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].decode(errors="replace") == shim and \
                    str(self.socket).encode() in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
        return killed
