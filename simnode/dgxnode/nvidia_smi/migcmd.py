"""``nvidia-smi mig``: list profiles and instances, create and destroy them.

Wording follows the driver's ("Successfully created GPU instance ID 13 on GPU
0 using profile MIG 1g.5gb (ID 19)", "Unable to create a GPU instance on GPU
0 using profile 9: Insufficient Resources") so scripts that grep for it work.
Every change goes through :class:`SimNode`, so placement rules, allocations and
persistence are the node's, not this module's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dgxnode.errors import InstanceNotFoundError, InUseError, MigModeError
from dgxnode.node import SimNode
from dgxnode.nvidia_smi.errors import INVALID_ARGUMENT, NOT_FOUND, OTHER, SmiError
from dgxnode.nvidia_smi.tables import (
    CiProfileRow,
    compute_instances_table,
    compute_profiles_table,
    gpu_instances_table,
    profiles_table,
)
from dgxnode.state import GiState
from gpumodel.errors import (
    InvalidPlacementError,
    NoFreePlacementError,
    PlacementError,
    ProfileLimitError,
    ProfileParseError,
    SliceConflictError,
    UnknownProfileError,
)
from gpumodel.mig import MigProfile, ProfileTable
from gpumodel.placement import placements_text, remaining_capacity

COMMANDS = {
    "-lgip": "lgip", "--list-gpu-instance-profiles": "lgip",
    "-lgipp": "lgipp", "--list-gpu-instance-possible-placements": "lgipp",
    "-lgi": "lgi", "--list-gpu-instances": "lgi",
    "-lci": "lci", "--list-compute-instances": "lci",
    "-lcip": "lcip", "--list-compute-instance-profiles": "lcip",
    "-cgi": "cgi", "--create-gpu-instance": "cgi",
    "-dgi": "dgi", "--destroy-gpu-instance": "dgi",
    "-cci": "cci", "--create-compute-instance": "cci",
    "-dci": "dci", "--destroy-compute-instance": "dci",
}
OPTIONS = {"-i": "gpus", "--id": "gpus", "-gi": "gis", "--gpu-instance-id": "gis",
           "-ci": "cis", "--compute-instance-id": "cis"}


@dataclass
class MigArgs:
    command: str = ""
    values: str | None = None
    default_ci: bool = False
    gpus: str | None = None
    gis: str | None = None
    cis: str | None = None
    extra: list[str] = field(default_factory=list)


def parse(argv: Sequence[str]) -> MigArgs:
    args = MigArgs()
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token in COMMANDS:
            if args.command:
                raise SmiError(INVALID_ARGUMENT, "Invalid combination of input arguments. "
                              "Please run 'nvidia-smi mig -h' for help.")
            args.command = COMMANDS[token]
            if args.command in ("cgi", "cci") and tokens and not tokens[0].startswith("-"):
                args.values = tokens.pop(0)
        elif token in ("-C", "--default-compute-instance"):
            args.default_ci = True
        elif token in OPTIONS and tokens:
            setattr(args, OPTIONS[token], tokens.pop(0))
        else:
            raise SmiError(INVALID_ARGUMENT, f'Invalid parameter "{token}". Please run '
                          f"'nvidia-smi mig -h' for help.")
    if not args.command:
        raise SmiError(INVALID_ARGUMENT, "Invalid combination of input arguments. "
                      "Please run 'nvidia-smi mig -h' for help.")
    if args.command == "cgi" and not args.values:
        raise SmiError(INVALID_ARGUMENT, "Missing GPU instance profile ID or name for -cgi.")
    return args


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise SmiError(INVALID_ARGUMENT, f"Invalid {what} \"{text}\".") from None


def mig_gpus(node: SimNode, selected: list[int]) -> list[int]:
    enabled = [i for i in selected if node.state.gpu(i).mig_enabled]
    if not enabled:
        raise SmiError(NOT_FOUND, "No MIG-enabled devices found.")
    return enabled


def run(node: SimNode, args: MigArgs, selected: list[int]) -> list[str]:
    gpus = mig_gpus(node, selected)
    handler = {"lgip": _lgip, "lgipp": _lgipp, "lgi": _lgi, "lci": _lci, "lcip": _lcip,
               "cgi": _cgi,
               "dgi": _dgi, "cci": _cci, "dci": _dci}[args.command]
    return handler(node, args, gpus)


def _table(node: SimNode) -> ProfileTable:
    if node.table is None:  # mig_gpus() already refused GPUs without MIG
        raise SmiError(NOT_FOUND, "No MIG-enabled devices found.")
    return node.table


def _lgip(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    rows = [(i, spec, remaining_capacity(table, node.state.gpu(i).gis, spec.name),
             spec.max_per_gpu) for i in gpus for spec in table.profiles]
    return profiles_table(rows).splitlines()


def _lgipp(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    return [f"GPU {i:>2} Profile ID {spec.profile_id:>2} "
            f"{'Placements:' if len(spec.starts) > 1 else 'Placement :'} "
            f"{placements_text(spec)}" for i in gpus for spec in table.profiles]


def _order(node: SimNode, profile: str) -> int:
    return _table(node).names().index(profile)


def _lgi(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    wanted = _ints(args.gis, "GPU instance ID")
    rows = [(i, gi.profile, table.get(gi.profile).profile_id, gi.gi_id, f"{gi.start}:{gi.size}")
            for i in gpus
            for gi in sorted(node.state.gpu(i).gis, key=lambda g: (_order(node, g.profile),
                                                                    g.gi_id))
            if wanted is None or gi.gi_id in wanted]
    if not rows:
        raise SmiError(NOT_FOUND, "No GPU instances found: Not Found")
    return gpu_instances_table(rows).splitlines()


def _lci(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    gis, cis = _ints(args.gis, "GPU instance ID"), _ints(args.cis, "compute instance ID")
    rows = [(i, dev.gi.gi_id, dev.profile, table.ci_profile_id(dev.ci.slices), dev.ci.ci_id,
             f"{dev.ci.start}:{dev.ci.slices}")
            for i in gpus
            for dev in sorted(node.mig_devices(i), key=lambda d: (_order(node, d.gi.profile),
                                                                   d.gi.gi_id, d.ci.ci_id))
            if (gis is None or dev.gi.gi_id in gis) and (cis is None or dev.ci.ci_id in cis)]
    if not rows:
        raise SmiError(NOT_FOUND, "No compute instances found: Not Found")
    return compute_instances_table(rows).splitlines()


def _lcip(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    """The compute-instance profiles each GPU instance offers, and how many are still free."""
    table = _table(node)
    wanted = _ints(args.gis, "GPU instance ID")
    rows = [row for i in gpus
            for gi in sorted(node.state.gpu(i).gis, key=lambda g: (_order(node, g.profile),
                                                                    g.gi_id))
            if wanted is None or gi.gi_id in wanted
            for row in _ci_profile_rows(table, i, gi)]
    if not rows:
        raise SmiError(NOT_FOUND, "No GPU instances found: Not Found")
    return compute_profiles_table(rows).splitlines()


def _ci_profile_rows(table: ProfileTable, gpu: int, gi: GiState) -> list[CiProfileRow]:
    spec = table.get(gi.profile)
    free_slices = spec.compute_slices - sum(ci.slices for ci in gi.cis)
    rows = []
    for slices in spec.compute_instance_slices:
        total = spec.compute_slices // slices
        used = sum(1 for ci in gi.cis if ci.slices == slices)
        free = max(0, min(total - used, free_slices // slices))
        name = spec.name if slices == spec.compute_slices else f"{slices}c.{spec.name}"
        rows.append(CiProfileRow(
            gpu=gpu, gi_id=gi.gi_id, name=name, profile_id=table.ci_profile_id(slices),
            default=slices == spec.compute_slices, free=free, total=total,
            sms=spec.sms * slices // spec.compute_slices, gi=spec))
    return rows


def _reason(err: Exception) -> tuple[int, str]:
    if isinstance(err, (NoFreePlacementError, SliceConflictError, ProfileLimitError)):
        return OTHER, "Insufficient Resources"
    if isinstance(err, InUseError):
        return OTHER, "In use by another client"
    if isinstance(err, InstanceNotFoundError):
        return NOT_FOUND, "Not Found"
    if isinstance(err, MigModeError):
        return OTHER, "Not Supported"
    return INVALID_ARGUMENT, "Invalid Argument"


def _cgi(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    out: list[str] = []
    for i in gpus:
        for item in (args.values or "").split(","):
            name, _, where = item.partition(":")
            try:
                spec = table.get(int(name) if name.isdigit() else name)
                start = int(where) if where else None
                gi = node.create_gi(i, spec.name, start, default_ci=args.default_ci)
            except (UnknownProfileError, InvalidPlacementError, PlacementError,
                    InstanceNotFoundError, ValueError) as err:
                code, why = _reason(err)
                raise SmiError(code, *out, f"Unable to create a GPU instance on GPU {i:>2} using "
                              f"profile {item}: {why}",
                              f"Failed to create GPU instances: {why}") from err
            out.append(f"Successfully created GPU instance ID {gi.gi_id:>2} on GPU {i:>2} "
                       f"using profile MIG {spec.name} (ID {spec.profile_id:>2})")
            if args.default_ci:
                out.append(f"Successfully created compute instance ID  0 on GPU {i:>2} GPU "
                           f"instance ID {gi.gi_id:>2} using profile MIG {spec.name} "
                           f"(ID {table.ci_profile_id(spec.compute_slices):>2})")
    return out


def _dgi(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    wanted = _ints(args.gis, "GPU instance ID")
    out: list[str] = []
    for i in gpus:
        ids = wanted if wanted is not None else sorted(g.gi_id for g in node.state.gpu(i).gis)
        for gi_id in ids:
            try:
                node.destroy_gi(i, gi_id)
            except (PlacementError, InstanceNotFoundError) as err:
                code, why = _reason(err)
                raise SmiError(code, *out, f"Unable to destroy GPU instance ID {gi_id:>2} from "
                              f"GPU {i:>2}: {why}",
                              f"Failed to destroy GPU instances: {why}") from err
            out.append(f"Successfully destroyed GPU instance ID {gi_id:>2} from GPU {i:>2}")
    if not out:
        raise SmiError(NOT_FOUND, "No GPU instances found: Not Found")
    return out


def _cci(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    table = _table(node)
    wanted = _ints(args.gis, "GPU instance ID")
    profiles = _ci_profile_ids(table, args.values)
    out: list[str] = []
    for i in gpus:
        gis = [g for g in node.state.gpu(i).gis if wanted is None or g.gi_id in wanted]
        for gi in gis:
            spec = table.get(gi.profile)
            for pid in profiles or [table.ci_profile_id(spec.compute_slices)]:
                try:
                    slices = table.ci_slices_for_id(pid)
                    ci = node.create_ci(i, gi.gi_id, slices)
                except (PlacementError, InstanceNotFoundError, UnknownProfileError) as err:
                    code, why = _reason(err)
                    raise SmiError(code, *out, f"Unable to create a compute instance on GPU "
                                  f"{i:>2} GPU instance ID {gi.gi_id:>2} using profile {pid}: "
                                  f"{why}", f"Failed to create compute instances: {why}"
                                  ) from err
                name = spec.name if slices == spec.compute_slices else f"{slices}c.{spec.name}"
                out.append(f"Successfully created compute instance ID {ci.ci_id:>2} on GPU "
                           f"{i:>2} GPU instance ID {gi.gi_id:>2} using profile MIG {name} "
                           f"(ID {pid:>2})")
    if not out:
        raise SmiError(NOT_FOUND, "No GPU instances found: Not Found")
    return out


def _ci_profile_ids(table: ProfileTable, values: str | None) -> list[int] | None:
    """``-cci`` takes profile IDs or names (``0``, ``1c.2g.10gb``, ``4g.20gb``)."""
    if values is None:
        return None
    ids = []
    for token in values.split(","):
        if token.isdigit():
            ids.append(int(token))
            continue
        try:
            ids.append(table.ci_profile_id(MigProfile.parse(token).compute_slices))
        except (ProfileParseError, KeyError):
            raise SmiError(INVALID_ARGUMENT, f'Invalid compute instance profile ID '
                           f'"{token}".') from None
    return ids


def _dci(node: SimNode, args: MigArgs, gpus: list[int]) -> list[str]:
    gis, cis = _ints(args.gis, "GPU instance ID"), _ints(args.cis, "compute instance ID")
    out: list[str] = []
    for i in gpus:
        targets = [(d.gi.gi_id, d.ci.ci_id) for d in node.mig_devices(i)
                   if (gis is None or d.gi.gi_id in gis) and (cis is None or d.ci.ci_id in cis)]
        for gi_id, ci_id in targets:
            try:
                node.destroy_ci(i, gi_id, ci_id)
            except (PlacementError, InstanceNotFoundError) as err:
                code, why = _reason(err)
                raise SmiError(code, *out, f"Unable to destroy compute instance ID {ci_id:>2} "
                              f"from GPU {i:>2} GPU instance ID {gi_id:>2}: {why}",
                              f"Failed to destroy compute instances: {why}") from err
            out.append(f"Successfully destroyed compute instance ID {ci_id:>2} from GPU "
                       f"{i:>2} GPU instance ID {gi_id:>2}")
    if not out:
        raise SmiError(NOT_FOUND, "No compute instances found: Not Found")
    return out
