"""The few Kubernetes API calls the node agent makes, asynchronously, on plain dicts.

The agent speaks to the API server as a kubelet does: it creates and patches
its Node objects and their status, renews Leases in ``kube-node-lease``, reads
and patches the status of pods bound to its nodes, deletes finished pods that
are being deleted, and records Events. Objects stay JSON dicts (responses are
read with ``_preload_content=False``): the agent reads a handful of fields and
model classes would only add work on its hot path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio import client

from kubewire import (
    JSON,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ApiException,
    event_body,
    now_micro,
    now_rfc3339,
    open_client,
    read_json,
)

__all__ = ["JSON", "ApiException", "Kube", "now_micro", "now_rfc3339"]


class Kube:
    """An API client plus the typed APIs the agent uses."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        # Typed as Any: the agent sends dict bodies and request options such as
        # _content_type and _preload_content that the generated signatures omit.
        self.core: Any = client.CoreV1Api(api)
        self.coordination: Any = client.CoordinationV1Api(api)

    @classmethod
    async def from_kubeconfig(cls, path: Path | None) -> Kube:
        return cls(await open_client(path))

    async def close(self) -> None:
        await self.api.close()

    # ------------------------------------------------------------ nodes

    async def get_node(self, name: str) -> JSON | None:
        try:
            return await read_json(await self.core.read_node(name, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def create_node(self, body: JSON) -> JSON:
        return await read_json(await self.core.create_node(body, _preload_content=False))

    async def patch_node(self, name: str, patch: JSON) -> JSON:
        return await read_json(await self.core.patch_node(
            name, patch, _content_type=MERGE_PATCH, _preload_content=False))

    async def patch_node_status(self, name: str, patch: JSON) -> JSON:
        return await read_json(await self.core.patch_node_status(
            name, patch, _content_type=STRATEGIC_PATCH, _preload_content=False))

    async def delete_node(self, name: str) -> None:
        try:
            await self.core.delete_node(name)
        except ApiException as err:
            if err.status != 404:
                raise

    # ------------------------------------------------------------ leases

    async def renew_lease(self, node: str, duration_s: int, owner_uid: str | None) -> None:
        body: JSON = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_s,
                     "renewTime": now_micro()},
        }
        if owner_uid:
            body["metadata"]["ownerReferences"] = [{
                "apiVersion": "v1", "kind": "Node", "name": node, "uid": owner_uid}]
        try:
            await read_json(await self.coordination.patch_namespaced_lease(
                node, "kube-node-lease", {"spec": body["spec"]}, _content_type=MERGE_PATCH,
                _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise
            await read_json(await self.coordination.create_namespaced_lease(
                "kube-node-lease", body, _preload_content=False))

    # ------------------------------------------------------------ pods

    async def list_pods(self, field_selector: str) -> tuple[list[JSON], str]:
        data = await read_json(await self.core.list_pod_for_all_namespaces(
            field_selector=field_selector, _preload_content=False))
        return list(data["items"]), str(data["metadata"]["resourceVersion"])

    async def watch_pods(self, field_selector: str, resource_version: str,
                         timeout_s: int = 300) -> AsyncIterator[tuple[str, JSON]]:
        """Watch events (type, pod) from ``resource_version`` until the server ends it."""
        response = await self.core.list_pod_for_all_namespaces(
            field_selector=field_selector, watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=timeout_s, _preload_content=False)
        if response.status != 200:
            await read_json(response)
        async with response:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                yield str(event["type"]), cast(JSON, event["object"])

    async def patch_pod_status(self, namespace: str, name: str, patch: JSON) -> JSON:
        return await read_json(await self.core.patch_namespaced_pod_status(
            name, namespace, patch, _content_type=STRATEGIC_PATCH, _preload_content=False))

    async def patch_pod(self, namespace: str, name: str, patch: JSON) -> JSON:
        return await read_json(await self.core.patch_namespaced_pod(
            name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False))

    async def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Remove a terminated pod for good, as the kubelet does after a graceful delete."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            await self.core.delete_namespaced_pod(name, namespace, body=body,
                                                  grace_period_seconds=0)
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    # ------------------------------------------------------------ events, config

    async def event(self, involved: JSON, reason: str, message: str, kind: str = "Normal",
                    component: str = "dgxsim-node-agent", host: str | None = None) -> None:
        body = event_body(involved, reason, message, kind, component, host)
        try:
            await read_json(await self.core.create_namespaced_event(
                body["metadata"]["namespace"], body, _preload_content=False))
        except ApiException:
            # Events are best effort, as in the kubelet's recorder.
            return

    async def read_configmap(self, namespace: str, name: str) -> JSON | None:
        try:
            return await read_json(await self.core.read_namespaced_config_map(
                name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise
