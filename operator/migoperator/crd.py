"""The DGXJob CustomResourceDefinition, generated from the pydantic models.

Why generate: the schema the API server enforces and the models the operator
parses with must never disagree. :func:`crd_manifest` turns the models' JSON
schema into a structural OpenAPI v3 schema (references inlined, optional
fields as ``nullable``, free-form maps marked to keep unknown fields, defaults
left to the operator), adds the one cross-field rule as a CEL validation, and
the printer columns ``kubectl get dgxjobs`` shows. A committed copy in
``crds/dgxjob.yaml`` (for the Helm chart and ``kubectl apply``) is kept equal
to it by a test; ``python -m migoperator.crd > crds/dgxjob.yaml`` rewrites it.
"""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

import yaml

from migoperator.models import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    DGXJobSpec,
    DGXJobStatus,
)

JSON = dict[str, Any]
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = "crds/dgxjob.yaml"
_DROPPED = ("title", "default", "additionalProperties")
_PRINTER_COLUMNS = (
    ("Phase", ".status.phase", "string",
     "Pending, Placing, Scheduled, Running, Succeeded or Failed"),
    ("Workload", ".spec.workload", "string", "Workload of the performance model's catalog"),
    ("GPUs", ".status.gpus", "string", "Replicas x GPUs (or MIG devices) per replica"),
    ("Nodes", ".status.nodes", "string", "Nodes the replicas were placed on"),
    ("Predicted", ".status.predicted", "string", "Predicted run time of a replica"),
    ("Age", ".metadata.creationTimestamp", "date", ""),
)
MIG_REPLICA_RULE = {
    "rule": "!has(self.migProfile) || !has(self.gpusPerReplica) || self.gpusPerReplica == 1",
    "message": "a replica gets one MIG device; set gpusPerReplica to 1 with migProfile",
}


def _resolve(node: Any, defs: JSON) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _nullable_union(node: JSON) -> JSON:
    """``anyOf`` of one type and null -> that type, nullable; of several -> free-form."""
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    out: JSON = _structural(options[0]) if len(options) == 1 else {
        "x-kubernetes-preserve-unknown-fields": True}
    if len(options) < len(node["anyOf"]):
        out["nullable"] = True
    return out


def _map_values(extra: JSON) -> JSON:
    """A map's value schema; several scalar types are left for the model to check."""
    if "anyOf" in extra and len([o for o in extra["anyOf"] if o.get("type") != "null"]) > 1:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return {"additionalProperties": _structural(extra)}


def _structural(node: JSON) -> JSON:
    """One JSON-schema node as a structural OpenAPI v3 node (see the module doc)."""
    out: JSON = _nullable_union(node) if "anyOf" in node else {}
    for key, value in node.items():
        if key in _DROPPED or key == "anyOf":
            continue
        if key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in node:
        out.update(_map_values(extra))
    return out


def model_schema(model: type[DGXJobSpec] | type[DGXJobStatus]) -> JSON:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def crd_manifest() -> JSON:
    """The CustomResourceDefinition of ``dgxjobs.dgxsim.io``."""
    spec = model_schema(DGXJobSpec)
    spec["x-kubernetes-validations"] = [MIG_REPLICA_RULE]
    status = model_schema(DGXJobStatus)
    columns = []
    for name, path, kind, description in _PRINTER_COLUMNS:
        column: JSON = {"name": name, "type": kind, "jsonPath": path}
        if description:
            column["description"] = description
        columns.append(column)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR,
                      "listKind": f"{KIND}List", "shortNames": list(SHORT_NAMES)},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A gang of pods running one workload of the performance "
                                   "model, placed by the dgxsim operator.",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                    "required": ["spec"],
                }},
            }],
        },
    }


def crd_yaml() -> str:
    header = ("# Generated by `python -m migoperator.crd` from migoperator/models.py; "
              "do not edit.\n")
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


def committed_crd_yaml() -> str:
    """The copy shipped in the package (``crds/dgxjob.yaml``)."""
    return resources.files("migoperator").joinpath(CRD_FILE).read_text()


if __name__ == "__main__":
    sys.stdout.write(crd_yaml())
