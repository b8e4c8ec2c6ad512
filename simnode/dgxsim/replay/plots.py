"""The replay's pictures: the cluster over time, and each pod's wait.

Drawn with matplotlib through :func:`dgxsim.commands.pyplot` (the optional
``plot`` extra, imported only here, when a picture is drawn). Time is in
simulated minutes since the replay began.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dgxsim.replay.report import PodOutcome
from dgxsim.replay.snapshot import Sample

TIMELINE_PNG = "timeline.png"
WAITS_PNG = "waits.png"
COMPARE_PNG = "compare.png"
COLOURS = {"static": "tab:blue", "dynamic": "tab:orange"}


def _minutes(samples: Sequence[Sample]) -> list[float]:
    return [s.t_s / 60 for s in samples]


def draw_timeline(plt: Any, samples: Sequence[Sample], title: str, path: Path) -> Path:
    """Allocation ratio, MIG slices (free, fragmented) and pending pods over time (all
    samples, the quiet wait before the end included: it shows what stayed pending)."""
    fig, (alloc, slices, pending) = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    t = _minutes(samples)
    alloc.plot(t, [100 * s.allocation_ratio for s in samples], color="tab:green")
    alloc.set_ylabel("GPU allocation %")
    alloc.set_ylim(0, 105)
    slices.plot(t, [s.free_mig_slices for s in samples], label="free MIG slices", color="0.6")
    slices.plot(t, [s.fragmented_slices for s in samples], color="tab:red",
                label="fragmented (no pending request fits)")
    slices.set_ylabel("MIG slices")
    slices.legend(loc="best", fontsize=8)
    pending.step(t, [s.pending for s in samples], where="post", color="tab:purple")
    pending.set_ylabel("pending pods")
    pending.set_xlabel("simulated minutes since the replay began")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _kind(outcome: PodOutcome) -> str:
    if "mig-" in outcome.request:
        return "MIG slice"
    return "1 GPU" if outcome.request.endswith(" x1") else "multi-GPU"


def draw_waits(plt: Any, outcomes: Sequence[PodOutcome], title: str, path: Path) -> Path:
    """Each pod's wait against its creation time, by kind; unschedulable ones on top."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    started = [o for o in outcomes if o.wait_s is not None and o.created_s is not None]
    for kind, marker in (("MIG slice", "o"), ("1 GPU", "s"), ("multi-GPU", "^")):
        mine = [o for o in started if _kind(o) == kind]
        ax.scatter([o.created_s / 60 for o in mine if o.created_s is not None],
                   [o.wait_s for o in mine], marker=marker, label=f"{kind} ({len(mine)})",
                   alpha=0.75)
    stuck = [o for o in outcomes if o.outcome == "unschedulable" and o.created_s is not None]
    if stuck:
        top = max([o.wait_s or 0.0 for o in started] + [1.0]) * 1.1
        ax.scatter([o.created_s / 60 for o in stuck if o.created_s is not None],
                   [top] * len(stuck), marker="x", color="tab:red",
                   label=f"unschedulable ({len(stuck)})")
    ax.set_xlabel("created at (simulated minutes)")
    ax.set_ylabel("wait until started (simulated s)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_compare(plt: Any, runs: Sequence[tuple[str, Sequence[Sample], dict[str, float]]],
                 path: Path) -> Path:
    """Allocation over time of each run; their mean allocation, mean wait (of the pods
    that started) and unschedulable pods as bars (a short wait of few pods is no win)."""
    fig, (line, alloc, wait, stuck) = plt.subplots(
        1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [2.2, 1, 1, 1]})
    names = [name for name, _, _ in runs]
    colours = [COLOURS.get(n.split()[0], f"C{i}") for i, n in enumerate(names)]
    for (name, samples, _), colour in zip(runs, colours, strict=True):
        line.plot(_minutes(samples), [100 * s.allocation_ratio for s in samples], label=name,
                  color=colour)
    line.set_xlabel("simulated minutes")
    line.set_ylabel("GPU allocation %")
    line.set_ylim(0, 105)
    line.legend(fontsize=8)
    _bars(alloc, names, [100 * r["mean_allocation_ratio"] for _, _, r in runs], colours,
          "mean GPU allocation %")
    _bars(wait, names, [r["mean_wait_s"] for _, _, r in runs], colours,
          "mean wait (simulated s)")
    _bars(stuck, names, [r["unschedulable"] for _, _, r in runs], colours,
          "unschedulable pods")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ax: Any, names: list[str], values: list[float], colours: list[str], title: str
          ) -> None:
    bars = ax.bar(range(len(names)), values, color=colours)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n", 1) for n in names], fontsize=8)
    ax.set_title(title, fontsize=10)
