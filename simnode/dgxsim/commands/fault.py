"""``dgxsim fault inject | clear``: make a GPU (or one MIG device) fail, and recover.

Faults are the events NVIDIA's device plugin reacts to: a critical XID error
(79: fallen off the bus, 48: double-bit ECC error, 74: NVLink error, ...) marks
the GPU and every MIG device on it Unhealthy, and the plugin sends the new
list through ListAndWatch, so the kubelet stops placing pods there. ``clear``
restores them, which NVIDIA's plugin cannot do but a test bench must.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dgxsim.commands import (
    CommandError,
    add_state_dir,
    node_state_dir,
    non_negative_int,
    state_dir_of,
)

if TYPE_CHECKING:
    from dgxnode.node import SimNode

XIDS = {
    48: "double-bit ECC error",
    63: "ECC page retirement recording failure",
    64: "ECC page retirement recording failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    94: "contained ECC error",
    95: "uncontained ECC error",
}
NVLINK_XID = 74


def register(sub: Any) -> None:
    fault = sub.add_parser("fault", help="inject or clear GPU faults (XID errors, NVLink)")
    verbs = fault.add_subparsers(dest="verb", metavar="VERB", required=True)
    inject = verbs.add_parser("inject", help="mark a GPU or MIG device unhealthy")
    _target(inject)
    kind = inject.add_mutually_exclusive_group()
    kind.add_argument("--xid", type=int, choices=sorted(XIDS), default=79,
                      help="the XID error to raise (default 79)")
    kind.add_argument("--nvlink", action="store_true", help="an NVLink failure (XID 74)")
    inject.set_defaults(func=cmd_inject)
    clear = verbs.add_parser("clear", help="mark a GPU or MIG device healthy again")
    _target(clear)
    clear.set_defaults(func=cmd_clear)


def _target(parser: argparse.ArgumentParser) -> None:
    add_state_dir(parser)
    parser.add_argument("--node", metavar="NAME",
                        help="node of a cluster state dir (`dgxsim up --nodes N`); may be "
                             "omitted when the state dir holds one node")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpu", type=non_negative_int, metavar="INDEX")
    which.add_argument("--device", metavar="ID", help="a GPU-... or MIG-... device ID")


def _open(args: argparse.Namespace) -> SimNode:
    from dgxnode.errors import SimnodeError
    from dgxnode.node import SimNode
    from dgxnode.store import NodeStore

    path = node_state_dir(state_dir_of(args), args.node)
    try:
        return SimNode.open(NodeStore(path))
    except SimnodeError as err:
        raise CommandError(str(err)) from err


def _device_id(node: SimNode, args: argparse.Namespace) -> str:
    if args.device:
        known = {d.id for d in node.inventory().devices}
        if args.device not in known:
            raise CommandError(f"no device {args.device} on node {node.name}")
        return str(args.device)
    try:
        return str(node.hardware.gpu(args.gpu).uuid)
    except IndexError as err:
        raise CommandError(str(err)) from err


def cmd_inject(args: argparse.Namespace) -> int:
    node = _open(args)
    target = _device_id(node, args)
    xid = NVLINK_XID if args.nvlink else args.xid
    node.set_health(target, healthy=False, xid=xid)
    print(f"{node.name}: XID {xid} ({XIDS[xid]}) on {target}: marked Unhealthy")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    node = _open(args)
    target = _device_id(node, args)
    node.set_health(target, healthy=True)
    print(f"{node.name}: {target} marked Healthy")
    return 0
