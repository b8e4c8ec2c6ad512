"""``dgxsim up | status | down | env``: the local control plane from the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import (
    CommandError,
    add_state_dir,
    node_count,
    port_number,
    positive_time_scale,
    state_dir_of,
)
from gpumodel.vocabulary import (
    DEFAULT_MIG_STRATEGY,
    DEFAULT_NODE_KIND,
    DRA_MODES,
    MIG_CONFIG_STATE,
    MIG_STRATEGIES,
    NODE_KINDS,
    NODE_LABEL,
    NVIDIA_PREFIX,
)

if TYPE_CHECKING:
    from kubewire import KubeClient
    from localkube import ControlPlane

AGENT = "node-agent"
OPERATOR = "operator"


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="start the local control plane (kubelet-less mode)")
    add_state_dir(up)
    up.add_argument("--nodes", type=node_count, default=0, metavar="N",
                    help="simulated DGX nodes to start (default 0)")
    up.add_argument("--apiserver-port", type=port_number, default=0, metavar="PORT",
                    help="kube-apiserver port on 127.0.0.1 (default: a free port)")
    up.add_argument("--real-nodes", type=real_node_count, default=0, metavar="K",
                    help="also start K nodes under a real kubelet with containerd 2 and runc, "
                         "running pods as containers (needs root; default 0)")
    up.add_argument("--real-node-agent", choices=REAL_NODE_AGENTS, default="process",
                    help="what runs `dgxsim node run` on each real node: a process beside its "
                         "kubelet (process, the default), or nothing, for the Helm chart's "
                         "node DaemonSet to run in a pod there (chart)")
    add_node_options(up)
    up.add_argument("--no-operator", action="store_true",
                    help="do not start the MIG and job-placement operator")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show the control plane's components and health")
    add_state_dir(status)
    status.set_defaults(func=cmd_status)

    values = sub.add_parser(
        "real-node-values",
        help="print Helm values that run the chart's node DaemonSet on the real nodes of "
             "`up --real-nodes K --real-node-agent chart`")
    add_state_dir(values)
    values.set_defaults(func=cmd_real_node_values)

    down = sub.add_parser("down", help="stop every process `up` started; keep the state")
    add_state_dir(down)
    down.set_defaults(func=cmd_down)

    env = sub.add_parser("env", help="print shell exports for kubectl against the cluster")
    add_state_dir(env)
    env.set_defaults(func=cmd_env)

    supervise = sub.add_parser("supervise", help="restart the components `up` started when "
                                                  "they exit (started by `up`)")
    add_state_dir(supervise)
    supervise.set_defaults(func=cmd_supervise)

    agent = sub.add_parser("agent", help="run the node agent: N simulated nodes with their "
                                         "device plugins, playing the kubelet (used by `up`)")
    add_state_dir(agent)
    agent.add_argument("--kubeconfig", type=Path, required=True, metavar="PATH")
    agent.add_argument("--nodes", type=node_count, required=True, metavar="N")
    add_node_options(agent)
    agent.add_argument("--name-prefix", default="dgx", metavar="PREFIX",
                       help="nodes are named PREFIX-0 .. PREFIX-(N-1) (default dgx)")
    agent.add_argument("--metrics-port", type=port_number, default=None, metavar="PORT",
                       help="serve every node's DCGM metrics on 127.0.0.1:PORT/metrics "
                            "(0: any free port)")
    agent.add_argument("--log-level", default="INFO",
                       choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    agent.set_defaults(func=cmd_agent)


REAL_NODE_AGENTS = ("process", "chart")


def real_node_count(text: str) -> int:
    """``--real-nodes``: 0 to 16 (each is a kubelet, a relay and a node process)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 16:
        raise argparse.ArgumentTypeError(f"{value} is out of range 0-16")
    return value


