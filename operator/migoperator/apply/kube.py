"""The Kubernetes API calls the operator makes, asynchronously, on plain dicts.

Why dicts and ``_preload_content=False``: the operator reads a handful of
fields of Nodes, Pods, ConfigMaps and DGXJobs, and the generated model classes
cannot even read a Binding's answer. Every refusal becomes a
:class:`~migoperator.errors.KubeError` (a :class:`ConflictError` for 409) that
says which call failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from kubewire import (
    JSON,
    MERGE_PATCH,
    ApiException,
    event_body,
    now_rfc3339,
    open_client,
    read_json,
)
from migoperator.errors import ConflictError, KubeError
from migoperator.models import GROUP, PLURAL, VERSION

__all__ = ["COMPONENT", "JSON", "Kube", "now_rfc3339"]

COMPONENT = "dgxsim-operator"


class Kube:
    """An API client and the typed APIs the operator uses."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        # Typed as Any: dict bodies and request options the generated signatures omit.
        self.core: Any = client.CoreV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.extensions: Any = client.ApiextensionsV1Api(api)

    @classmethod
    async def connect(cls, kubeconfig: Path | None) -> Kube:
        return cls(await open_client(kubeconfig))

    async def close(self) -> None:
        await self.api.close()

    async def _call(self, what: str, coroutine: Any) -> JSON:
        """Await a raw API call and decode its body; non-2xx answers raise KubeError."""
        try:
            return await read_json(await coroutine)
        except ApiException as err:
            raise _error(what, err.status or 0, str(err.body or err.reason)[:500]) from err

    # ------------------------------------------------------------ nodes and pods

    async def list_nodes(self) -> list[JSON]:
        data = await self._call("list nodes", self.core.list_node(_preload_content=False))
        return list(data["items"])

    async def patch_node(self, name: str, patch: JSON) -> JSON:
        return await self._call(f"patch node {name}", self.core.patch_node(
            name, patch, _content_type=MERGE_PATCH, _preload_content=False))

    async def list_pods(self, label_selector: str | None = None,
                        namespace: str | None = None) -> list[JSON]:
        kwargs: JSON = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if namespace is None:
            call = self.core.list_pod_for_all_namespaces(**kwargs)
        else:
            call = self.core.list_namespaced_pod(namespace, **kwargs)
        return list((await self._call("list pods", call))["items"])

    async def create_pod(self, namespace: str, body: JSON) -> JSON:
        """Create a pod; if one of that name exists, return it (creation is idempotent)."""
        name = body["metadata"]["name"]
        try:
            return await self._call(f"create pod {namespace}/{name}",
                                    self.core.create_namespaced_pod(
                                        namespace, body, _preload_content=False))
        except ConflictError:
            return await self._call(f"read pod {namespace}/{name}", self.core.read_namespaced_pod(
                name, namespace, _preload_content=False))

    async def bind_pod(self, namespace: str, name: str, node: str) -> None:
        """Bind a pod to a node through the Binding subresource, as a scheduler does."""
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self._call(f"bind pod {namespace}/{name} to {node}",
                         self.core.create_namespaced_pod_binding(
                             name, namespace, body, _preload_content=False))

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self._call(f"delete pod {namespace}/{name}", self.core.delete_namespaced_pod(
                name, namespace, _preload_content=False))
        except KubeError as err:
            if err.status != 404:
                raise

    # ------------------------------------------------------------ config maps, namespaces

    async def read_configmap(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._call(f"read configmap {namespace}/{name}",
                                    self.core.read_namespaced_config_map(
                                        name, namespace, _preload_content=False))
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    async def create_configmap(self, namespace: str, body: JSON) -> JSON:
        return await self._call(f"create configmap {namespace}/{body['metadata']['name']}",
                                self.core.create_namespaced_config_map(
                                    namespace, body, _preload_content=False))

    async def replace_configmap(self, namespace: str, body: JSON) -> JSON:
        """Replace with the body's resourceVersion: a concurrent writer makes it a conflict."""
        name = body["metadata"]["name"]
        return await self._call(f"replace configmap {namespace}/{name}",
                                self.core.replace_namespaced_config_map(
                                    name, namespace, body, _preload_content=False))

    async def ensure_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await self._call(f"create namespace {name}", self.core.create_namespace(
                body, _preload_content=False))
        except ConflictError:
            return

    # ------------------------------------------------------------ DGXJobs and the CRD

    async def list_jobs(self) -> list[JSON]:
        data = await self._call("list dgxjobs", self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, _preload_content=False))
        return list(data["items"])

    async def get_job(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._call(f"read dgxjob {namespace}/{name}",
                                    self.custom.get_namespaced_custom_object(
                                        GROUP, VERSION, namespace, PLURAL, name,
                                        _preload_content=False))
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    async def patch_job_status(self, namespace: str, name: str, status: JSON) -> JSON:
        return await self._call(f"patch dgxjob {namespace}/{name} status",
                                self.custom.patch_namespaced_custom_object_status(
                                    GROUP, VERSION, namespace, PLURAL, name,
                                    {"status": status}, _content_type=MERGE_PATCH,
                                    _preload_content=False))

    async def apply_crd(self, manifest: JSON) -> str:
        """Create the CRD, or update it in place; returns ``created`` or ``updated``."""
        name = manifest["metadata"]["name"]
        try:
            await self._call(f"create crd {name}",
                             self.extensions.create_custom_resource_definition(
                                 manifest, _preload_content=False))
            return "created"
        except ConflictError:
            current = await self._call(f"read crd {name}",
                                       self.extensions.read_custom_resource_definition(
                                           name, _preload_content=False))
            body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion":
                                              current["metadata"]["resourceVersion"]}}
            await self._call(f"replace crd {name}",
                             self.extensions.replace_custom_resource_definition(
                                 name, body, _preload_content=False))
            return "updated"

    async def crd_established(self, name: str) -> bool:
        current = await self._call(f"read crd {name}",
                                   self.extensions.read_custom_resource_definition(
                                       name, _preload_content=False))
        conditions = (current.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions)

    # ------------------------------------------------------------ events

    async def event(self, involved: JSON, reason: str, message: str,
                    kind: str = "Normal") -> None:
        """Record an Event about ``involved``; best effort, as a recorder's are."""
        body = event_body(involved, reason, message, kind, COMPONENT, involved_kind="Node")
        try:
            await self._call(f"create event {reason}", self.core.create_namespaced_event(
                body["metadata"]["namespace"], body, _preload_content=False))
        except KubeError:
            return

    async def node_events(self, node: str) -> list[JSON]:
        field = f"involvedObject.kind=Node,involvedObject.name={node}"
        data = await self._call("list events", self.core.list_event_for_all_namespaces(
            field_selector=field, _preload_content=False))
        return list(data["items"])


def _error(what: str, status: int, detail: str) -> KubeError:
    if status == 409:
        return ConflictError(what, status, detail)
    return KubeError(what, status, detail)
