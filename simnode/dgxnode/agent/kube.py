"""The node agent's view of the API server: the shared client plus what a kubelet adds.

The agent speaks to the API server as a kubelet does: it creates and patches
its Node objects and their status, renews Leases in ``kube-node-lease``, reads
and patches the status of pods bound to its nodes, deletes finished pods that
are being deleted, and records Events. Every call is a method of
:class:`kubewire.KubeClient`; this subclass adds only the three things a
kubelet does its own way: the lease renewal, the final delete of a pod, and
Events signed by the agent.
"""

from __future__ import annotations

import contextlib

from kubewire import JSON, ConflictError, KubeClient, NotFoundError, now_micro, now_rfc3339

__all__ = ["COMPONENT", "JSON", "Kube", "now_micro", "now_rfc3339"]

COMPONENT = "dgxsim-node-agent"
LEASE_NAMESPACE = "kube-node-lease"


class Kube(KubeClient):
    """The API client the agent's controllers share."""

    async def renew_lease(self, node: str, duration_s: int, owner_uid: str | None) -> None:
        """Renew the node's Lease, creating it (owned by the Node) the first time."""
        spec = {"holderIdentity": node, "leaseDurationSeconds": duration_s,
                "renewTime": now_micro()}
        try:
            await self.patch_lease(LEASE_NAMESPACE, node, {"spec": spec}, answer=False)
        except NotFoundError:
            meta: JSON = {"name": node, "namespace": LEASE_NAMESPACE}
            if owner_uid:
                meta["ownerReferences"] = [{
                    "apiVersion": "v1", "kind": "Node", "name": node, "uid": owner_uid}]
            await self.create_lease(LEASE_NAMESPACE, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec})

    async def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Remove a terminated pod for good, as the kubelet does after a graceful delete;
        a pod already gone, or replaced by another of its name, is left alone."""
        with contextlib.suppress(ConflictError):
            await self.delete_pod(namespace, name, uid=uid, grace_period_s=0, missing_ok=True)

    async def event(self, involved: JSON, reason: str, message: str, kind: str = "Normal",
                    host: str | None = None) -> None:
        """Record an Event from the agent (best effort)."""
        await self.record_event(involved, reason, message, kind, component=COMPONENT, host=host)
