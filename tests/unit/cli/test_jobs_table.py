"""``dgxsim jobs``: simulated run times from the pods' records, the recorded time scale,
and a cluster that does not answer reported as one line."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from dgxsim.cli import main
from dgxsim.clusterfile import ClusterFileError, ClusterSettings, load_settings, save_settings
from dgxsim.commands.jobs import recorded_time_scale, rows, simulated_run_s
from gpumodel.vocabulary import (
    JOB_LABEL,
    PREDICTED_DURATION_ANNOTATION,
    SIM_FINISHED_ANNOTATION,
    SIM_STARTED_ANNOTATION,
)

JSON = dict[str, Any]
SIM, RAN_WALL, PREDICTED = 6, 5, 4


def pod(name: str, labels: JSON, started: str | None = None, finished: str | None = None,
        predicted: str | None = None, node: str = "dgx-0") -> JSON:
    annotations = {key: value for key, value in (
        (SIM_STARTED_ANNOTATION, started), (SIM_FINISHED_ANNOTATION, finished),
        (PREDICTED_DURATION_ANNOTATION, predicted)) if value is not None}
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"nodeName": node}}


def batch_job(name: str, start: str, end: str | None) -> JSON:
    conditions = [{"type": "Complete", "status": "True"}] if end else []
    status = {"startTime": start, "conditions": conditions}
    if end:
        status["completionTime"] = end
    return {"metadata": {"name": name}, "status": status}


def dgxjob(name: str) -> JSON:
    return {"metadata": {"name": name},
            "status": {"phase": "Succeeded", "gpus": 4, "nodes": "dgx-0,dgx-1",
                       "predicted": "1m41s", "startTime": "2025-01-01T00:00:00Z",
                       "completionTime": "2025-01-01T00:00:02Z"}}


def test_a_jobs_simulated_time_is_exact_from_its_pods_records() -> None:
    pods = [pod("train-a", {"job-name": "train"}, "1000.250", "1101.484", "101.234")]
    (row,) = rows([], [batch_job("train", "2025-01-01T00:00:00Z", "2025-01-01T00:00:02Z")],
                  pods, scale=60.0)
    assert row[SIM] == "101.2s"
    assert row[RAN_WALL] == "2s" and row[PREDICTED] == "101.2s"


def test_a_job_of_several_pods_runs_from_the_earliest_start_to_the_latest_finish() -> None:
    labels = {"job-name": "infer"}
    pods = [pod("infer-a", labels, "10.000", "70.500"), pod("infer-b", labels, "5.125", "65.0"),
            pod("other", {"job-name": "x"}, "0", "1000")]
    assert simulated_run_s(pods[:2]) == pytest.approx(65.375)
    (row,) = rows([], [batch_job("infer", "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z")],
                  pods, scale=60.0)
    assert row[SIM] == "65.4s" and row[3] == "2 pods on dgx-0"


def test_a_dgxjob_uses_the_pods_carrying_its_label() -> None:
    pods = [pod("big-r0", {JOB_LABEL: "big"}, "100", "400.5", node="dgx-0"),
            pod("big-r1", {JOB_LABEL: "big"}, "100.5", "401", node="dgx-1")]
    (row,) = rows([dgxjob("big")], [], pods, scale=60.0)
    assert row[:2] == ["big", "DGXJob"] and row[SIM] == "5m01s"


def test_without_records_the_simulated_time_is_wall_time_scaled_and_marked() -> None:
    pods = [pod("old-a", {"job-name": "old"})]
    (row,) = rows([], [batch_job("old", "2025-01-01T00:00:00Z", "2025-01-01T00:00:02Z")],
                  pods, scale=60.0)
    assert row[SIM] == "~2m00s"


def test_a_job_with_a_pod_still_running_has_no_exact_time() -> None:
    labels = {"job-name": "j"}
    pods = [pod("j-a", labels, "1", "2"), pod("j-b", labels, "1", None)]
    assert simulated_run_s(pods) is None
    (row,) = rows([], [batch_job("j", "2025-01-01T00:00:00Z", None)], pods, scale=60.0)
    assert row[SIM] == "-" and row[2] == "Running"


def test_an_unreadable_record_counts_as_absent() -> None:
    assert simulated_run_s([pod("p", {}, "soon", "1")]) is None


def test_the_settings_up_recorded_are_read_back(tmp_path: Path) -> None:
    assert load_settings(tmp_path) is None and recorded_time_scale(tmp_path) == 1.0
    settings = ClusterSettings(nodes=2, kind="dgx-a100-320gb", mig_strategy="mixed",
                               time_scale=60.0)
    save_settings(tmp_path, settings)
    assert load_settings(tmp_path) == settings
    assert recorded_time_scale(tmp_path) == 60.0


def test_a_settings_file_with_unknown_keys_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text(
        '{"version": "v1", "nodes": 1, "kind": "k", "mig_strategy": "mixed", '
        '"time_scale": 2, "speed": 3}')
    with pytest.raises(ClusterFileError, match=r"cluster\.json is unreadable"):
        load_settings(tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_that_does_not_answer_is_one_line_not_an_empty_picture(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{_closed_port()}', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
    assert main(["show", "--kubeconfig", str(kubeconfig)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("dgxsim show: cannot read the cluster: list nodes: no answer: ")
    assert len(err.strip().splitlines()) == 1
