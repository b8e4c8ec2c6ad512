"""NVIDIA's box layouts for ``nvidia-smi mig -lgip``, ``-lgi``, ``-lci`` and ``-lcip``.

Column widths are fixed as in the driver's output, so scripts that cut
columns or parse rows with regular expressions see the same text as on a real
A100. The layouts follow the R470+ drivers (``-lci`` with a Placement column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpumodel.mig import GpuInstanceProfile

LGIP_WIDTH = 79
LGI_WIDTH = 57
LCI_WIDTH = 70
LCIP_WIDTH = 88


def _rule(width: int, fill: str = "-", corner: str = "+") -> str:
    return corner + fill * (width - 2) + corner


def _title(width: int, text: str) -> str:
    return "| " + text.ljust(width - 4) + " |"


def profiles_table(rows: Sequence[tuple[int, GpuInstanceProfile, int, int]]) -> str:
    """``-lgip``: rows of (GPU index, profile, free, total)."""
    out = [_rule(LGIP_WIDTH), _title(LGIP_WIDTH, "GPU instance profiles:"),
           "| GPU   Name             ID    Instances   Memory     P2P    SM    DEC   ENC  |",
           "|                              Free/Total   GiB              CE    JPEG  OFA  |",
           _rule(LGIP_WIDTH, "=", "|")]
    for number, (gpu, spec, free, total) in enumerate(rows):
        if number:
            out.append(_rule(LGIP_WIDTH))
        memory = f"{spec.memory_mib / 1024:.2f}"
        out.append(f"|{gpu:>4}  MIG {spec.name:<13}{spec.profile_id:>3}     "
                   f"{f'{free}/{total}':<11}{memory:<11}{'No':<7}{spec.sms:<7}"
                   f"{spec.decoders:<6}{spec.encoders:<4}|")
        out.append("|" + " " * 61 + f"{spec.copy_engines:<6}{spec.jpeg_decoders:<6}"
                   f"{spec.ofa:<4}|")
    out.append(_rule(LGIP_WIDTH))
    return "\n".join(out)


def gpu_instances_table(rows: Sequence[tuple[int, str, int, int, str]]) -> str:
    """``-lgi``: rows of (GPU index, profile name, profile ID, GI ID, placement)."""
    out = [_rule(LGI_WIDTH), _title(LGI_WIDTH, "GPU instances:"),
           "| GPU   Name             Profile  Instance   Placement  |",
           "|                          ID       ID       Start:Size |",
           _rule(LGI_WIDTH, "=", "|")]
    for number, (gpu, name, profile_id, gi_id, placement) in enumerate(rows):
        if number:
            out.append(_rule(LGI_WIDTH))
        out.append(f"|{gpu:>4}  MIG {name:<16}{profile_id:>2}{gi_id:>9}{'':10}"
                   f"{placement:<8}|")
    out.append(_rule(LGI_WIDTH))
    return "\n".join(out)


def compute_instances_table(rows: Sequence[tuple[int, int, str, int, int, str]]) -> str:
    """``-lci``: rows of (GPU, GI ID, profile name, CI profile ID, CI ID, placement)."""
    out = [_rule(LCI_WIDTH), _title(LCI_WIDTH, "Compute instances:"),
           "| GPU     GPU       Name             Profile   Instance   Placement  |",
           "|       Instance                       ID        ID       Start:Size |",
           "|         ID                                                         |",
           _rule(LCI_WIDTH, "=", "|")]
    for number, (gpu, gi_id, name, profile_id, ci_id, placement) in enumerate(rows):
        if number:
            out.append(_rule(LCI_WIDTH))
        out.append(f"|{gpu:>4}{gi_id:>7}       MIG {name:<16}{profile_id:>2}{ci_id:>10}"
                   f"{'':10}{placement:<8}|")
    out.append(_rule(LCI_WIDTH))
    return "\n".join(out)


@dataclass(frozen=True)
class CiProfileRow:
    """One ``-lcip`` row: a compute-instance profile offered inside one GPU instance."""

    gpu: int
    gi_id: int
    name: str
    profile_id: int
    default: bool
    free: int
    total: int
    sms: int
    gi: GpuInstanceProfile


def compute_profiles_table(rows: Sequence[CiProfileRow]) -> str:
    """``-lcip``: the compute-instance profiles of each GPU instance, ``*`` on the default."""
    out = [_rule(LCIP_WIDTH), _title(LCIP_WIDTH, "Compute instance profiles:"),
           "| GPU     GPU       Name             Profile  Instances   Exclusive       Shared "
           "      |",
           "|       Instance                       ID     Free/Total     SM       DEC   ENC   "
           "OFA  |",
           "|         ID                                                          CE    JPEG  "
           "     |",
           _rule(LCIP_WIDTH, "=", "|")]
    for number, row in enumerate(rows):
        if number:
            out.append(_rule(LCIP_WIDTH))
        marker = "*" if row.default else " "
        out.append(f"|{row.gpu:>4}{row.gi_id:>7}       MIG {row.name:<16}{row.profile_id:>2}"
                   f"{marker}{'':5}{f'{row.free}/{row.total}':<14}{row.sms:<10}"
                   f"{row.gi.decoders:<6}{row.gi.encoders:<6}{row.gi.ofa:<4}|")
        out.append("|" + " " * 70 + f"{row.gi.copy_engines:<6}{row.gi.jpeg_decoders:<10}|")
    out.append(_rule(LCIP_WIDTH))
    return "\n".join(out)
