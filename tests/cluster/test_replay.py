"""`dgxsim replay` end to end: a cut of the shipped trace on four simulated nodes, under
the static all-balanced layout and under the dynamic policy, then `dgxsim replay-compare`.

Every pod of the cut must be accounted for in each report, with the outcome the
policy implies: all-balanced has no whole GPU and no 4g or 7g slot, so those
pods are unschedulable with the scheduler's reason while the small MIG pods run;
the dynamic policy carves what is asked, so whole-GPU pods run too.
"""

from __future__ import annotations

import csv
from pathlib import Path

from kube import dgxsim

from dgxsim.replay.report import read_outcomes, read_summary

SAMPLE = Path(__file__).parents[2] / "examples" / "traces" / "sample.csv"
CUT_ROWS = 40
SMALL_MIG = ("nvidia.com/mig-1g.5gb", "nvidia.com/mig-2g.10gb", "nvidia.com/mig-3g.20gb")



def cut_of_sample(path: Path) -> list[dict[str, str]]:
    lines = SAMPLE.read_text().splitlines()[:CUT_ROWS + 1]
    path.write_text("\n".join(lines) + "\n")
    return list(csv.DictReader(lines))


def replay(trace: Path, state: Path, report: Path, *policy: str) -> str:
    done = dgxsim("replay", str(trace), "--state-dir", str(state), "--report", str(report),
                  "--stall-timeout", "15", "--progress-every", "2", *policy)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("pods.csv", "samples.csv", "summary.json", "timeline.png", "waits.png"):
        assert (report / name).stat().st_size > 0, name
    return done.stdout


def accounted(report: Path, rows: list[dict[str, str]]) -> dict[str, str]:
    """Every trace row has one outcome; CPU-only rows are the skipped ones."""
    outcomes = {o.name: o for o in read_outcomes(report)}
    assert sorted(outcomes) == sorted(r["name"] for r in rows)
    for row in rows:
        o = outcomes[row["name"]]
        assert (o.outcome == "skipped") == (row["num_gpu"] == "0"), o
        assert o.outcome in ("succeeded", "unschedulable", "skipped"), o
        if o.outcome == "unschedulable":
            assert o.reason.startswith("Unschedulable: 0/4 nodes are available"), o
        if o.outcome == "succeeded":
            assert o.wait_s is not None and o.wait_s >= 0 and o.run_s and o.run_s > 0, o
    return {name: o.request for name, o in outcomes.items()}


def test_replay_static_and_dynamic_account_for_every_pod(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    trace = tmp_path / "cut.csv"
    rows = cut_of_sample(trace)
    up = dgxsim("up", "--nodes", "4", "--state-dir", str(state), "--time-scale", "60")
    assert up.returncode == 0, up.stderr
    try:
        out = replay(trace, state, tmp_path / "static", "--policy", "static",
                     "--mig-config", "all-balanced")
        assert "created" in out and "unschedulable" in out  # progress lines
        requests = accounted(tmp_path / "static", rows)
        static = {o.name: o for o in read_outcomes(tmp_path / "static")}
        for name, request in requests.items():
            if request.startswith("nvidia.com/gpu"):
                assert static[name].outcome == "unschedulable"
                assert "Insufficient nvidia.com/gpu" in static[name].reason
            if request.split(" ")[0] in SMALL_MIG:
                assert static[name].outcome == "succeeded", static[name]

        replay(trace, state, tmp_path / "dynamic", "--policy", "dynamic")
        accounted(tmp_path / "dynamic", rows)
        dynamic = read_outcomes(tmp_path / "dynamic")
        assert any(o.request == "nvidia.com/gpu x1" and o.outcome == "succeeded"
                   for o in dynamic)
        assert read_summary(tmp_path / "dynamic").peak_allocation_ratio > 0

        compare = dgxsim("replay-compare", str(tmp_path / "static"), str(tmp_path / "dynamic"),
                         "--out", str(tmp_path / "cmp"))
        assert compare.returncode == 0, compare.stderr
        assert compare.stdout.splitlines()[0] == "measure,static all-balanced,dynamic"
        assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    finally:
        down = dgxsim("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
