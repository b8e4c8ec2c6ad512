"""The local Kubernetes control plane: etcd, kube-apiserver, controller-manager, scheduler.

``dgxsim up`` and the test fixture both use :class:`ControlPlane`. Everything
binds to 127.0.0.1 on free ports (or a port the user names, checked first).
The state directory holds the certificates, etcd's data, one log per component,
``kubeconfig`` for users and ``controlplane.json`` with what is running, so
``status`` and ``down`` can be run from another shell. ``up`` is all or
nothing: if any component fails to become ready, the ones already started are
stopped before the error is raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field

from localkube import pki as pkimod
from localkube.errors import ControlPlaneError
from localkube.files import atomic_write_text
from localkube.processes import (
    ProcessRecord,
    free_port,
    is_alive,
    log_tail,
    port_in_use,
    spawn,
    stop,
)
from localkube.toolchain import KUBERNETES_VERSION, bin_dir

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
API_QPS, API_BURST = 200, 400
"""Client rate limits of the controller manager and the scheduler. The defaults (20 and
50 requests/s) are sized for a shared production API server; here they would pace a
thousand-pod Job at the Job controller's 20 pod creations a second."""
SCHEDULER_CONFIG = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
  qps: {qps}
  burst: {burst}
leaderElection:
  leaderElect: false
enableProfiling: false
"""
STATE_FILE = "controlplane.json"
READY_TIMEOUT_S = 180.0


class Ports(BaseModel):
    """Loopback ports of one control plane."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    etcd_client: int = Field(gt=0, lt=65536)
    etcd_peer: int = Field(gt=0, lt=65536)
    apiserver: int = Field(gt=0, lt=65536)
    controller_manager: int = Field(gt=0, lt=65536)
    scheduler: int = Field(gt=0, lt=65536)


class ControlPlaneState(BaseModel):
    """What ``controlplane.json`` records about a started control plane."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    ports: Ports
    processes: list[ProcessRecord]

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


def find_binary(name: str) -> Path:
    """Locate a tool: .tools/bin first (or DGXSIM_TOOLS_DIR), then PATH."""
    candidate = bin_dir() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ControlPlaneError(
        f"{name} not found in {bin_dir()} or on PATH; run `make tools` to build it"
    )


def write_kubeconfig(path: Path, server: str, pki: pkimod.Pki, who: pkimod.ClientIdentity,
                     context: str = "dgxsim") -> None:
    """A kubeconfig that trusts the cluster CA and signs in with ``who``'s certificate."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": who.user, "user": {
            "client-certificate": str(pki.client_cert(who)),
            "client-key": str(pki.client_key(who))}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": who.user}}],
        "current-context": context,
    }
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)


