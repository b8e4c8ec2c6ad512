"""Real nodes on one machine: per node a containerd and a kubelet in a network namespace.

A kubelet-less node only says what a kubelet would do; a real node runs the
genuine kubelet (the control plane's release) with containerd 2 and runc, so
device plugins meet the real device manager, CDI names meet a real runtime and
pods run as real containers. What this machine and Kubernetes require, and why
it is done so here (each from the kubelet's and containerd's own sources):

* Root. Cgroups, mounts and network namespaces; :func:`require_root` refuses
  with one line otherwise.
* A containerd per node (:mod:`localkube.containerd` says why one each), with
  its directories under the node's directory in the cluster's state directory.
* Per node a network namespace with a veth pair: the node's address lives in
  the namespace and the kubelet runs there (it refuses a loopback node IP, and
  the API server dials it by that address for logs). The API server listens
  on the host's loopback only, so a relay (:mod:`localkube.relay`) listens on
  the namespace's 127.0.0.1 and forwards there (and to containerd's streaming
  server, for ``kubectl exec``). Addresses come from
  198.18.0.0/15, the range set aside for network tests (RFC 2544), and are
  checked against the machine's own before use.
* The kubelet's device-plugin directory is a constant of the kubelet
  (``/var/lib/kubelet/device-plugins``), so each kubelet runs in a mount
  namespace of its own where that path is bound to the node's own directory.
  Its root directory is a shared mount, so what the kubelet mounts for pods
  (projected service-account tokens) is seen by containerd.
* cgroup v1 (hybrid) without systemd: the cgroupfs driver, ``failCgroupV1:
  false`` and a cgroup root per node, created here in every hierarchy.

Once the processes are stopped (and each containerd has removed its containers),
:meth:`Runtime.teardown` removes the rest: leftover shims (found by their socket
argument), mounts under the runtime directory, network namespaces, bridges,
cgroups and the kubelets' log links.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from localkube import pki as pkimod
from localkube.containerd import Containerd
from localkube.errors import ControlPlaneError
from localkube.files import atomic_write_text
from localkube.toolchain import bin_dir

NODE_RANGE = ipaddress.IPv4Network("198.18.0.0/16")
"""One /30 per node: .1 on the host's end of the veth pair, .2 (the node) in its namespace."""
POD_RANGE = ipaddress.IPv4Network("198.19.0.0/16")
"""One /24 of pod addresses per node."""
KUBELET_DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
"""Fixed in the kubelet (``pluginapi.DevicePluginPath``)."""
CGROUP_FS = Path("/sys/fs/cgroup")
KUBELET_LOG_LINKS = Path("/var/log/containers")
"""Where the kubelet links each container's log (a constant of the kubelet)."""
STATE_FILE = "realnodes.json"
SHORT_DIRS = Path("/run/dgxsim")


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
    bridge: str
    host_ip: str
    node_ip: str
    pod_subnet: str
    root_dir: Path
    containerd_dir: Path
    cgroup_root: str
    stream_port: int

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def device_plugin_dir(self) -> Path:
        return self.root_dir / "device-plugins"

    @property
    def pod_resources_dir(self) -> Path:
        return self.root_dir / "pod-resources"

    @property
    def short_dir(self) -> Path:
        """The node's folder of sockets and links on a short path: a Unix socket's path may
        not exceed 107 bytes, and state directories can be deep."""
        return SHORT_DIRS / self.netns

    @property
    def device_plugin_link(self) -> Path:
        """Where plugins bind their sockets: a link to :attr:`device_plugin_dir`."""
        return self.short_dir / "device-plugins"

    @property
    def pod_resources_socket(self) -> Path:
        """The kubelet's PodResources socket, through a link in :attr:`short_dir`."""
        return self.short_dir / "pod-resources" / "kubelet.sock"


class RealNodesState(BaseModel):
    """What ``realnodes.json`` records."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime_dir: Path
    tag: str
    sandbox_image: str
    workload_image: str | None = None
    agent: str = "process"
    """``process``: ``dgxsim node run`` beside each kubelet; ``chart``: none (the Helm
    chart's node DaemonSet runs it in a pod)."""
    nodes: list[RealNodeRecord]


class Runtime:
    """The real nodes of one cluster: where their files go, how they are set up and
    removed."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.dir = self.state_dir / "realnodes"
        self.tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:6]

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

    # ------------------------------------------------------------ nodes

    def plan_node(self, name: str, slot: int, stream_port: int) -> RealNodeRecord:
        """Where everything of node ``name`` in address slot ``slot`` goes (nothing made)."""
        net = list(NODE_RANGE.subnets(new_prefix=30))[slot]
        return RealNodeRecord(
            name=name, slot=slot, netns=f"dgxsim-{self.tag}-{slot}",
            host_veth=f"dgx{self.tag}-{slot}", bridge=f"dgxbr{self.tag}-{slot}",
            host_ip=str(net.network_address + 1), node_ip=str(net.network_address + 2),
            pod_subnet=str(list(POD_RANGE.subnets(new_prefix=24))[slot]),
            root_dir=self.node_dir(name) / "kubelet",
            containerd_dir=self.node_dir(name) / "containerd",
            cgroup_root=f"/dgxsim-{self.tag}-{name}", stream_port=stream_port)

    def setup_node(self, record: RealNodeRecord, pki: pkimod.Pki, api_port: int,
                   sandbox_image: str) -> Containerd:
        """The node's namespace, addresses, cgroups, containerd configuration,
        certificates and kubelet configuration; returns its containerd."""
        _make_netns(record)
        _make_cgroups(record.cgroup_root)
        KUBELET_DEVICE_PLUGINS.mkdir(parents=True, exist_ok=True)  # the bind's mount point
        containerd = self.containerd(record)
        containerd.prepare(sandbox_image, record.stream_port)
        for link, target in ((record.device_plugin_link, record.device_plugin_dir),
                             (record.pod_resources_socket.parent,
                              record.pod_resources_dir)):
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        self._write_kubelet_files(record, pki, api_port)
        return containerd

    @staticmethod
    def containerd(record: RealNodeRecord) -> Containerd:
        return Containerd(record.containerd_dir, record.short_dir, record.bridge,
                          record.pod_subnet)

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
            "containerRuntimeEndpoint": f"unix://{self.containerd(record).socket}",
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

    def teardown(self, state: RealNodesState) -> None:
        """After every process is stopped: mounts, namespaces, bridges, cgroups, links."""
        for record in state.nodes:
            self.containerd(record).stop_shims()
        _unmount_under(self.dir)
        for link in KUBELET_LOG_LINKS.glob("*.log"):
            with contextlib.suppress(OSError):
                if link.is_symlink() and self.dir in Path(os.readlink(link)).parents:
                    link.unlink()
        for record in state.nodes:
            _run(["ip", "netns", "delete", record.netns], "deleting a netns", check=False)
            _run(["ip", "link", "delete", record.bridge], "deleting a bridge", check=False)
            shutil.rmtree(record.short_dir, ignore_errors=True)
            _remove_cgroups(record.cgroup_root)
        (self.dir / STATE_FILE).unlink(missing_ok=True)


# ------------------------------------------------------------------ helpers


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
