"""``dgxsim mig apply | export | assert | configs | geometries``: MIG layouts from the command line.

``apply`` plays NVIDIA's mig-manager for one node: it resolves a named config
(from the defaults or ``--config FILE``), plans per GPU and applies the plan
(``--dry-run`` prints it). ``export`` and ``assert`` are mig-parted's verbs of
the same names, with its output and exit codes: the current layout as a
mig-parted config, and exit 0 when the node matches a named config (1 when
not). ``geometries`` enumerates the maximal layouts of a GPU kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgxsim.commands import CommandError, add_state_dir, state_dir_of, wait_seconds
from dgxsim.commands.node import open_node

if TYPE_CHECKING:
    from gpumodel.migparted import MigPartedConfig

POLL_S = 0.5


def register(sub: Any) -> None:
    mig = sub.add_parser("mig", help="apply MIG configs and explore MIG layouts")
    verbs = mig.add_subparsers(dest="verb", metavar="VERB", required=True)

    apply = verbs.add_parser("apply", help="apply a named mig-parted config to the node")
    add_state_dir(apply)
    apply.add_argument("name", metavar="NAME")
    apply.add_argument("--config", type=Path, metavar="FILE",
                       help="mig-parted config file (default: the built-in named configs)")
    apply.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    apply.add_argument("--wait", action="store_true",
                       help="if allocations block some GPUs, apply the rest and wait for them")
    apply.add_argument("--timeout", type=wait_seconds, default=0.0, metavar="SECONDS",
                       help="with --wait: give up after this long (default: wait forever)")
    apply.set_defaults(func=cmd_apply)

    export = verbs.add_parser("export", help="print the node's MIG layout as a mig-parted config")
    add_state_dir(export)
    export.add_argument("-o", "--output-format", choices=("yaml", "json"), default="yaml")
    export.add_argument("-l", "--config-label", default="current", metavar="LABEL")
    export.set_defaults(func=cmd_export)

    check = verbs.add_parser("assert", help="exit 0 if the node's layout matches a named config")
    add_state_dir(check)
    check.add_argument("name", metavar="NAME")
    check.add_argument("-f", "--config", type=Path, metavar="FILE",
                       help="mig-parted config file (default: the built-in named configs)")
    check.set_defaults(func=cmd_assert)

    configs = verbs.add_parser("configs", help="list the named configs")
    configs.add_argument("--config", type=Path, metavar="FILE")
    configs.set_defaults(func=cmd_configs)

    geo = verbs.add_parser("geometries", help="enumerate the maximal MIG layouts of one GPU")
    geo.add_argument("--gpu", default="a100-40gb", metavar="KIND")
    geo.add_argument("--profiles", default=None, metavar="P,P,...",
                     help="profiles to combine (default: the base profiles)")
    geo.add_argument("--json", action="store_true", help="print a JSON list, one per layout")
    geo.set_defaults(func=cmd_geometries)


def load_config(path: Path | None) -> MigPartedConfig:
    from gpumodel.errors import GpuModelError
    from gpumodel.migparted import default_mig_configs, parse_mig_parted_config

    if path is None:
        return default_mig_configs()
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise CommandError(f"{path}: not a mig-parted config: byte {err.start} is not UTF-8 "
                           "text (is it a binary file?)") from err
    try:
        return parse_mig_parted_config(text, str(path))
    except GpuModelError as err:
        raise CommandError(str(err)) from err


def cmd_apply(args: argparse.Namespace) -> int:
    from dgxnode.errors import ApplyBlockedError
    from gpumodel.errors import GpuModelError

    config = load_config(args.config)
    with open_node(args) as node:
        try:
            if args.dry_run:
                print(node.plan(args.name, config).describe())
                return 0
            plan = node.apply(args.name, config, wait=args.wait)
        except ApplyBlockedError as err:
            raise CommandError(str(err)) from err
        except GpuModelError as err:
            raise CommandError(str(err)) from err
        print(plan.describe())
        state = node.state.mig_config_state
    if state == "pending":
        return _wait(args, args.name)
    print(f"MIG config {args.name!r}: {state}")
    return 0


def _wait(args: argparse.Namespace, name: str) -> int:
    from dgxnode.node import SimNode
    from dgxnode.store import NodeStore

    store = NodeStore(state_dir_of(args))
    print(f"MIG config {name!r}: pending; waiting for the blocking allocations to be released")
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    while True:
        with store.locked():
            node = SimNode.open(store)
        if node.state.mig_config != name or node.state.mig_config_state != "pending":
            print(f"MIG config {name!r}: {node.state.mig_config_state}")
            return 0 if node.state.mig_config_state == "success" else 1
        if deadline is not None and time.monotonic() >= deadline:
            raise CommandError(f"MIG config {name!r} still pending after {args.timeout:g}s")
        time.sleep(POLL_S)


def cmd_export(args: argparse.Namespace) -> int:
    from gpumodel.migexport import export_spec, render_json, render_yaml

    with open_node(args) as node:
        spec = export_spec(node.current_gpus(), args.config_label)
    text = render_yaml(spec) if args.output_format == "yaml" else render_json(spec)
    sys.stdout.write(text)
    return 0


ASSERT_FAILED = "Assertion failure: selected configuration not currently applied"


def cmd_assert(args: argparse.Namespace) -> int:
    """mig-parted's ``assert``: its message on stdout and 0, or its fatal log line and 1."""
    from gpumodel.errors import GpuModelError
    from gpumodel.migexport import asserts

    config = load_config(args.config)
    with open_node(args) as node:
        gpus = node.current_gpus()
    try:
        applied = asserts(config, args.name, gpus)
    except GpuModelError as err:
        raise CommandError(f"Error selecting MIG config: {err}") from err
    if not applied:
        print(f'level=fatal msg="{ASSERT_FAILED}"', file=sys.stderr)
        return 1
    print("Selected MIG configuration currently applied")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    for name in load_config(args.config).names():
        print(name)
    return 0


def cmd_geometries(args: argparse.Namespace) -> int:
    from gpumodel.errors import GpuModelError
    from gpumodel.geometries import maximal_geometries
    from gpumodel.mig import profile_table

    try:
        table = profile_table(args.gpu)
        names = args.profiles.split(",") if args.profiles else None
        layouts = maximal_geometries(table, names)
    except (GpuModelError, KeyError) as err:
        raise CommandError(str(err).strip("'\"")) from err
    if args.json:
        print(json.dumps([{"profiles": g.profiles,
                           "placements": [p.model_dump() for p in g.placements]}
                          for g in layouts], indent=2))
        return 0
    print(f"{len(layouts)} maximal layouts of {args.gpu} over "
          f"{', '.join(names or table.base_profile_names())}:")
    for number, geometry in enumerate(layouts, start=1):
        slots = " ".join(f"{p.profile}@{p.start}" for p in geometry.placements)
        print(f"{number:>3}. {geometry.label():<40} {slots}")
    return 0