def _say(message: str) -> None:
    print(f"[dgxsim] {message}", flush=True)


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``up`` and ``agent``: what the simulated nodes are."""
    parser.add_argument("--kind", choices=NODE_KINDS, default=DEFAULT_NODE_KIND,
                        help=f"node kind (default {DEFAULT_NODE_KIND})")
    parser.add_argument("--mig-strategy", choices=MIG_STRATEGIES, default=DEFAULT_MIG_STRATEGY,
                        help="how MIG devices are advertised, as NVIDIA's plugin does "
                             "(default mixed)")
    parser.add_argument("--mig-config", metavar="NAME", default=None,
                        help="label new nodes nvidia.com/mig.config=NAME (e.g. all-balanced)")
    parser.add_argument("--time-scale", type=positive_time_scale, default=1.0, metavar="X",
                        help="simulated seconds per wall-clock second (default 1)")
    parser.add_argument("--dra", choices=DRA_MODES, default=None,
                        help="offer the GPUs through DRA (NVIDIA's gpu.nvidia.com driver) "
                             "instead of the device plugin: static publishes the devices "
                             "that exist, dynamic every MIG slot, created when a claim is "
                             "prepared")


def agent_argv(args: argparse.Namespace, plane: ControlPlane, metrics_port: int) -> list[str]:
    argv = [sys.executable, "-m", "dgxsim", "agent", "--state-dir", str(plane.state_dir),
            "--kubeconfig", str(plane.kubeconfig), "--nodes", str(args.nodes),
            "--kind", args.kind, "--mig-strategy", args.mig_strategy,
            "--time-scale", repr(args.time_scale), "--metrics-port", str(metrics_port)]
    if args.mig_config:
        argv += ["--mig-config", args.mig_config]
    if args.dra:
        argv += ["--dra", args.dra]
    return argv


def _node_ready(node: dict[str, Any], mig_config: str | None, dra: bool = False) -> bool:
    """Ready, advertising GPUs (a DRA node publishes them as ResourceSlices instead), and
    with the requested MIG config applied (or failed)."""
    status = node.get("status", {})
    labels = node["metadata"].get("labels", {})
    return (any(c["type"] == "Ready" and c["status"] == "True"
                for c in status.get("conditions", []))
            and (dra or any(k.startswith(NVIDIA_PREFIX) for k in status.get("allocatable", {})))
            and (mig_config is None or labels.get(MIG_CONFIG_STATE) in ("success", "failed")))


def _nodes_ready(plane: ControlPlane, count: int, mig_config: str | None, dra: bool = False
                 ) -> Callable[[], bool]:
    """Whether ``count`` simulated nodes are ready; a refusal by the API server (other
    than no answer yet) ends the wait with its one-line error."""
    from dgxsim.kubeapi import run_reads
    from kubewire import KubeError, UnavailableError

    async def list_nodes(kube: KubeClient) -> list[dict[str, Any]]:
        return (await kube.list_nodes(label_selector=f"{NODE_LABEL}=true")).items

    def check() -> bool:
        try:
            nodes = run_reads(plane.kubeconfig, list_nodes)
        except UnavailableError:
            return False
        except KubeError as err:
            raise CommandError(f"waiting for the nodes: {err}") from err
        return sum(_node_ready(n, mig_config, dra) for n in nodes) >= count

    return check


def _start_operator(plane: ControlPlane, metrics: int) -> None:
    """The operator as a managed process; ready once its liveness endpoint answers."""
    import httpx

    from localkube import ControlPlaneError
    from localkube.processes import free_port

    liveness = free_port()
    argv = [sys.executable, "-m", "dgxsim", "operator", "--kubeconfig", str(plane.kubeconfig),
            "--liveness-port", str(liveness), "--metrics-port", str(metrics)]

    def alive() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{liveness}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    _say("starting the operator")
    t0 = time.monotonic()
    try:
        plane.start_extra(OPERATOR, argv, alive)
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    _say(f"operator ready in {time.monotonic() - t0:.1f}s "
         f"(metrics at http://127.0.0.1:{metrics}/metrics)")


UP_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def _ensure_binaries() -> None:
    """Put the pinned binaries in place when neither the tools folder nor PATH has them:
    from the per-user cache, else built with Go, else downloaded (an installed wheel
    has no ``make tools``). A ``DGXSIM_TOOLS_DIR`` the user set holds their own
    binaries: nothing is written there, and a missing one is named at start."""
    import os
    import shutil

    from localkube.toolchain import ToolchainError, bin_dir, ensure_tools

    if os.environ.get("DGXSIM_TOOLS_DIR"):
        return
    missing = [n for n in UP_TOOLS
               if not (bin_dir() / n).is_file() and shutil.which(n) is None]
    if not missing:
        return
    _say(f"getting {', '.join(missing)} (once; later runs reuse them)")
    try:
        ensure_tools(tuple(missing))
    except ToolchainError as err:
        raise CommandError(str(err)) from err


def _check_real_nodes(args: argparse.Namespace) -> None:
    """Refuse ``--real-nodes`` without root before anything starts; get their tools."""
    if not args.real_nodes:
        if args.real_node_agent != "process":
            raise CommandError(f"--real-node-agent {args.real_node_agent} needs --real-nodes K")
        return
    from localkube.realnode import RealNodeError, require_root
    from localkube.toolchain import REAL_NODE_TOOLS, ToolchainError, ensure_tools

    try:
        require_root()
    except RealNodeError as err:
        raise CommandError(str(err)) from err
    try:
        ensure_tools(REAL_NODE_TOOLS)
    except ToolchainError as err:
        raise CommandError(str(err)) from err


def _start_real_nodes(args: argparse.Namespace, plane: ControlPlane) -> None:
    from dgxsim.realnodes import start_real_nodes
    from localkube import ControlPlaneError

    state = plane.load_state()
    assert state is not None
    _say(f"starting {args.real_nodes} real nodes (kubelet {state.version}, containerd 2)")
    t0 = time.monotonic()
    try:
        start_real_nodes(plane, state, args.real_nodes, args, _say)
    except (ControlPlaneError, RuntimeError) as err:
        plane.down()
        raise CommandError(str(err)) from err
    _say(f"{args.real_nodes} real nodes Ready in {time.monotonic() - t0:.1f}s")


def refuse_dra_conflicts(args: argparse.Namespace) -> None:
    """In dynamic DRA mode the driver alone lays MIG out (on the slots the scheduler
    chooses); a named layout on top would take slots the published counters call free."""
    if args.dra == "dynamic" and args.mig_config:
        raise CommandError(f"--mig-config {args.mig_config} with --dra dynamic: in dynamic "
                           "mode MIG devices are created per claim; use --dra static to "
                           "publish a named layout")


def cmd_up(args: argparse.Namespace) -> int:
    refuse_dra_conflicts(args)
    _check_real_nodes(args)
    if args.mig_config:
        from gpumodel.migparted import default_mig_configs

        known = default_mig_configs().mig_configs
        if args.mig_config not in known:
            raise CommandError(f"--mig-config {args.mig_config}: no such config; known: "
                               f"{', '.join(sorted(known))}")
    from dgxsim.clusterfile import ClusterSettings, save_settings
    from localkube import AlreadyRunningError, ControlPlane, ControlPlaneError
    from localkube.processes import free_port

    _ensure_binaries()
    plane = ControlPlane(state_dir_of(args), apiserver_port=args.apiserver_port, progress=_say)
    started = time.monotonic()
    try:
        state = plane.up()
    except AlreadyRunningError as err:
        print(f"dgxsim up: {err}; nothing started. Use it as it is, or run "
              f"`dgxsim down --state-dir {shlex.quote(str(plane.state_dir))}` first.")
        return 0
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    _say(f"control plane {state.version} ready at {state.server} "
         f"in {time.monotonic() - started:.1f}s")
    ports = {AGENT: free_port(), OPERATOR: free_port()}
    metrics = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()
               if (name == AGENT and args.nodes) or (name == OPERATOR and not args.no_operator)}
    save_settings(plane.state_dir, ClusterSettings(
        nodes=args.nodes, kind=args.kind, mig_strategy=args.mig_strategy,
        mig_config=args.mig_config, time_scale=args.time_scale, metrics=metrics,
        real_nodes=args.real_nodes))
    if args.nodes:
        _say(f"starting the node agent with {args.nodes} {args.kind} nodes")
        t0 = time.monotonic()
        try:
            plane.start_extra(AGENT, agent_argv(args, plane, ports[AGENT]),
                              _nodes_ready(plane, args.nodes, args.mig_config,
                                           args.dra is not None))
        except ControlPlaneError as err:
            raise CommandError(str(err)) from err
        _say(f"{args.nodes} nodes Ready in {time.monotonic() - t0:.1f}s")
    if args.real_nodes:
        _start_real_nodes(args, plane)
    if not args.no_operator:
        _start_operator(plane, ports[OPERATOR])
    _start_supervisor(plane)
    print(f"\nkubeconfig: {plane.kubeconfig}\n")
    print("Use it with:")
    print(f"  eval \"$(dgxsim env --state-dir {shlex.quote(str(plane.state_dir))})\"")
    print("  kubectl get --raw /readyz")
    return 0


def _start_supervisor(plane: ControlPlane) -> None:
    """Last of all, so it finds every component recorded; ``down`` stops it first."""
    from localkube import ControlPlaneError
    from localkube.supervisor import SUPERVISOR

    argv = [sys.executable, "-m", "dgxsim", "supervise", "--state-dir", str(plane.state_dir)]
    try:
        plane.start_extra(SUPERVISOR, argv, lambda: True)
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    _say("supervisor started: components that exit are restarted")


def cmd_supervise(args: argparse.Namespace) -> int:
    import logging

    from localkube import ControlPlane
    from localkube.supervisor import Supervisor

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Supervisor(ControlPlane(state_dir_of(args))).run()
    return 0


def cmd_real_node_values(args: argparse.Namespace) -> int:
    import yaml

    from dgxsim.realnodes import chart_values
    from localkube import ControlPlane, ControlPlaneError
    from localkube.realnode import Runtime

    plane = ControlPlane(state_dir_of(args))
    try:
        state = plane.load_state()
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    if state is None:
        raise CommandError(f"no control plane running in {plane.state_dir}")
    real = Runtime(plane.state_dir).load()
    if real is None or not real.nodes:
        raise CommandError(f"no real nodes in {plane.state_dir}: start them with "
                           "`dgxsim up --real-nodes K --real-node-agent chart`")
    print(yaml.safe_dump(chart_values(plane.state_dir, state.ports.apiserver,
                                      [n.name for n in real.nodes]), sort_keys=False), end="")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dgxsim.clusterfile import ClusterFileError, load_settings
    from localkube import ControlPlane, ControlPlaneError

    plane = ControlPlane(state_dir_of(args))
    try:
        state = plane.load_state()
        report = plane.health()
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    if state is None:
        print(f"no control plane running in {plane.state_dir}")
        return 1
    try:
        settings = load_settings(plane.state_dir)
    except ClusterFileError as err:
        raise CommandError(str(err)) from err
    agent_url = (settings.metrics if settings else {}).get(AGENT)
    if agent_url and report.get(AGENT, "").endswith("health ok"):
        report[AGENT] = report[AGENT].removesuffix("health ok") + watch_health(agent_url)
    print(f"state dir:  {plane.state_dir}")
    print(f"API server: {state.server} (Kubernetes {state.version})")
    print(f"kubeconfig: {plane.kubeconfig}")
    from dgxsim.realnodes import describe

    for line in describe(plane):
        print(line)
    for name, line in report.items():
        print(f"  {name:<24} {line}")
    for name, url in (settings.metrics if settings else {}).items():
        what = "DCGM metrics of every node" if name == AGENT else "operator metrics"
        print(f"metrics:    {url} ({what})")
    healthy = all(line.endswith("health ok") for line in report.values())
    return 0 if healthy else 1


def watch_health(metrics_url: str) -> str:
    """``health ok`` while every watch of the node agent is live, else which are not:
    a process that runs but no longer follows the API server is not healthy."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from dgxnode.dcgm import WATCH_LIVE

    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as err:
        return f"health unknown (metrics: {err})"
    down = sorted(s.labels["watch"] for f in text_string_to_metric_families(text)
                  if f.name == WATCH_LIVE for s in f.samples if s.value == 0)
    return f"health watches not live: {', '.join(down)}" if down else "health ok"


