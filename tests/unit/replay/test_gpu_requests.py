"""From trace rows to pods: the gpu_milli -> MIG profile rule, time scaling, the Pod body,
and the sample trace's generator being deterministic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dgxsim.replay.driver import pod_body, policy_labels
from dgxsim.replay.plan import MigRule, plan_pods, pod_name
from dgxsim.replay.trace import TRACE_COLUMNS, parse_trace
from gpumodel.mig import profile_table
from gpumodel.vocabulary import DURATION_ANNOTATION, MIG_CONFIG, MIG_POLICY

A100_40GB = MigRule.of(profile_table("a100-40gb"))
A100_80GB = MigRule.of(profile_table("a100-80gb"))
ROOT = Path(__file__).parents[3]


@pytest.mark.parametrize(("gpu_milli", "profile"), [
    (1, "1g.5gb"), (142, "1g.5gb"),      # 142/1000 <= 1/7 = 0.142857...
    (143, "2g.10gb"), (285, "2g.10gb"),  # 2/7 = 0.2857...
    (286, "3g.20gb"), (428, "3g.20gb"),  # 3/7 = 0.4285...
    (429, "4g.20gb"), (571, "4g.20gb"),  # 4/7 = 0.5714...
    (572, "7g.40gb"), (999, "7g.40gb"),  # no 5g or 6g profile: the whole-GPU instance
])
def test_a_share_maps_to_the_smallest_profile_whose_compute_share_covers_it(
        gpu_milli: int, profile: str) -> None:
    assert A100_40GB.profile_for(gpu_milli) == profile


def test_the_rule_follows_the_gpu_kind_and_refuses_a_whole_gpu() -> None:
    assert A100_80GB.profile_for(300) == "3g.40gb"
    assert A100_80GB.profile_for(100) == "1g.10gb"
    with pytest.raises(ValueError, match="not a fraction"):
        A100_40GB.profile_for(1000)


def _trace(*rows: str) -> str:
    return ",".join(TRACE_COLUMNS) + "\n" + "\n".join(rows) + "\n"


def test_arrivals_count_from_the_first_creation_and_speed_divides_arrivals_and_runs() -> None:
    trace = parse_trace(_trace(
        "B-Pod_1,8000,30517,1,470,,BE,Running,1000,1600,1000",
        "a,88000,327680,8,1000,,Burstable,Succeeded,400,1000,500",
        "cpu,20000,65536,0,0,,LS,Running,700,800,700",
        "late,4000,15258,1,1000,,LS,Pending,1000,1090,"), "t.csv")
    pods = plan_pods(trace.lines, A100_40GB, speed=2.0)
    assert [p.name for p in pods] == ["a", "cpu", "b-pod-1", "late"]
    a, cpu, frac, late = pods
    assert (a.submit_s, a.duration_s) == (0.0, 250.0)   # (1000 - 500) / 2
    assert (a.resource, a.count, a.gpu_share) == ("nvidia.com/gpu", 8, 8.0)
    assert (frac.submit_s, frac.duration_s) == (300.0, 300.0)
    assert (frac.resource, frac.count) == ("nvidia.com/mig-4g.20gb", 1)
    assert frac.gpu_share == pytest.approx(4 / 7)
    assert cpu.skipped and cpu.resource is None
    assert late.duration_s == 45.0  # never scheduled: deletion - creation


def test_pod_names_become_dns_labels_and_clashes_are_refused() -> None:
    assert pod_name("openb-pod-0017") == "openb-pod-0017"
    assert pod_name("Job_7.A") == "job-7-a"
    with pytest.raises(ValueError, match="no letter or digit"):
        pod_name("__")
    trace = parse_trace(_trace("Pod_A,1,1,1,1000,,LS,Running,0,10,0",
                               "pod-a,1,1,1,1000,,LS,Running,0,10,0"), "t.csv")
    with pytest.raises(ValueError, match="same pod name: pod-a"):
        plan_pods(trace.lines, A100_40GB, 1.0)


def test_the_pod_asks_for_its_device_and_carries_its_run_time() -> None:
    trace = parse_trace(_trace("p,6000,12288,1,200,,BE,Running,0,90.5,0"), "t.csv")
    [pod] = plan_pods(trace.lines, A100_40GB, 1.0)
    body = pod_body(pod, "replay-static", "sample")
    container = body["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "6000m", "memory": "12288Mi"},
                                      "limits": {"nvidia.com/mig-2g.10gb": "1"}}
    assert body["metadata"]["annotations"] == {DURATION_ANNOTATION: "90.500"}
    assert body["metadata"]["namespace"] == "replay-static"
    assert body["spec"]["restartPolicy"] == "Never"


def test_policies_label_a_layout_first_and_the_dynamic_policy_after() -> None:
    static, then = policy_labels("static", "all-balanced")
    assert static[MIG_CONFIG] == "all-balanced" and static[MIG_POLICY] is None and then is None
    start, then = policy_labels("dynamic", None)
    assert start[MIG_CONFIG] == "all-disabled" and then == {MIG_POLICY: "dynamic"}


def test_the_generator_writes_the_shipped_sample_again(tmp_path: Path) -> None:
    script = ROOT / "examples" / "traces" / "generate_sample.py"
    spec = importlib.util.spec_from_file_location("generate_sample", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "again.csv"
    assert module.main(["generate_sample.py", str(out)]) == 0
    assert out.read_text() == (ROOT / "examples" / "traces" / "sample.csv").read_text()