class ControlPlane:
    """One control plane rooted at a state directory."""

    def __init__(self, state_dir: Path, apiserver_port: int = 0,
                 progress: Callable[[str], None] | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.apiserver_port = apiserver_port
        self._say = progress or (lambda _msg: None)

    # ------------------------------------------------------------ paths

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki(self) -> pkimod.Pki:
        return pkimod.Pki(self.state_dir / "pki")

    def _state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    # ------------------------------------------------------------ state

    def load_state(self) -> ControlPlaneState | None:
        path = self._state_path()
        if not path.exists():
            return None
        try:
            return ControlPlaneState.model_validate_json(path.read_text())
        except ValueError as err:
            raise ControlPlaneError(f"{path} is unreadable ({err}); inspect or remove it") from err

    def save_state(self, state: ControlPlaneState) -> None:
        atomic_write_text(self._state_path(), state.model_dump_json(indent=2))

    def running(self) -> ControlPlaneState | None:
        """The recorded control plane if any of its processes still runs."""
        state = self.load_state()
        if state and any(is_alive(p) for p in state.processes):
            return state
        return None

    # ------------------------------------------------------------ up

    def _prepare_dir(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            probe = self.state_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise ControlPlaneError(
                f"state directory {self.state_dir} is not writable: {err.strerror}") from err
        self.logs_dir.mkdir(exist_ok=True)

    def _choose_ports(self) -> Ports:
        if self.apiserver_port:
            if not 0 < self.apiserver_port < 65536:
                raise ControlPlaneError(f"port {self.apiserver_port} is out of range 1-65535")
            if port_in_use(self.apiserver_port):
                raise ControlPlaneError(
                    f"port {self.apiserver_port} on 127.0.0.1 is already in use")
        chosen: set[int] = {self.apiserver_port} if self.apiserver_port else set()

        def pick() -> int:
            while True:
                port = free_port()
                if port not in chosen:
                    chosen.add(port)
                    return port

        return Ports(etcd_client=pick(), etcd_peer=pick(),
                     apiserver=self.apiserver_port or pick(),
                     controller_manager=pick(), scheduler=pick())

    def up(self) -> ControlPlaneState:
        """Start all four components and wait until each is ready."""
        binaries = {c: find_binary(c) for c in COMPONENTS}
        self._prepare_dir()
        with self._exclusive():
            if (current := self.running()) is not None:
                raise AlreadyRunningError(current.server)
            return self._start(binaries)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the state directory's lock so two ``up`` runs never race."""
        with open(self.state_dir / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ControlPlaneError(
                    f"another dgxsim is starting a control plane in {self.state_dir}") from None
            yield

    def _start(self, binaries: dict[str, Path]) -> ControlPlaneState:
        ports = self._choose_ports()
        pki = pkimod.ensure_pki(self.state_dir / "pki")
        server = f"https://127.0.0.1:{ports.apiserver}"
        for who in pkimod.CLIENTS:
            write_kubeconfig(self._component_kubeconfig(who), server, pki, who)
        started: list[ProcessRecord] = []
        try:
            for name in COMPONENTS:
                self._say(f"starting {name}")
                t0 = time.monotonic()
                record, _ = spawn(name, [str(binaries[name]), *self._args(name, ports, pki)],
                                  self.logs_dir / f"{name}.log")
                started.append(record)
                state = ControlPlaneState(
                    version=KUBERNETES_VERSION, ports=ports, processes=list(started))
                self.save_state(state)
                self._wait_ready(name, record, ports, pki)
                self._say(f"{name} ready in {time.monotonic() - t0:.1f}s")
        except BaseException:
            for record in reversed(started):
                stop(record)
            self._state_path().unlink(missing_ok=True)
            raise
        write_kubeconfig(self.kubeconfig, server, pki, pkimod.ADMIN)
        return ControlPlaneState(version=KUBERNETES_VERSION, ports=ports, processes=started)

    def _component_kubeconfig(self, who: pkimod.ClientIdentity) -> Path:
        return self.state_dir / f"{who.file_stem}.kubeconfig"

    def _args(self, name: str, ports: Ports, pki: pkimod.Pki) -> list[str]:
        if name == "etcd":
            peer = f"http://127.0.0.1:{ports.etcd_peer}"
            client = f"http://127.0.0.1:{ports.etcd_client}"
            return [
                "--name=dgxsim", f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=dgxsim={peer}", "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ]
        if name == "kube-apiserver":
            return [
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}", f"--cert-dir={self.state_dir / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={pkimod.SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true", "--profiling=false", "--v=1",
                # The endpoint reconciler would publish the advertise address as the
                # `kubernetes` Service's endpoint every 10 s, and Endpoints refuse a
                # loopback address; nothing in-cluster dials that Service here.
                "--endpoint-reconciler-type=none",
                # Real nodes: the API server reaches a kubelet (logs, exec) at the node's
                # address, never by a host name nothing resolves, and signs in to it as
                # the admin, whom the kubelet's webhook authorizer lets through.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki.client_cert(pkimod.ADMIN)}",
                f"--kubelet-client-key={pki.client_key(pkimod.ADMIN)}",
                # DRA's v1 is served by default; the beta versions too, so manifests
                # written for them (NVIDIA's DRA driver quickstart) apply unchanged.
                "--runtime-config=resource.k8s.io/v1beta1=true,resource.k8s.io/v1beta2=true",
            ]
        common = [
            "--bind-address=127.0.0.1", f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}", "--leader-elect=false",
            "--profiling=false", "--v=1",
        ]
        if name == "kube-controller-manager":
            kubeconfig = self._component_kubeconfig(pkimod.CONTROLLER_MANAGER)
            return [
                *common, f"--secure-port={ports.controller_manager}",
                f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={pki.sa_private}",
                f"--root-ca-file={pki.ca_cert}", "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={pkimod.SERVICE_CIDR}",
                f"--kube-api-qps={API_QPS}", f"--kube-api-burst={API_BURST}",
            ]
        kubeconfig = self._component_kubeconfig(pkimod.SCHEDULER)
        config = self.state_dir / "scheduler-config.yaml"
        config.write_text(SCHEDULER_CONFIG.format(kubeconfig=kubeconfig, qps=API_QPS,
                                                  burst=API_BURST))
        return [
            *common, f"--secure-port={ports.scheduler}", f"--config={config}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
        ]

    def _health_url(self, name: str, ports: Ports) -> str:
        return {
            "etcd": f"http://127.0.0.1:{ports.etcd_client}/health",
            "kube-apiserver": f"https://127.0.0.1:{ports.apiserver}/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{ports.controller_manager}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{ports.scheduler}/healthz",
        }[name]

    def _client(self, pki: pkimod.Pki) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.client_cert(pkimod.ADMIN)), str(pki.client_key(pkimod.ADMIN)))
        return httpx.Client(verify=ctx, timeout=5.0)

    def _wait_ready(self, name: str, record: ProcessRecord, ports: Ports, pki: pkimod.Pki) -> None:
        url = self._health_url(name, ports)
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer yet"
        with self._client(pki) as client:
            while time.monotonic() < deadline:
                if not is_alive(record):
                    last_line = (log_tail(record.log, 1) or "no output")[:300]
                    raise ControlPlaneError(
                        f"{name} exited during start-up ({last_line}); see {record.log}")
                try:
                    resp = client.get(url)
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code}"
                except httpx.HTTPError as err:
                    last = type(err).__name__
                time.sleep(0.25)
        raise ControlPlaneError(
            f"{name} not ready after {READY_TIMEOUT_S:.0f}s ({last}); see {record.log}")

    # ------------------------------------------------------------ extra processes

    def start_extra(self, name: str, argv: list[str], ready: Callable[[], bool],
                    timeout_s: float = READY_TIMEOUT_S) -> ProcessRecord:
        """Start one more managed process (the node agent) and wait for ``ready``.

        It is recorded with the control plane, so ``status`` shows it and
        ``down`` stops it first. If it does not get ready (or ``ready`` raises),
        everything is stopped. ``ready`` asks whatever it needs: the control plane
        has no API client to lend, only its own health checks.
        """
        state = self.load_state()
        if state is None:
            raise ControlPlaneError("no control plane is running to add " + name + " to")
        record, _ = spawn(name, argv, self.logs_dir / f"{name}.log")
        self.save_state(state.model_copy(update={"processes": [*state.processes, record]}))
        deadline = time.monotonic() + timeout_s
        try:
            while not ready():
                if not is_alive(record):
                    last_line = (log_tail(record.log, 1) or "no output")[:300]
                    raise ControlPlaneError(
                        f"{name} exited during start-up ({last_line}); see {record.log}")
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"{name} not ready after {timeout_s:.0f}s; see {record.log}")
                time.sleep(0.25)
        except BaseException:
            self.down()
            raise
        return record

    # ------------------------------------------------------------ status / down

    def health(self) -> dict[str, str]:
        """Each component's process and health state, for ``dgxsim status``."""
        state = self.load_state()
        if state is None:
            return {}
        report: dict[str, str] = {}
        with self._client(self.pki) as client:
            for record in state.processes:
                if not is_alive(record):
                    report[record.name] = (f"stopped (pid {record.pid}), restarts "
                                           f"{record.restarts}, unhealthy")
                    continue
                health = self._health_of(client, record, state.ports)
                report[record.name] = (f"running (pid {record.pid}), restarts "
                                       f"{record.restarts}, health {health}")
        return report

    def down(self) -> list[str]:
        """Stop every recorded process (newest first); keep certificates, data and logs."""
        state = self.load_state()
        if state is None:
            return []
        stopped = []
        for record in reversed(state.processes):
            if is_alive(record):
                stop(record)
                stopped.append(record.name)
        self._state_path().unlink(missing_ok=True)
        return stopped

    def _health_of(self, client: httpx.Client, record: ProcessRecord, ports: Ports) -> str:
        if record.name not in COMPONENTS:
            return "ok"
        try:
            resp = client.get(self._health_url(record.name, ports))
        except httpx.HTTPError as err:
            return type(err).__name__
        return "ok" if resp.status_code == 200 else f"HTTP {resp.status_code}"


class AlreadyRunningError(ControlPlaneError):
    """``up`` found a control plane already running in the state directory."""

    def __init__(self, server: str) -> None:
        super().__init__(f"a control plane is already running here (API server {server})")
        self.server = server
