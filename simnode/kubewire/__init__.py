"""The Kubernetes API at the wire level, shared by the node agent and the operator.

Both components read a handful of fields of large objects, so they call the
generated ``kubernetes_asyncio`` APIs with ``_preload_content=False`` and keep
objects as JSON dicts. This package holds what that needs and nothing more:
opening a client from a kubeconfig (or in-cluster), decoding a raw answer (the
generated client checks the status only when it reads the body itself, so a
raw answer is checked here), core/v1 Events as recorders write them, and the
API server's timestamp formats.
It imports nothing of the project.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = ["JSON", "MERGE_PATCH", "STRATEGIC_PATCH", "ApiException", "event_body",
           "now_micro", "now_rfc3339", "open_client", "read_json"]

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
ERROR_BODY_LIMIT = 2000


def now_rfc3339() -> str:
    """Now, as the API server writes ``Time`` fields (seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """Now, as the API server writes ``MicroTime`` fields (Lease renewals)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def open_client(kubeconfig: Path | None) -> client.ApiClient:
    """A client for ``kubeconfig``, or the pod's service account when it is None."""
    if kubeconfig is None:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    return await config.new_client_from_config(config_file=str(kubeconfig))


async def read_json(response: Any) -> JSON:
    """The decoded body of a raw answer; a non-2xx answer raises :class:`ApiException`
    with the status, the reason and (up to 2000 characters of) the body."""
    body = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode(errors="replace")[:ERROR_BODY_LIMIT]
        response.release()
        raise error
    return cast(JSON, json.loads(body)) if body else {}


def event_body(involved: JSON, reason: str, message: str, kind: str, component: str,
               host: str | None = None, involved_kind: str = "Pod") -> JSON:
    """A core/v1 Event about ``involved`` (a Kubernetes object as a dict), as a
    recorder writes one: in the object's namespace (``default`` for cluster-scoped
    objects), named after it, count 1, message cut at 1024 characters.
    ``involved_kind`` is used where the object does not say its kind."""
    meta = involved.get("metadata", {})
    source: JSON = {"component": component}
    if host is not None:
        source["host"] = host
    now = now_rfc3339()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.",
                     "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", involved_kind), "name": meta.get("name"),
            "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        "reason": reason, "message": message[:1024], "type": kind, "source": source,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": host or component,
    }