def cmd_down(args: argparse.Namespace) -> int:
    from dgxsim.realnodes import stop_real_nodes
    from localkube import ControlPlane, ControlPlaneError

    plane = ControlPlane(state_dir_of(args))
    try:
        removed = stop_real_nodes(plane)
        stopped = plane.down()
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    if removed:
        _say(f"real nodes removed: {', '.join(removed)}")
    if stopped:
        _say(f"stopped {', '.join(stopped)}; state kept in {plane.state_dir}")
    else:
        _say(f"nothing running in {plane.state_dir}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from dgxsim.kubeletless import AgentOptions, run_agent

    refuse_dra_conflicts(args)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = AgentOptions(
        state_dir=state_dir_of(args), kubeconfig=args.kubeconfig, nodes=args.nodes,
        kind=args.kind, strategy=args.mig_strategy, mig_config=args.mig_config,
        time_scale=args.time_scale, name_prefix=args.name_prefix,
        metrics_port=args.metrics_port, dra=args.dra)
    asyncio.run(run_agent(options))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from localkube import ControlPlane
    from localkube.toolchain import bin_dir

    plane = ControlPlane(state_dir_of(args))
    print(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}")
    print(f"export PATH={shlex.quote(str(bin_dir()))}:\"$PATH\"")
    return 0
