"""core/v1 Events, written as a recorder writes them.

Both the node agent and the operator tell users what they did through Events
(``kubectl describe`` shows them), so the body is built once: in the involved
object's namespace (``default`` for cluster-scoped objects), named after it,
count 1, the message cut at the API server's 1024 characters. Recording is
best effort in :meth:`kubewire.client.KubeClient.record_event`.
"""

from __future__ import annotations

from kubewire.wire import JSON, now_rfc3339

__all__ = ["event_body"]

MESSAGE_LIMIT = 1024


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
