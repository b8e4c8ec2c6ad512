"""Real nodes on one machine: one containerd, and per node a kubelet in a network namespace.

A kubelet-less node only says what a kubelet would do; a real node runs the
genuine kubelet (the control plane's release) with containerd 2 and runc, so
device plugins meet the real device manager, CDI names meet a real runtime and
pods run as real containers. What this machine and Kubernetes require, and why
it is done so here (each from the kubelet's and containerd's own sources):

* Root. Cgroups, mounts and network namespaces; :func:`require_root` refuses
  with one line otherwise.
* One containerd for every real node, with its root, state, socket, CNI and CDI
  directories under the cluster's state directory. ``restrict_oom_score_adj``:
  a root without ``CAP_SYS_RESOURCE`` may not lower ``oom_score_adj``, and runc
  fails every sandbox otherwise. The sandbox (pause) image is pinned to one
  built locally; nothing is ever pulled.
* Per node a network namespace with a veth pair: the node's address lives in
  the namespace and the kubelet runs there (it refuses a loopback node IP, and
  the API server dials it by that address for logs). The API server listens
  on the host's loopback only, so a relay (:mod:`localkube.relay`) listens on
  the namespace's 127.0.0.1 and forwards there. Addresses come from
  198.18.0.0/15, the range set aside for network tests (RFC 2544), and are
  checked against the machine's own before use.
* The kubelet's device-plugin directory is a constant of the kubelet
  (``/var/lib/kubelet/device-plugins``), so each kubelet runs in a mount
  namespace of its own where that path is bound to the node's own directory.
  Its root directory is a shared mount, so what the kubelet mounts for pods
  (projected service-account tokens) is seen by containerd.
* cgroup v1 (hybrid) without systemd: the cgroupfs driver, ``failCgroupV1:
  false`` and a cgroup root per node, created here in every hierarchy.

:func:`teardown` undoes all of it: containers and tasks in containerd's
``k8s.io`` namespace, leftover shims of this containerd (found by their
socket argument), mounts under the runtime directory, network namespaces,
the CNI bridge and the cgroups.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from localkube import pki as pkimod
from localkube.errors import ControlPlaneError
from localkube.files import atomic_write_text
from localkube.images import ImageArchive
from localkube.toolchain import bin_dir

NODE_RANGE = ipaddress.IPv4Network("198.18.0.0/16")
"""One /30 per node: .1 on the host's end of the veth pair, .2 (the node) in its namespace."""
POD_RANGE = "198.19.0.0/16"
CRI_NAMESPACE = "k8s.io"
KUBELET_DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
"""Fixed in the kubelet (``pluginapi.DevicePluginPath``)."""
CGROUP_FS = Path("/sys/fs/cgroup")
CNI_CACHE = Path("/var/lib/cni/results")
"""libcni's result cache (containerd does not let it move)."""
KUBELET_LOG_LINKS = Path("/var/log/containers")
"""Where the kubelet links each container's log (a constant of the kubelet)."""
STATE_FILE = "realnodes.json"
SHORT_LINKS = Path("/run/dgxsim")


class RealNodeError(ControlPlaneError):
    """A real node could not be set up or torn down; the message names the step."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise RealNodeError("real nodes need root (a kubelet and containerd manage cgroups, "
                            "mounts and network namespaces); run as root or without "
                            "--real-nodes")


def _run(argv: list[str], step: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as err:
        raise RealNodeError(f"{step}: {argv[0]} is not installed") from err
    if check and result.returncode != 0:
        raise RealNodeError(f"{step} failed: {(result.stderr or result.stdout).strip()[:300]}")
    return result


class RealNodeRecord(BaseModel):
    """One real node: where its pieces are, so ``down`` can remove them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    slot: int
    netns: str
    host_veth: str
    host_ip: str
    node_ip: str
    root_dir: Path
    cgroup_root: str

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def device_plugin_dir(self) -> Path:
        return self.root_dir / "device-plugins"

    @property
    def device_plugin_link(self) -> Path:
        """A short path to :attr:`device_plugin_dir` for plugins to bind their sockets at:
        a Unix socket's path may not exceed 107 bytes, and state directories can be deep."""
        return SHORT_LINKS / self.netns


