"""``dgxsim up | status | down | env``: the local control plane from the command line."""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from dgxsim.commands import CommandError, add_state_dir, non_negative_int, state_dir_of
from dgxsim.controlplane import AlreadyRunningError, ControlPlane, ControlPlaneError
from dgxsim.toolchain import bin_dir

MAX_NODES_WITHOUT_AGENT = 0


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="start the local control plane (kubelet-less mode)")
    add_state_dir(up)
    up.add_argument("--nodes", type=non_negative_int, default=0, metavar="N",
                    help="simulated DGX nodes to start (default 0)")
    up.add_argument("--apiserver-port", type=non_negative_int, default=0, metavar="PORT",
                    help="kube-apiserver port on 127.0.0.1 (default: a free port)")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show the control plane's components and health")
    add_state_dir(status)
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop every process `up` started; keep the state")
    add_state_dir(down)
    down.set_defaults(func=cmd_down)

    env = sub.add_parser("env", help="print shell exports for kubectl against the cluster")
    add_state_dir(env)
    env.set_defaults(func=cmd_env)


def _say(message: str) -> None:
    print(f"[dgxsim] {message}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    if args.nodes > MAX_NODES_WITHOUT_AGENT:
        raise CommandError(
            f"--nodes {args.nodes}: this version has no node agent yet; use --nodes 0")
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
    print(f"\nkubeconfig: {plane.kubeconfig}\n")
    print("Use it with:")
    print(f"  eval \"$(dgxsim env --state-dir {shlex.quote(str(plane.state_dir))})\"")
    print("  kubectl get --raw /readyz")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    plane = ControlPlane(state_dir_of(args))
    try:
        state = plane.load_state()
        report = plane.health()
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    if state is None:
        print(f"no control plane running in {plane.state_dir}")
        return 1
    print(f"state dir:  {plane.state_dir}")
    print(f"API server: {state.server} (Kubernetes {state.version})")
    print(f"kubeconfig: {plane.kubeconfig}")
    for name, line in report.items():
        print(f"  {name:<24} {line}")
    healthy = all(line.endswith("health ok") for line in report.values())
    return 0 if healthy else 1


def cmd_down(args: argparse.Namespace) -> int:
    plane = ControlPlane(state_dir_of(args))
    try:
        stopped = plane.down()
    except ControlPlaneError as err:
        raise CommandError(str(err)) from err
    if stopped:
        _say(f"stopped {', '.join(stopped)}; state kept in {plane.state_dir}")
    else:
        _say(f"nothing running in {plane.state_dir}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    plane = ControlPlane(state_dir_of(args))
    print(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}")
    print(f"export PATH={shlex.quote(str(bin_dir()))}:\"$PATH\"")
    return 0
