"""The API server's wire format as the clients here use it: raw JSON answers, timestamps.

The generated ``kubernetes_asyncio`` APIs are called with
``_preload_content=False``: callers read a handful of fields of large objects,
and the generated model classes would only add work (and cannot even read a
Binding's answer). The generated client checks the status only when it reads
the body itself, so a raw answer is checked here, and a refusal becomes the
:mod:`kubewire.errors` class for its status.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes_asyncio.client.exceptions import ApiException

from kubewire.errors import MalformedError, error_for, server_message

__all__ = ["JSON", "MERGE_PATCH", "STRATEGIC_PATCH", "now_micro", "now_rfc3339", "read_json",
           "resource_version_of"]

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


def resource_version_of(obj: JSON) -> str | None:
    """An object's (or a list's) ``metadata.resourceVersion``, if it has one."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


async def read_json(response: Any, what: str) -> JSON:
    """The decoded body of a raw answer to call ``what``.

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
    if not body:
        return {}
    try:
        decoded = json.loads(body)
    except ValueError as err:
        raise MalformedError(what, response.status, f"not JSON: {body[:200]!r}") from err
    if not isinstance(decoded, dict):
        raise MalformedError(what, response.status, f"not a JSON object: {body[:200]!r}")
    return cast(JSON, decoded)