class RealNodesState(BaseModel):
    """What ``realnodes.json`` records."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime_dir: Path
    tag: str
    sandbox_image: str
    stream_port: int
    workload_image: str | None = None
    nodes: list[RealNodeRecord]


class Runtime:
    """The containerd shared by every real node of one cluster, and its directories."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.dir = self.state_dir / "realnodes"
        self.tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:6]

    @property
    def containerd_dir(self) -> Path:
        return self.dir / "containerd"

    @property
    def socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def cdi_dir(self) -> Path:
        return self.containerd_dir / "cdi"

    @property
    def cni_conf_dir(self) -> Path:
        return self.containerd_dir / "cni" / "net.d"

    @property
    def bridge(self) -> str:
        return f"dgxbr{self.tag}"

    def node_dir(self, name: str) -> Path:
        return self.dir / "nodes" / name

    # ------------------------------------------------------------ records

    def load(self) -> RealNodesState | None:
        path = self.dir / STATE_FILE
        if not path.exists():
            return None
        return RealNodesState.model_validate_json(path.read_text())

    def save(self, state: RealNodesState) -> None:
        atomic_write_text(self.dir / STATE_FILE, state.model_dump_json(indent=2))

    # ------------------------------------------------------------ containerd

    def containerd_config(self, sandbox_image: str, stream_port: int) -> str:
        runc = shutil.which("runc")
        if runc is None:
            raise RealNodeError("runc is not installed (apt-get install runc, or "
                                "make real-node-deps)")
        cni_bin = _cni_bin_dir()
        d = self.containerd_dir
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

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = ['{self.cdi_dir}']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '{bin_dir() / "containerd-shim-runc-v2"}'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{runc}'
          Root = '{d / "runc"}'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{cni_bin}']
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
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_RANGE}]],
                          "dataDir": str(self.containerd_dir / "cni" / "ipam")}},
                {"type": "loopback"},
            ],
        }

    def prepare(self, sandbox_image: str, stream_port: int) -> Path:
        """Write containerd's and CNI's configuration; returns the containerd config path.
        ``stream_port``: containerd's streaming server (exec, attach, port-forward) on the
        host's loopback, which each node's relay also forwards."""
        for sub in ("root", "state", "tmp", "opt", "runc", "cdi", "cni/net.d"):
            (self.containerd_dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.containerd_dir / "cni" / "ipam", ignore_errors=True)
        config = self.containerd_dir / "config.toml"
        atomic_write_text(config, self.containerd_config(sandbox_image, stream_port))
        atomic_write_text(self.cni_conf_dir / "10-dgxsim.conflist",
                          json.dumps(self.cni_config(), indent=1))
        return config

    def containerd_argv(self) -> list[str]:
        return [str(bin_dir() / "containerd"), "--config",
                str(self.containerd_dir / "config.toml")]

    def ctr(self, *args: str, step: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return _run([str(bin_dir() / "ctr"), "--address", str(self.socket),
                     "--namespace", CRI_NAMESPACE, *args], step, check)

    def containerd_ready(self) -> bool:
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

    # ------------------------------------------------------------ nodes

    def setup_node(self, name: str, slot: int, pki: pkimod.Pki, api_port: int) -> RealNodeRecord:
        """The node's namespace, addresses, cgroups, certificates and kubelet config."""
        net = list(NODE_RANGE.subnets(new_prefix=30))[slot]
        host_ip, node_ip = str(net.network_address + 1), str(net.network_address + 2)
        record = RealNodeRecord(
            name=name, slot=slot, netns=f"dgxsim-{self.tag}-{slot}",
            host_veth=f"dgx{self.tag}-{slot}", host_ip=host_ip, node_ip=node_ip,
            root_dir=self.node_dir(name) / "kubelet", cgroup_root=f"/dgxsim-{self.tag}-{name}")
        _make_netns(record)
        _make_cgroups(record.cgroup_root)
        KUBELET_DEVICE_PLUGINS.mkdir(parents=True, exist_ok=True)  # the bind's mount point
        SHORT_LINKS.mkdir(parents=True, exist_ok=True)
        record.device_plugin_link.unlink(missing_ok=True)
        record.device_plugin_link.symlink_to(record.device_plugin_dir)
        self._write_kubelet_files(record, pki, api_port)
        return record

    def _write_kubelet_files(self, record: RealNodeRecord, pki: pkimod.Pki, api_port: int
                             ) -> None:
        root = record.root_dir
        for sub in ("device-plugins", "pki", "pods", "logs", "volume-plugins"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for stale in pkimod.node_serving_cert(root / "pki"):
            stale.unlink(missing_ok=True)  # the node's address may differ from last time
        cert, key = pkimod.ensure_node_certs(pki, record.name, record.node_ip, root / "pki")
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "dgxsim", "cluster": {
                "server": f"https://127.0.0.1:{api_port}",
                "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": record.name, "user": {
                "client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "dgxsim", "context": {"cluster": "dgxsim",
                                                        "user": record.name}}],
            "current-context": "dgxsim",
        }
        atomic_write_text(root / "kubeconfig", yaml.safe_dump(kubeconfig), mode=0o600)
        atomic_write_text(root / "config.yaml", yaml.safe_dump(
            self.kubelet_config(record, pki), sort_keys=False))
        _make_shared_mount(root)

    def kubelet_config(self, record: RealNodeRecord, pki: pkimod.Pki) -> dict[str, object]:
        """The node's ``KubeletConfiguration`` (kubelet.config.k8s.io/v1beta1)."""
        serving_cert, serving_key = pkimod.node_serving_cert(record.root_dir / "pki")
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": record.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki.ca_cert)}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupRoot": record.cgroup_root,
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            "podLogsDir": str(record.root_dir / "logs"),
            "volumePluginDir": str(record.root_dir / "volume-plugins"),
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                             "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "shutdownGracePeriod": "0s",
            "registerNode": True,
            # Status is computed every 2 s (a plugin's registration or a MIG change shows
            # in allocatable within seconds, not 10) and posted only when it changed, or
            # once a minute (set explicitly: it would default to the update frequency).
            "nodeStatusUpdateFrequency": "2s",
            "nodeStatusReportFrequency": "1m",
        }

    def kubelet_argv(self, record: RealNodeRecord) -> list[str]:
        """The kubelet in the node's network namespace and a mount namespace of its own in
        which the kubelet's fixed device-plugin directory is the node's."""
        root = record.root_dir
        script = ('mount --bind "$1" "$2" && shift 2 && exec "$@"')
        return [
            "nsenter", f"--net={record.netns_path}", "--",
            "unshare", "--mount", "--propagation", "unchanged", "--",
            "/bin/sh", "-c", script, "kubelet-launcher",
            str(record.device_plugin_dir), str(KUBELET_DEVICE_PLUGINS),
            str(bin_dir() / "kubelet"), f"--config={root / 'config.yaml'}",
            f"--kubeconfig={root / 'kubeconfig'}", f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}", f"--hostname-override={record.name}",
            f"--node-ip={record.node_ip}", "--v=1",
        ]

    # ------------------------------------------------------------ teardown

    def remove_containers(self) -> list[str]:
        """Kill and delete every task and container of the ``k8s.io`` namespace."""
        if not self.containerd_ready():
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
                    os.kill(int(proc.name), 9)
                    killed.append(int(proc.name))
        return killed

    def teardown(self, state: RealNodesState) -> None:
        """After every process is stopped: mounts, namespaces, the bridge and cgroups."""
        self.stop_shims()
        _unmount_under(self.dir)
        for link in KUBELET_LOG_LINKS.glob("*.log"):
            with contextlib.suppress(OSError):
                if link.is_symlink() and self.dir in Path(os.readlink(link)).parents:
                    link.unlink()
        for record in state.nodes:
            _run(["ip", "netns", "delete", record.netns], "deleting a netns", check=False)
            record.device_plugin_link.unlink(missing_ok=True)
            _remove_cgroups(record.cgroup_root)
        _run(["ip", "link", "delete", self.bridge], "deleting the bridge", check=False)
        (self.dir / STATE_FILE).unlink(missing_ok=True)


