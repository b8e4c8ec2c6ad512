"""The README's kind walkthrough, kind/cluster.yaml and the kind Makefile targets.

No container engine runs here, so the walkthrough is checked for what can be
checked: every Makefile target it names exists and is documented, every file
it names exists, every manifest it applies passes server-side dry-run on the
real API server, the MIG config it selects is one the chart installs, the
release and namespace it uses are the Makefile's, and each kind target stops
with a clear message when Docker or kind is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_helpers import CHART, REPO_ROOT, find, render
from kube import Cluster

from gpumodel.migparted import parse_mig_parted_config

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"
KIND_TARGETS = ("kind-up", "image", "kind-load", "deploy", "kind-demo", "kind-down")


def walkthrough() -> str:
    text = README.read_text()
    match = re.search(r"^## kind walkthrough\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md has no '## kind walkthrough' section"
    return match.group(1)


def commands() -> list[list[str]]:
    """Each ``$ command`` line of the walkthrough's console blocks, split as a shell would."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", walkthrough(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(shlex.split(line[2:]))
    return found


def documented_targets() -> set[str]:
    return set(re.findall(r"^## ([\w-]+):", MAKEFILE.read_text(), re.M))


def make_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", MAKEFILE.read_text(), re.M)
    assert match, f"Makefile sets no {name}"
    return match.group(1)


def test_walkthrough_goes_from_nothing_to_a_gpu_job_and_a_mig_reconfiguration() -> None:
    steps = [" ".join(c) for c in commands()]
    order = ["make kind-up", "make image", "make kind-load", "make deploy", "helm test",
             "kubectl apply -f kind/gpu-job.yaml", "kubectl wait --for=condition=complete",
             "nvidia.com/mig.config=all-1g.5gb", "=success", "make kind-down"]
    position = 0
    for wanted in order:
        hits = [i for i, step in enumerate(steps) if wanted in step and i >= position]
        assert hits, f"walkthrough lacks {wanted!r} after step {position}: {steps}"
        position = hits[0]
    text = walkthrough()
    assert "job.batch/gpu-job condition met" in text
    assert "Phase:          Succeeded" in text
    assert "success 56 0" in text


def test_every_make_target_it_names_exists_and_is_documented() -> None:
    named = {c[1] for c in commands() if c[0] == "make"}
    named |= set(re.findall(r"`make ([\w-]+)`", walkthrough()))
    assert named >= {"kind-up", "image", "kind-load", "deploy", "kind-down", "kind-demo"}
    assert named <= documented_targets(), named - documented_targets()
    rules = set(re.findall(r"^([\w-]+):", MAKEFILE.read_text(), re.M))
    assert named <= rules


def test_every_file_it_names_exists() -> None:
    text = walkthrough()
    paths = set(re.findall(r"(?<![\w/.-])((?:kind|charts)/[\w./-]+[\w]|Dockerfile)\b", text))
    for command in commands():
        paths |= {a for a in command if a.startswith(("kind/", "charts/"))}
    assert {"kind/cluster.yaml", "kind/gpu-job.yaml", "charts/dgxsim", "Dockerfile"} <= paths
    missing = sorted(p for p in paths if not (REPO_ROOT / p).exists())
    assert not missing, missing


def test_release_namespace_and_image_match_the_makefile() -> None:
    release, namespace = make_variable("RELEASE"), make_variable("RELEASE_NAMESPACE")
    image = f"{make_variable('IMAGE_REPO')}:{make_variable('IMAGE_TAG')}"
    helm_tests = [c for c in commands() if c[:2] == ["helm", "test"]]
    assert helm_tests and all(c[2] == release and c[c.index("-n") + 1] == namespace
                              for c in helm_tests)
    for manifest in ("kind/gpu-job.yaml", "kind/mig-job.yaml"):
        job = yaml.safe_load((REPO_ROOT / manifest).read_text())
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert f"naming to docker.io/library/{image}" in walkthrough()


def test_the_mig_config_it_selects_is_installed_by_the_chart() -> None:
    names = {arg.split("=", 1)[1] for c in commands() for arg in c
             if arg.startswith("nvidia.com/mig.config=")}
    assert names == {"all-1g.5gb"}
    text = find(render(), "ConfigMap", "dgxsim-mig-configs")["data"]["config.yaml"]
    assert names <= set(parse_mig_parted_config(text, "chart").mig_configs)


def test_the_kind_cluster_has_one_control_plane_and_labelled_dgx_workers() -> None:
    config = yaml.safe_load((REPO_ROOT / "kind" / "cluster.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == make_variable("KIND_CLUSTER")
    roles = [n["role"] for n in config["nodes"]]
    assert roles.count("control-plane") == 1
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    assert len(workers) >= 2
    selector = yaml.safe_load((CHART / "values.yaml").read_text())["nodeSelector"]
    for worker in workers:
        assert selector.items() <= worker["labels"].items()
        assert not [m for m in worker.get("extraMounts", [])
                    if "device-plugins" in m.get("containerPath", "")], \
            "each worker's kubelet keeps its own device-plugin directory"
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"


@pytest.mark.cluster
def test_every_manifest_it_applies_passes_server_side_dry_run(control_plane: Cluster) -> None:
    applied = [c[c.index("-f") + 1] for c in commands() if c[:2] == ["kubectl", "apply"]]
    assert applied == ["kind/gpu-job.yaml", "kind/mig-job.yaml"]
    for manifest in applied:
        result = control_plane.kubectl("apply", "--dry-run=server", "-f",
                                       str(REPO_ROOT / manifest), check=False)
        assert result.returncode == 0, f"{manifest}: {result.stderr}"
        assert "(server dry run)" in result.stdout


@pytest.mark.cluster
def test_the_notes_it_quotes_are_what_the_chart_prints(control_plane: Cluster) -> None:
    from chart_helpers import helm

    # --take-ownership: a dry run that only reads NOTES must not trip over objects an
    # earlier test's `dgxsim operator` created in dgxsim-system (its ConfigMap).
    notes = helm("install", "dgxsim", str(CHART), "--namespace", "dgxsim-system",
                 "--dry-run=client", "--take-ownership", "--set", "image.tag=dev",
                 "--kubeconfig", str(control_plane.kubeconfig)).stdout
    block = walkthrough().split("NOTES:\n", 1)[1].split("\n...\n", 1)[0]
    for line in block.splitlines():
        assert line in notes.splitlines(), f"{line!r} is not in the chart's NOTES:\n{notes}"


@pytest.mark.parametrize("target", KIND_TARGETS)
def test_kind_targets_stop_with_a_clear_message_without_docker_or_kind(
        target: str, tmp_path: Path) -> None:
    env = {**os.environ, "MAKEFLAGS": ""}
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"DOCKER={tmp_path}/docker",
         f"KIND={tmp_path}/kind"], cwd=REPO_ROOT, capture_output=True, text=True, env=env,
        timeout=60)
    assert result.returncode != 0
    message = result.stderr
    assert re.search(rf"make [\w-]+: '{tmp_path}/(docker|kind)' not found\. Install ", message), \
        message
    assert "make demo" in message, "the message points at the embedded default"


def test_kind_targets_are_in_make_help() -> None:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert set(KIND_TARGETS) <= listed
