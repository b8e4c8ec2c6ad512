"""The Dockerfile, .dockerignore and the commands the chart runs in the image.

Docker does not run here; these checks hold the image to its contract by
construction: a multi-stage build on python:3.11-slim, no build tools in the
final stage, a numeric non-root user that the chart's securityContext names,
entrypoint ``dgxsim``, only the source folders in the build context, and the
chart's container args accepted by the ``dgxsim`` command line itself.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from chart_helpers import REPO_ROOT, container, find, render

from dgxsim.cli import build_parser

DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "clang", "apt-get install",
               "apk add", "git ")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def stages() -> tuple[dict[str, str], list[Stage]]:
    """ARG defaults before the first FROM, and the stages with their instructions."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    found: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(parts[0], name))
        elif keyword == "ARG" and not found:
            key, _, value = rest.partition("=")
            args[key] = value
        elif found:
            found[-1].instructions.append((keyword, rest))
    return args, found


def final_stage() -> Stage:
    return stages()[1][-1]


def image_uid() -> int:
    users = [rest for keyword, rest in final_stage().instructions if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric so runAsNonRoot can verify it"
    return int(uid)


def test_multi_stage_build_on_python_3_11_slim() -> None:
    args, found = stages()
    assert len(found) >= 2
    for stage in found:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        assert base == "python:3.11-slim", stage.base
    assert found[0].name == "build"
    copies = [rest for keyword, rest in final_stage().instructions if keyword == "COPY"]
    assert copies == ["--from=build /opt/dgxsim /opt/dgxsim"], \
        "the final stage takes only the built virtual environment"


def test_final_stage_has_no_build_tools() -> None:
    for keyword, rest in final_stage().instructions:
        if keyword == "RUN":
            assert not [t for t in BUILD_TOOLS if t in rest], rest
            assert "pip install" not in rest, rest
    build_runs = " ".join(rest for keyword, rest in stages()[1][0].instructions
                          if keyword == "RUN")
    assert "--only-binary=:all:" in build_runs, "dependencies come as wheels: no compiler"


def test_runs_as_a_non_root_user_with_entrypoint_dgxsim() -> None:
    assert image_uid() >= 1000
    entry = [rest for keyword, rest in final_stage().instructions if keyword == "ENTRYPOINT"]
    assert entry == ['["dgxsim"]']
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "dgxsim" in scripts


def test_the_chart_runs_non_root_containers_as_the_image_user() -> None:
    uid = image_uid()
    docs = render()
    assert container(find(docs, "Deployment"))["securityContext"]["runAsUser"] == uid
    assert container(find(docs, "Job"))["securityContext"]["runAsUser"] == uid
    for manifest in ("kind/gpu-job.yaml", "kind/mig-job.yaml"):
        assert f"runAsUser: {uid}" in (REPO_ROOT / manifest).read_text()


def test_build_context_holds_only_the_sources() -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "**", "everything is ignored unless listed"
    allowed = {line[1:].removesuffix("/**") for line in lines if line.startswith("!")}
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["where"]
    assert allowed == {"pyproject.toml", "README.md", *packages}
    for keyword, rest in stages()[1][0].instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert source.rstrip("/") in allowed, source


def test_the_cli_accepts_the_node_daemonset_args() -> None:
    args = container(find(render({"nodeKind": "dgx-a100-640gb", "migStrategy": "single",
                                  "timeScale": 12.5}), "DaemonSet"))["args"]
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.verb) == ("node", "run")
    assert parsed.node_name == "$(NODE_NAME)"
    assert str(parsed.state_dir) == "/var/lib/dgxsim"
    assert parsed.kind == "dgx-a100-640gb"
    assert parsed.mig_strategy == "single"
    assert str(parsed.device_plugin_dir) == "/var/lib/kubelet/device-plugins"
    assert parsed.time_scale == 12.5


def test_the_cli_accepts_the_gpu_test_job_args() -> None:
    args = container(find(render({"gpuTest": {"duration": "2m30s"}}), "Job"))["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "workload"
    assert parsed.duration == "2m30s"


def test_the_operator_settings_accept_the_deployment_env() -> None:
    from migoperator.settings import OperatorSettings

    op = container(find(render(), "Deployment"))
    env = {e["name"]: e["value"] for e in op["env"] if "value" in e}
    assert env, "the chart configures the operator through its environment"
    settings = OperatorSettings.from_env(environ=env)
    assert settings.metrics.host == "0.0.0.0"
    assert settings.kube.install_crd is False, \
        "the chart ships the CRD; the operator's RBAC has no right to create it"


def test_the_cli_accepts_the_operator_deployment_args() -> None:
    args = container(find(render(namespace="gpu-sim"), "Deployment"))["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "operator"
    assert parsed.namespace == "gpu-sim"
    assert parsed.metrics_port == 8080
    assert parsed.liveness_port == 8081