# ------------------------------------------------------------------ helpers


def _cni_bin_dir() -> Path:
    for candidate in (Path("/usr/lib/cni"), Path("/opt/cni/bin")):
        if (candidate / "bridge").is_file():
            return candidate
    raise RealNodeError("the CNI plugins are not installed (apt-get install "
                        "containernetworking-plugins, or make real-node-deps)")


def free_slots(count: int) -> list[int]:
    """``count`` /30 slots of :data:`NODE_RANGE` no interface of this machine uses."""
    used = _run(["ip", "-4", "-o", "addr", "show"], "listing addresses").stdout
    taken = set()
    for line in used.splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if iface.ip in NODE_RANGE:
                taken.add(int(iface.ip) - int(NODE_RANGE.network_address) >> 2)
    slots = [s for s in range(NODE_RANGE.num_addresses // 4) if s not in taken]
    return slots[:count]


def _make_netns(record: RealNodeRecord) -> None:
    step = f"network namespace for {record.name}"
    _run(["ip", "netns", "delete", record.netns], step, check=False)
    _run(["ip", "netns", "add", record.netns], step)
    _run(["ip", "link", "add", record.host_veth, "type", "veth", "peer", "name", "eth0",
          "netns", record.netns], step)
    _run(["ip", "addr", "add", f"{record.host_ip}/30", "dev", record.host_veth], step)
    _run(["ip", "link", "set", record.host_veth, "up"], step)
    ns = ["ip", "-n", record.netns]
    _run([*ns, "addr", "add", f"{record.node_ip}/30", "dev", "eth0"], step)
    _run([*ns, "link", "set", "eth0", "up"], step)
    _run([*ns, "link", "set", "lo", "up"], step)


def _hierarchies() -> list[Path]:
    return [p for p in sorted(CGROUP_FS.iterdir())
            if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()]


def _make_cgroups(root: str) -> None:
    for hierarchy in _hierarchies():
        path = hierarchy / root.lstrip("/")
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (path / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())


def _remove_cgroups(root: str) -> None:
    """Remove a node's cgroup tree bottom-up (only empty cgroups can be removed)."""
    for hierarchy in _hierarchies():
        top = hierarchy / root.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _mounted() -> list[Path]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        points.append(Path(point))
    return points


def _make_shared_mount(path: Path) -> None:
    """Bind ``path`` onto itself as a shared mount (once)."""
    if path not in _mounted():
        _run(["mount", "--bind", str(path), str(path)], f"binding {path}")
    _run(["mount", "--make-shared", str(path)], f"sharing {path}")


def _unmount_under(directory: Path) -> None:
    """Unmount everything at or under ``directory``, deepest first."""
    for _ in range(3):
        points = [p for p in _mounted() if p == directory or directory in p.parents]
        if not points:
            return
        for point in sorted(set(points), key=lambda p: -len(p.parts)):
            _run(["umount", "--lazy", str(point)], f"unmounting {point}", check=False)
