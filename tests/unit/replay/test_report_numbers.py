"""The report's numbers on synthetic cluster objects: allocation ratio, MIG fragmentation,
pending, per-pod wait/run/completion and outcome, time averages, and the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgxsim.commands import pyplot
from dgxsim.replay.compare import COMPARE_CSV, write_compare
from dgxsim.replay.plan import PlannedPod
from dgxsim.replay.plots import draw_timeline, draw_waits
from dgxsim.replay.report import (
    outcome_of,
    read_outcomes,
    read_samples,
    summarize,
    time_mean,
    write_report,
)
from dgxsim.replay.snapshot import Sample, fragmented_slices, take_sample
from gpumodel.vocabulary import NODE_LABEL, SIM_FINISHED_ANNOTATION, SIM_STARTED_ANNOTATION

JSON = dict[str, Any]


def node(name: str, allocatable: dict[str, str], dgx: bool = True) -> JSON:
    labels = {NODE_LABEL: "true"} if dgx else {}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": allocatable}}


def pod(name: str, limits: dict[str, int], node_name: str | None = None,
        phase: str = "Pending", annotations: dict[str, str] | None = None,
        conditions: list[JSON] | None = None) -> JSON:
    spec: JSON = {"containers": [{"name": "main", "resources": {
        "limits": {k: str(v) for k, v in limits.items()}}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "r", "annotations": annotations or {}},
            "spec": spec, "status": {"phase": phase, "conditions": conditions or []}}


MIG3, MIG1, GPU = "nvidia.com/mig-3g.20gb", "nvidia.com/mig-1g.5gb", "nvidia.com/gpu"


def test_allocation_counts_whole_gpus_and_mig_compute_slices_over_all_gpus() -> None:
    nodes = [node("dgx-0", {GPU: "6", MIG3: "2", MIG1: "2"}), node("dgx-1", {GPU: "8"}),
             node("cpu-0", {"cpu": "8"}, dgx=False)]
    pods = [pod("w", {GPU: 2}, "dgx-0", "Running"), pod("m", {MIG3: 1}, "dgx-0", "Running"),
            pod("done", {GPU: 8}, "dgx-1", "Succeeded"), pod("wait", {GPU: 1})]
    sample = take_sample(60.0, nodes, pods, gpus_per_node=8, slices_per_gpu=7)
    assert sample.total_gpus == 16
    assert sample.allocated_gpus == pytest.approx(2 + 3 / 7)
    assert sample.allocation_ratio == pytest.approx((2 + 3 / 7) / 16)
    assert (sample.running, sample.pending) == (2, 1)
    # free: one 3g (3 slices) and two 1g (2 slices); a pending whole GPU can use none
    assert sample.free_mig_slices == 5 and sample.fragmented_slices == 5


def test_free_devices_a_pending_request_can_take_are_not_fragmentation() -> None:
    free = {MIG3: 2, MIG1: 3}
    assert fragmented_slices(_counter(free), _counter({MIG3: 1})) == 3 + 3
    assert fragmented_slices(_counter(free), _counter({MIG3: 5, MIG1: 1})) == 2
    assert fragmented_slices(_counter(free), _counter({})) == 0  # idle, not fragmented


def _counter(d: dict[str, int]) -> Any:
    from collections import Counter

    return Counter(d)


def planned(name: str, resource: str | None = GPU) -> PlannedPod:
    return PlannedPod(name=name, line=2, submit_s=10.0, duration_s=100.0, resource=resource,
                      count=1 if resource else 0, gpu_share=1.0 if resource else 0.0,
                      gpu_milli=1000, cpu_milli=1000, memory_mib=1024,
                      trace_phase="Running")


def test_waits_are_measured_on_the_cluster_clock_from_the_replay_origin() -> None:
    done = pod("a", {GPU: 1}, "dgx-0", "Succeeded", annotations={
        SIM_STARTED_ANNOTATION: "1040.25", SIM_FINISHED_ANNOTATION: "1140.25"})
    row = outcome_of(planned("a"), done, created_s=12.0, origin_s=1000.0)
    assert (row.started_s, row.finished_s) == (40.25, 140.25)
    assert (row.wait_s, row.run_s, row.completion_s) == (28.25, 100.0, 128.25)
    assert row.outcome == "succeeded" and row.node == "dgx-0"


def test_every_pod_gets_one_outcome_with_its_reason() -> None:
    stuck = pod("b", {GPU: 8}, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}])
    failed = pod("c", {GPU: 1}, "dgx-1", "Failed")
    failed["status"].update(reason="UnexpectedAdmissionError", message="devices gone")
    rows = [outcome_of(planned("b"), stuck, 5.0, 0.0),
            outcome_of(planned("c"), failed, 5.0, 0.0),
            outcome_of(planned("d", None), None, None, 0.0),
            outcome_of(planned("e"), None, None, 0.0, "not created: forbidden"),
            outcome_of(planned("f"), pod("f", {GPU: 1}, "dgx-0", "Running"), 5.0, 0.0)]
    assert [r.outcome for r in rows] == ["unschedulable", "failed", "skipped", "failed",
                                         "unfinished"]
    assert rows[0].reason == ("Unschedulable: 0/4 nodes are available: 4 Insufficient "
                              "nvidia.com/gpu.")
    assert rows[0].wait_s is None
    assert rows[1].reason == "UnexpectedAdmissionError: devices gone"
    assert rows[3].reason == "not created: forbidden"


def sample(t: float, ratio: float, frag: int = 0, pending: int = 0) -> Sample:
    return Sample(t_s=t, total_gpus=8, allocated_gpus=8 * ratio, allocation_ratio=ratio,
                  free_mig_slices=frag, fragmented_slices=frag, pending=pending, running=0)


def test_time_means_weight_each_sample_by_how_long_it_held() -> None:
    samples = [sample(0, 1.0), sample(10, 0.0), sample(40, 0.5)]
    assert time_mean(samples, "allocation_ratio") == pytest.approx(10 / 40)
    assert time_mean([sample(5, 0.3)], "allocation_ratio") == 0.3
    assert time_mean([], "allocation_ratio") == 0.0


def test_the_summary_averages_over_the_active_span_and_counts_outcomes() -> None:
    ok = pod("a", {GPU: 1}, "dgx-0", "Succeeded", annotations={
        SIM_STARTED_ANNOTATION: "20", SIM_FINISHED_ANNOTATION: "60"})
    rows = [outcome_of(planned("a"), ok, 10.0, 0.0),
            outcome_of(planned("b"), pod("b", {GPU: 8}), 10.0, 0.0)]
    samples = [sample(0, 0.0, pending=1), sample(20, 0.5, pending=1),
               sample(60, 0.0, pending=1), sample(600, 0.0, pending=1)]  # quiet tail
    summary = summarize(rows, samples, trace="t.csv", policy="static",
                        mig_config="all-balanced", speed=1.0, time_scale=60.0)
    assert summary.outcomes == {"succeeded": 1, "unschedulable": 1}
    assert summary.mean_wait_s == 10.0 and summary.mean_completion_s == 50.0
    assert summary.makespan_s == 60.0
    assert summary.mean_allocation_ratio == pytest.approx(0.5 * 40 / 60, abs=1e-4)
    assert summary.peak_allocation_ratio == 0.5


def _report(tmp_path: Path, policy: str, wait_start: str) -> Path:
    ok = pod("a", {GPU: 1}, "dgx-0", "Succeeded", annotations={
        SIM_STARTED_ANNOTATION: wait_start, SIM_FINISHED_ANNOTATION: "100"})
    rows = [outcome_of(planned("a"), ok, 0.0, 0.0)]
    samples = [sample(0, 0.25), sample(100, 0.0)]
    summary = summarize(rows, samples, trace="t.csv", policy=policy,
                        mig_config="all-balanced" if policy == "static" else None, speed=1.0,
                        time_scale=60.0)
    out = tmp_path / policy
    write_report(out, rows, samples, summary)
    return out


def test_reports_read_back_and_compare_side_by_side(tmp_path: Path) -> None:
    static, dynamic = _report(tmp_path, "static", "30"), _report(tmp_path, "dynamic", "5")
    assert read_outcomes(static) == [outcome_of(
        planned("a"), pod("a", {GPU: 1}, "dgx-0", "Succeeded", annotations={
            SIM_STARTED_ANNOTATION: "30", SIM_FINISHED_ANNOTATION: "100"}), 0.0, 0.0)]
    assert read_outcomes(static)[0].node == "dgx-0"
    assert read_samples(dynamic)[0].allocation_ratio == 0.25
    written = write_compare([static, dynamic], tmp_path / "cmp", pyplot())
    assert [p.name for p in written] == [COMPARE_CSV, "compare.png"]
    rows = (tmp_path / "cmp" / COMPARE_CSV).read_text().splitlines()
    assert rows[0] == "measure,static all-balanced,dynamic"
    assert "mean_wait_s,30,5" in rows
    assert written[1].read_bytes()[:4] == b"\x89PNG"


def test_reports_of_different_traces_are_not_compared(tmp_path: Path) -> None:
    static = _report(tmp_path, "static", "30")
    other = _report(tmp_path, "dynamic", "5")
    summary = (other / "summary.json").read_text().replace('"t.csv"', '"u.csv"')
    (other / "summary.json").write_text(summary)
    with pytest.raises(ValueError, match="different traces"):
        write_compare([static, other], tmp_path / "cmp", None)


def test_the_pictures_are_written(tmp_path: Path) -> None:
    plt = pyplot()
    samples = [sample(0, 0.0, 3, 1), sample(60, 0.5, 0, 0)]
    ok = pod("a", {MIG3: 1}, "dgx-0", "Succeeded", annotations={
        SIM_STARTED_ANNOTATION: "20", SIM_FINISHED_ANNOTATION: "60"})
    rows = [outcome_of(planned("a", MIG3), ok, 10.0, 0.0),
            outcome_of(planned("b"), pod("b", {GPU: 8}), 10.0, 0.0)]
    for path in (draw_timeline(plt, samples, "t", tmp_path / "timeline.png"),
                 draw_waits(plt, rows, "t", tmp_path / "waits.png")):
        assert path.read_bytes()[:4] == b"\x89PNG"

