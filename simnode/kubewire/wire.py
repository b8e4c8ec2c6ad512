"""The API server's wire format as the clients here use it: raw answers, timestamps, Events.

The generated ``kubernetes_asyncio`` APIs are called with
``_preload_content=False``: callers read a handful of fields of large objects,
and the generated model classes would only add work (and cannot even read a
Binding's answer). The generated client checks the status only when it reads
the body itself, so a raw answer is checked here, and a refusal becomes the
:mod:`kubewire.errors` class for its status.

Both the node agent and the operator tell users what they did through core/v1
Events (``kubectl describe`` shows them), so an Event's body is built once
here, as a recorder writes it: in the involved object's namespace (``default``
for cluster-scoped objects), named after it, count 1, the message cut at 1024
characters. Recording is best effort, in
:meth:`kubewire.client.KubeClient.record_event`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import orjson
from kubernetes_asyncio.client.exceptions import ApiException

from kubewire.errors import MalformedError, error_for, server_message

__all__ = ["JSON", "MERGE_PATCH", "STRATEGIC_PATCH", "event_body", "now_micro", "now_rfc3339",
           "read_json", "resource_version_of"]

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
ERROR_BODY_LIMIT = 2000
MESSAGE_LIMIT = 1024


def now_rfc3339() -> str:
    """Now, as the API server writes ``Time`` fields (seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """Now, as the API server writes ``MicroTime`` fields (Lease renewals)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resource_version_of(obj: JSON) -> str | None:
    """An object's (or a list's) ``metadata.resourceVersion``, if it has one."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


async def read_json(response: Any, what: str, *, decode: bool = True) -> JSON:
    """The decoded body of a raw answer to call ``what`` (with ``decode`` false, a
    successful answer is read but not decoded: an empty dict).

    A non-2xx answer raises the :class:`~kubewire.errors.KubeError` for its
    status, chained from the ``ApiException`` the generated client would have
    raised (status, reason and up to 2000 characters of the body); a 2xx body
    that is not a JSON object raises :class:`~kubewire.errors.MalformedError`.
    """
    body = await response.read()
    if not 200 <= response.status <= 299:
        text = body.decode(errors="replace")[:ERROR_BODY_LIMIT]
        cause = ApiException(status=response.status, reason=response.reason)
        cause.body = text
        response.release()
        detail = server_message(text) or str(response.reason or "")
        raise error_for(what, response.status, detail) from cause
    if not body or not decode:
        return {}
    try:
        decoded = orjson.loads(body)
    except ValueError as err:
        raise MalformedError(what, response.status, f"not JSON: {body[:200]!r}") from err
    if not isinstance(decoded, dict):
        raise MalformedError(what, response.status, f"not a JSON object: {body[:200]!r}")
    return cast(JSON, decoded)


def event_body(involved: JSON, reason: str, message: str, kind: str, component: str,
               host: str | None = None, involved_kind: str = "Pod") -> JSON:
    """A core/v1 Event about ``involved`` (a Kubernetes object as a dict).

    ``involved_kind`` is used where the object does not say its kind.
    """
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
        "reason": reason, "message": message[:MESSAGE_LIMIT], "type": kind, "source": source,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": host or component,
    }
