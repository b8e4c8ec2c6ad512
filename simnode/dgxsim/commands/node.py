"""``dgxsim node init | show | allocate | release | reboot``: one simulated node's state.

CLI glue over :class:`dgxnode.node.SimNode`; the state lives in
``<state-dir>/node.json`` and every command holds the directory's lock.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import (
    CommandError,
    add_namespace,
    add_state_dir,
    namespace_of,
    port_number,
    positive_time_scale,
    state_dir_of,
)
from gpumodel.vocabulary import (
    DEFAULT_MIG_STRATEGY,
    DEFAULT_NODE_KIND,
    DRA_MODES,
    MIG_STRATEGIES,
    NODE_KINDS,
)
from kubeletapi.podresources.v1.constants import POD_RESOURCES_SOCKET

if TYPE_CHECKING:
    from dgxnode.node import SimNode

DEFAULT_NODE_NAME = "dgxsim-node-0"


def register(sub: Any) -> None:
    node = sub.add_parser("node", help="create and inspect a simulated DGX node")
    verbs = node.add_subparsers(dest="verb", metavar="VERB", required=True)

    init = verbs.add_parser("init", help="create a fresh node (MIG disabled, nothing allocated)")
    add_state_dir(init)
    init.add_argument("--kind", choices=NODE_KINDS, default=DEFAULT_NODE_KIND)
    init.add_argument("--name", default=DEFAULT_NODE_NAME, help="node name (seeds device IDs)")
    init.add_argument("--force", action="store_true", help="replace an existing node")
    init.set_defaults(func=cmd_init)

    show = verbs.add_parser("show", help="print the node's hardware, MIG layout and allocations")
    add_state_dir(show)
    show.add_argument("--kind", choices=NODE_KINDS, default=None,
                      help="fail unless the node is of this kind")
    show.add_argument("--json", action="store_true", help="print the NodeInventory document")
    show.set_defaults(func=cmd_show)

    alloc = verbs.add_parser("allocate", help="record that OWNER holds a device")
    add_state_dir(alloc)
    alloc.add_argument("device", metavar="DEVICE_ID")
    alloc.add_argument("--owner", required=True, metavar="NS/POD/CONTAINER")
    alloc.set_defaults(func=cmd_allocate)

    release = verbs.add_parser("release", help="free a device")
    add_state_dir(release)
    release.add_argument("device", metavar="DEVICE_ID")
    release.set_defaults(func=cmd_release)

    reboot = verbs.add_parser("reboot", help="reboot: MIG modes stay, instances and "
                              "allocations go")
    add_state_dir(reboot)
    reboot.set_defaults(func=cmd_reboot)

    run = verbs.add_parser("run", help="serve this node beside a real kubelet (kind mode): "
                                       "device plugin, MIG manager, labels, endpoint")
    add_state_dir(run)
    run.add_argument("--node-name", required=True, metavar="NAME",
                     help="the Kubernetes Node this runs on (downward API spec.nodeName)")
    run.add_argument("--kind", choices=NODE_KINDS, default=DEFAULT_NODE_KIND)
    run.add_argument("--mig-strategy", choices=MIG_STRATEGIES, default=DEFAULT_MIG_STRATEGY)
    run.add_argument("--device-plugin-dir", type=Path,
                     default=Path("/var/lib/kubelet/device-plugins"), metavar="DIR")
    run.add_argument("--time-scale", type=positive_time_scale, default=1.0, metavar="X")
    run.add_argument("--kubeconfig", type=Path, default=None,
                     help="default: the pod's in-cluster service account")
    add_namespace(run, "the mig-parted ConfigMap")
    run.add_argument("--metrics-port", type=port_number, default=None, metavar="PORT",
                     help="serve the node's DCGM metrics at PORT/metrics (0: any free port)")
    run.add_argument("--cdi-dir", type=Path, default=Path("/var/run/cdi"), metavar="DIR",
                     help="write the node's CDI specification here for the container "
                          "runtime (default /var/run/cdi; an empty value writes none)")
    run.add_argument("--dra", choices=DRA_MODES, default=None,
                     help="offer the GPUs through DRA (NVIDIA's gpu.nvidia.com driver) "
                          "instead of the device plugin")
    run.add_argument("--kubelet-registry-dir", type=Path,
                     default=Path("/var/lib/kubelet/plugins_registry"), metavar="DIR",
                     help="the kubelet's plugin registration directory (DRA)")
    run.add_argument("--kubelet-plugins-dir", type=Path,
                     default=Path("/var/lib/kubelet/plugins"), metavar="DIR",
                     help="where the DRA plugin's service socket goes")
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDR",
                     help="address the metrics bind to (a pod: 0.0.0.0)")
    run.add_argument("--pod-resources-socket", type=Path, default=Path(POD_RESOURCES_SOCKET),
                     metavar="PATH",
                     help="the kubelet's PodResources socket, asked which devices pods hold "
                          f"(default {POD_RESOURCES_SOCKET}; an empty value asks none)")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from dgxsim.kindmode import NodeRunOptions, run_node

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_node(NodeRunOptions(
        node=args.node_name, state_dir=state_dir_of(args), kind=args.kind,
        strategy=args.mig_strategy, plugin_dir=args.device_plugin_dir,
        time_scale=args.time_scale, kubeconfig=args.kubeconfig,
        namespace=namespace_of(args), metrics_port=args.metrics_port,
        cdi_dir=args.cdi_dir if str(args.cdi_dir) not in ("", ".") else None,
        metrics_host=args.metrics_host, dra=args.dra, registry_dir=args.kubelet_registry_dir,
        kubelet_plugins_dir=args.kubelet_plugins_dir,
        pod_resources_socket=(args.pod_resources_socket
                              if str(args.pod_resources_socket) not in ("", ".") else None))))
    return 0


@contextmanager
def open_node(args: argparse.Namespace) -> Iterator[SimNode]:
    """The node of ``--state-dir`` under its lock; state errors become CommandErrors."""
    from dgxnode.errors import SimnodeError
    from dgxnode.node import SimNode
    from dgxnode.store import NodeStore

    store = NodeStore(state_dir_of(args))
    try:
        with store.locked():
            yield SimNode.open(store)
    except SimnodeError as err:
        raise CommandError(str(err)) from err


def cmd_init(args: argparse.Namespace) -> int:
    from dgxnode.errors import StateExistsError
    from dgxnode.node import SimNode
    from dgxnode.store import NodeStore

    store = NodeStore(state_dir_of(args))
    with store.locked():
        if store.exists() and not args.force:
            raise CommandError(str(StateExistsError(store.path)))
        node = SimNode.create(args.name, args.kind, store)
    print(f"node {node.name} ({node.hardware.product_name}, {len(node.hardware.gpus)} GPUs) "
          f"initialised in {store.path}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        if args.kind is not None and node.state.kind != args.kind:
            raise CommandError(f"node {node.name} is a {node.state.kind}, not a {args.kind}")
        if args.json:
            print(node.inventory().model_dump_json(indent=2))
            return 0
        for line in describe(node):
            print(line)
    return 0


def describe(node: SimNode) -> list[str]:
    hw, state = node.hardware, node.state
    lines = [f"node:      {node.name} ({hw.product_name}, kind {state.kind})",
             f"cpu:       {hw.cpu.sockets}x {hw.cpu.model}, {hw.cpu.threads} threads, "
             f"{hw.cpu.numa_nodes} NUMA nodes; memory {hw.memory_gib} GiB",
             f"fabric:    {len(hw.nvswitches)} NVSwitches; NICs "
             + ", ".join(f"{n.name} ({n.role})" for n in hw.nics),
             f"storage:   OS {hw.storage.os.capacity_tb:.2f} TB RAID {hw.storage.os.raid}, "
             f"cache {hw.storage.cache.capacity_tb:.2f} TB RAID {hw.storage.cache.raid}; "
             f"TPM {hw.security.tpm}, self-encrypting drives "
             f"{'locked' if state.drives_locked else 'unlocked'}",
             f"mig config: {state.mig_config or '-'} ({state.mig_config_state or '-'})",
             f"generation: {state.generation}"]
    for gpu in state.gpus:
        g = hw.gpu(gpu.index)
        mode = "MIG" if gpu.mig_enabled else "full"
        if gpu.reset_pending:
            mode += f" (reset pending: MIG {'on' if gpu.mig_pending else 'off'})"
        lines.append(f"GPU {g.index}  {g.uuid}  {g.pci_bus_id}  switch {g.pcie_switch}  "
                     f"NUMA {g.numa_node}  {mode}"
                     + (f"  -> {state.allocations[g.uuid]}" if g.uuid in state.allocations
                        else ""))
        for dev in node.mig_devices(gpu.index):
            owner = state.allocations.get(dev.uuid)
            lines.append(f"  {dev.profile:<11} GI {dev.gi.gi_id:>2} CI {dev.ci.ci_id}  "
                         f"{dev.gi.start}:{dev.gi.size}  {dev.uuid}"
                         + (f"  -> {owner}" if owner else ""))
    return lines


def cmd_allocate(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        node.allocate(args.device, args.owner)
    print(f"{args.device} allocated to {args.owner}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        node.release(args.device)
        state = node.state.mig_config_state
    print(f"{args.device} released" + (f"; MIG config now {state}" if state else ""))
    return 0


def cmd_reboot(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        node.reboot()
    print("node rebooted: MIG modes kept, GPU instances and allocations cleared")
    return 0
