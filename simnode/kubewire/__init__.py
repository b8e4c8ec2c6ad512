"""The Kubernetes API at the wire level, shared by the node agent and the operator.

Both components read a handful of fields of large objects, so they call the
generated ``kubernetes_asyncio`` APIs with ``_preload_content=False`` and keep
objects as JSON dicts. This package holds what that needs and nothing more:
opening a client from a kubeconfig (or in-cluster), decoding a raw answer (the
generated client checks the status only when it reads the body itself, so a
raw answer is checked here), and the API server's timestamp formats.
It imports nothing of the project.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = ["JSON", "MERGE_PATCH", "STRATEGIC_PATCH", "ApiException", "now_micro",
           "now_rfc3339", "open_client", "read_json"]

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
