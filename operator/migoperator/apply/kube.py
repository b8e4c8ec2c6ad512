"""The operator's view of the API server: the shared client plus the DGXJob resource.

Every call is a method of :class:`kubewire.KubeClient` and fails with the
:mod:`kubewire.errors` family (``ConflictError`` for 409, ``NotFoundError`` for
404, each saying which call failed). This subclass adds what only the operator
does: DGXJobs and their CRD, creates that are idempotent (a retried placement
finds its pod, a namespace or CRD may already exist), and Events signed by the
operator.
"""

from __future__ import annotations

from kubewire import JSON, ConflictError, CustomResource, KubeClient, now_rfc3339, or_none
from migoperator.models import GROUP, PLURAL, VERSION

__all__ = ["COMPONENT", "DGXJOBS", "JSON", "Kube", "now_rfc3339"]

COMPONENT = "dgxsim-operator"
DGXJOBS = CustomResource(GROUP, VERSION, PLURAL)


class Kube(KubeClient):
    """The API client the operator's controllers share."""

    async def create_pod(self, namespace: str, body: JSON) -> JSON:
        """Create a pod; if one of that name exists, return it (creation is idempotent)."""
        try:
            return await super().create_pod(namespace, body)
        except ConflictError:
            return await self.read_pod(namespace, body["metadata"]["name"])

    async def ensure_namespace(self, name: str) -> None:
        try:
            await self.create_namespace(name)
        except ConflictError:
            return

    # ------------------------------------------------------------ DGXJobs and the CRD

    async def list_jobs(self) -> list[JSON]:
        """Every DGXJob of every namespace."""
        return (await self.list_custom_objects(DGXJOBS)).items

    async def get_job(self, namespace: str, name: str) -> JSON | None:
        return await or_none(self.read_custom_object(DGXJOBS, namespace, name))

    async def patch_job_status(self, namespace: str, name: str, status: JSON) -> JSON:
        return await self.patch_custom_object_status(DGXJOBS, namespace, name,
                                                     {"status": status})

    async def apply_crd(self, manifest: JSON) -> str:
        """Create the CRD, or update it in place; returns ``created`` or ``updated``."""
        name = manifest["metadata"]["name"]
        try:
            await self.create_crd(manifest)
            return "created"
        except ConflictError:
            current = await self.read_crd(name)
            body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion":
                                              current["metadata"]["resourceVersion"]}}
            await self.replace_crd(name, body)
            return "updated"

    async def crd_established(self, name: str) -> bool:
        conditions = ((await self.read_crd(name)).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions)

    # ------------------------------------------------------------ events

    async def event(self, involved: JSON, reason: str, message: str,
                    kind: str = "Normal") -> None:
        """Record an Event from the operator (best effort)."""
        await self.record_event(involved, reason, message, kind, component=COMPONENT,
                                involved_kind="Node")

    async def node_events(self, node: str) -> list[JSON]:
        field = f"involvedObject.kind=Node,involvedObject.name={node}"
        return (await self.list_events(field_selector=field)).items
