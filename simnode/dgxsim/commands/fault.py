"""``dgxsim fault inject | clear``: make a GPU (or one MIG device) fail, and recover.

Faults are the events NVIDIA's device plugin reacts to: a critical XID error
(79: fallen off the bus, 48: double-bit ECC error, 74: NVLink error, ...) marks
the GPU and every MIG device on it Unhealthy, and the plugin sends the new
list through ListAndWatch, so the kubelet stops placing pods there. ``clear``
restores them, which NVIDIA's plugin cannot do but a test bench must.

``--attestation fail`` makes the node's TPM measured boot fail instead: the
node turns untrusted (label, ``Attested`` condition, a ``NoSchedule`` taint),
no new work lands there and what runs is left alone; ``clear --attestation``
re-attests it.
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
    kind.add_argument("--attestation", choices=("fail",),
                      help="the node's TPM measured boot fails: the node turns untrusted")
    inject.add_argument("--reason", default="TPM PCR measurements do not match the golden "
                        "values", help="why attestation failed (with --attestation)")
    inject.set_defaults(func=cmd_inject)
    clear = verbs.add_parser("clear", help="mark a GPU or MIG device healthy again, or "
                                           "re-attest the node (--attestation)")
    _target(clear)
    clear.add_argument("--attestation", action="store_true",
                       help="re-attest the node: trusted again, its taint removed")
    clear.set_defaults(func=cmd_clear)


def _target(parser: argparse.ArgumentParser) -> None:
    add_state_dir(parser)
    parser.add_argument("--node", metavar="NAME",
                        help="node of a cluster state dir (`dgxsim up --nodes N`); may be "
                             "omitted when the state dir holds one node")
    which = parser.add_mutually_exclusive_group()
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


def _check_target(args: argparse.Namespace, attestation: bool) -> None:
    """A device fault names one device; an attestation fault names none."""
    named = args.gpu is not None or args.device is not None
    if attestation and named:
        raise CommandError("--attestation concerns the whole node: drop --gpu/--device")
    if not attestation and not named:
        raise CommandError("name the faulty device: --gpu INDEX or --device ID")


def cmd_inject(args: argparse.Namespace) -> int:
    _check_target(args, bool(args.attestation))
    node = _open(args)
    if args.attestation:
        node.set_attestation(args.reason)
        print(f"{node.name}: attestation failed ({args.reason}): node untrusted")
        return 0
    target = _device_id(node, args)
    xid = NVLINK_XID if args.nvlink else args.xid
    node.set_health(target, healthy=False, xid=xid)
    print(f"{node.name}: XID {xid} ({XIDS[xid]}) on {target}: marked Unhealthy")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    _check_target(args, args.attestation)
    node = _open(args)
    if args.attestation:
        node.set_attestation(None)
        print(f"{node.name}: re-attested: node trusted")
        return 0
    target = _device_id(node, args)
    node.set_health(target, healthy=True)
    print(f"{node.name}: {target} marked Healthy")
    return 0
