"""``dgxsim operator``: run the kopf operator that partitions MIG and places DGXJobs.

The Helm chart runs exactly this command in the operator's pod (no
``--kubeconfig``: the service account); ``dgxsim up`` can run it beside the
node agent with the cluster's kubeconfig. Settings not on the command line
come from ``DGXSIM_OPERATOR_<GROUP>__<FIELD>`` variables (see
``migoperator.settings``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from dgxsim.commands import CommandError, add_namespace, namespace_of


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "operator", help="run the operator (dynamic MIG partitioning, DGXJob placement)")
    parser.add_argument("--kubeconfig", type=Path, default=None, metavar="PATH",
                        help="kubeconfig to use (default: the in-cluster service account)")
    add_namespace(parser, "the mig-parted ConfigMap")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve Prometheus metrics on this port (0: any free port)")
    parser.add_argument("--liveness-port", type=int, default=None, metavar="PORT",
                        help="serve kopf's liveness probe on this port (/healthz)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    from migoperator.main import run
    from migoperator.settings import OperatorSettings

    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise CommandError(f"no kubeconfig at {args.kubeconfig}")
    # A ValidationError reaches the CLI's main, which names the flag that was typed.
    settings = OperatorSettings.from_env(
        kube={"kubeconfig": args.kubeconfig, "namespace": namespace_of(args)},
        metrics={"port": args.metrics_port, "liveness_port": args.liveness_port})
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # one line per handled event is noise
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    run(settings)
    return 0
