"""The DGXJob CRD: generated from the models, committed copy in step, schema rules."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from migoperator.crd import committed_crd_yaml, crd_manifest, crd_yaml
from migoperator.models import MIG_PROFILE_PATTERN, DGXJobSpec, DGXJobStatus


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema node under ``node`` (properties, items, map values)."""
    found = [node]
    for sub in (node.get("properties") or {}).values():
        found += walk(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += walk(node[key])
    return found


def schema() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_committed_crd_matches_the_models() -> None:
    assert committed_crd_yaml() == crd_yaml(), (
        "crds/dgxjob.yaml is stale: run python -m migoperator.crd > "
        "operator/migoperator/crds/dgxjob.yaml")
    assert yaml.safe_load(committed_crd_yaml()) == crd_manifest()


def test_schema_is_structural() -> None:
    for node in walk(schema()):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node
        assert not ("properties" in node and "additionalProperties" in node)
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields")


def test_schema_limits_replicas_gpus_and_profiles() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["replicas"]["minimum"] == 1
    assert spec["gpusPerReplica"]["maximum"] == 8
    assert spec["migProfile"]["pattern"] == MIG_PROFILE_PATTERN
    assert schema()["properties"]["spec"]["required"] == ["workload"]


def test_printer_columns() -> None:
    version = crd_manifest()["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Workload", "GPUs", "Nodes", "Predicted", "Age"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("profile", ["1g.5gb", "3g.20gb", "1c.3g.20gb", "1g.5gb+me", "7g.80gb"])
def test_profile_pattern_accepts(profile: str) -> None:
    assert re.match(MIG_PROFILE_PATTERN, profile)


@pytest.mark.parametrize("profile", ["", "1g", "8g.40gb", "3g.20GB", "0g.5gb", "1g.5gb+xx",
                                     "nvidia.com/mig-1g.5gb"])
def test_profile_pattern_rejects(profile: str) -> None:
    assert not re.match(MIG_PROFILE_PATTERN, profile)


@pytest.mark.parametrize("bad", [
    {"workload": "gemm", "replicas": -1},
    {"workload": "gemm", "gpusPerReplica": 9},
    {"workload": "gemm", "migProfile": "9g.99gb"},
    {"workload": "gemm", "migProfile": "1g.5gb", "gpusPerReplica": 2},
    {"workload": ""},
    {"workload": "gemm", "surprise": 1},
])
def test_the_model_rejects_what_the_schema_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DGXJobSpec.model_validate(bad)


def test_spec_defaults_and_short_forms() -> None:
    spec = DGXJobSpec.model_validate({"workload": "resnet50-inference", "replicas": 14,
                                      "migProfile": "1g.5gb"})
    assert spec.resource == "nvidia.com/mig-1g.5gb" and spec.per_replica == 1
    assert spec.gpus_text() == "14x 1g.5gb"
    whole = DGXJobSpec.model_validate({"workload": "gemm", "replicas": 2, "gpusPerReplica": 8})
    assert whole.resource == "nvidia.com/gpu" and whole.gpus_text() == "2x8"
    status = DGXJobStatus.model_validate({"phase": "Running", "predictedSeconds": 3.0})
    assert status.model_dump(by_alias=True, exclude_none=True)["predictedSeconds"] == 3.0
