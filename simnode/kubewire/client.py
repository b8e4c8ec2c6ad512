"""The one Kubernetes API client of the project: a method per call, raw dict objects.

The node agent, the operator and the CLI make a few dozen different calls
between them. Each is a method here, so each is written once, names itself in
its errors (``patch pod ml/infer-0 status: HTTP 422: ...``) and fails only with
the :mod:`kubewire.errors` family. Objects stay JSON dicts: the generated APIs
are called with ``_preload_content=False`` and the answers decoded by
:func:`kubewire.wire.read_json`. Reads raise
:class:`~kubewire.errors.NotFoundError` for a missing object; :func:`or_none`
turns that into ``None`` where absence is an answer. Components put their own
few helpers (a lease renewal, an idempotent create) in a subclass.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Self

import aiohttp
import orjson
from kubernetes_asyncio import client, config

from kubewire.errors import WIRE_ERRORS, KubeError, NotFoundError, wire_error
from kubewire.watch import ObjectList, WatchEvent, decode_events
from kubewire.wire import JSON, MERGE_PATCH, STRATEGIC_PATCH, event_body, read_json

__all__ = ["CustomResource", "KubeClient", "or_none"]

WATCH_TIMEOUT_S = 300
JSON_TYPE = "application/json"
AUTH = ["BearerToken"]
"""The generated APIs' one authentication setting: a bearer token, when the
configuration has one (client certificates are in the session's TLS context)."""
_segment = partial(urllib.parse.quote, safe="")


class CustomResource(NamedTuple):
    """Where a custom resource is served: ``/apis/<group>/<version>/.../<plural>``."""

    group: str
    version: str
    plural: str


async def or_none(read: Awaitable[JSON]) -> JSON | None:
    """The object ``read`` returns, or None when it does not exist (404)."""
    try:
        return await read
    except NotFoundError:
        return None


def _selectors(label_selector: str | None, field_selector: str | None) -> JSON:
    chosen = {"label_selector": label_selector, "field_selector": field_selector}
    return {key: value for key, value in chosen.items() if value}


def _settle_proxy(api: client.ApiClient) -> None:
    """Decide once whether the API server is reached through a proxy from the
    environment, instead of on every request.

    The generated client's session trusts the environment, so aiohttp looks up
    the proxy variables and parses ``~/.netrc`` for each request: a cost paid per
    API call by a node agent making hundreds a second. The answer cannot change
    while the process runs; it is read here and the session told not to look again.
    """
    rest = getattr(api, "rest_client", None)
    session = getattr(rest, "pool_manager", None)
    if rest is None or session is None or not hasattr(session, "_trust_env"):
        return
    host = urllib.parse.urlsplit(str(api.configuration.host)).hostname or ""
    if rest.proxy is None and host and not urllib.request.proxy_bypass(host):
        scheme = urllib.parse.urlsplit(str(api.configuration.host)).scheme or "https"
        rest.proxy = urllib.request.getproxies().get(scheme)
    session._trust_env = False


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{_segment(namespace)}/pods/{_segment(name)}"


class KubeClient:
    """An API client and a method for each API call the project makes."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        _settle_proxy(api)
        # Typed as Any: dict bodies and request options (_content_type,
        # _preload_content) that the generated signatures omit.
        self._core: Any = client.CoreV1Api(api)
        self._coordination: Any = client.CoordinationV1Api(api)
        self._batch: Any = client.BatchV1Api(api)
        self._custom: Any = client.CustomObjectsApi(api)
        self._extensions: Any = client.ApiextensionsV1Api(api)
        self._resource: Any = client.ResourceV1Api(api)
        rest = getattr(api, "rest_client", None)
        self._session: Any = getattr(rest, "pool_manager", None)
        options = {"proxy": getattr(rest, "proxy", None),
                   "proxy_headers": getattr(rest, "proxy_headers", None),
                   "server_hostname": getattr(rest, "server_hostname", None)}
        self._request_options: JSON = {"timeout": aiohttp.ClientTimeout(),
                                       **{k: v for k, v in options.items() if v}}

    @classmethod
    async def connect(cls, kubeconfig: Path | None, *, connections: int | None = None
                      ) -> Self:
        """A client for ``kubeconfig``, or the pod's service account when it is None.

        ``connections``: the most requests in flight at once, each on a connection of
        its own (HTTP/1.1) that stays open for the next; more wait for one. None: the
        generated client's 100. A process that sends many small writes at once (a node
        agent) needs few: past a few dozen, more only open more TLS connections and
        queue more work on the API server at the same moment."""
        try:
            configuration = type.__call__(client.Configuration)
            if connections is not None:
                configuration.connection_pool_maxsize = connections
            if kubeconfig is None:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration)
            else:
                await config.load_kube_config(config_file=str(kubeconfig),
                                              client_configuration=configuration)
            return cls(client.ApiClient(configuration=configuration))
        except WIRE_ERRORS as err:
            raise wire_error(f"load kubeconfig {kubeconfig or '(in-cluster)'}", err) from err

    async def close(self) -> None:
        await self.api.close()

    # ------------------------------------------------------------ the three call shapes

    async def _call(self, what: str, method: Callable[..., Awaitable[Any]], *args: Any,
                    **kwargs: Any) -> JSON:
        """Make one call and decode its answer; every failure is a KubeError."""
        try:
            return await read_json(await method(*args, _preload_content=False, **kwargs), what)
        except WIRE_ERRORS as err:
            raise wire_error(what, err) from err

    async def _send(self, what: str, method: str, path: str, body: JSON | None = None,
                    content_type: str = JSON_TYPE, *, answer: bool = True) -> JSON:
        """Make one call on the generated client's own session, without its machinery.

        For the calls a node agent makes per pod and per node (status patches,
        Leases, Events): the generated path serialises the body twice over and builds
        its headers and parameters anew each time, which cost as much CPU as the
        request itself. Headers, authentication (a bearer token refreshed as the
        generated client refreshes it), TLS, proxy and errors are the same. Without
        ``answer`` the object the server sends back is not decoded (an empty dict).
        """
        api = self.api
        headers = {**api.default_headers, "Accept": JSON_TYPE, "Content-Type": content_type}
        try:
            await api.update_params_for_auth(headers, [], AUTH)
            response = await self._session.request(
                method, f"{api.configuration.host}{path}", headers=headers,
                data=None if body is None else orjson.dumps(body), **self._request_options)
            return await read_json(response, what, decode=answer)
        except WIRE_ERRORS as err:
            raise wire_error(what, err) from err

    async def _list(self, what: str, method: Callable[..., Awaitable[Any]], *args: Any,
                    **kwargs: Any) -> ObjectList:
        data = await self._call(what, method, *args, **kwargs)
        return ObjectList(list(data.get("items") or []),
                          str((data.get("metadata") or {}).get("resourceVersion") or ""))

    async def _watch(self, what: str, method: Callable[..., Awaitable[Any]],
                     resource_version: str, timeout_s: int, **kwargs: Any
                     ) -> AsyncIterator[WatchEvent]:
        """The events of one watch from ``resource_version`` until the server ends it."""
        try:
            response = await method(watch=True, resource_version=resource_version,
                                    allow_watch_bookmarks=True, timeout_seconds=timeout_s,
                                    _preload_content=False, **kwargs)
            if response.status != 200:
                await read_json(response, what)
            async with response:
                async for event in decode_events(response.content.iter_any(), what):
                    yield event
        except WIRE_ERRORS as err:
            raise wire_error(what, err) from err

    # ------------------------------------------------------------ nodes

    async def list_nodes(self, *, label_selector: str | None = None,
                         field_selector: str | None = None) -> ObjectList:
        return await self._list("list nodes", self._core.list_node,
                                **_selectors(label_selector, field_selector))

    def watch_nodes(self, resource_version: str, *, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_s: int = WATCH_TIMEOUT_S
                    ) -> AsyncIterator[WatchEvent]:
        return self._watch("watch nodes", self._core.list_node, resource_version, timeout_s,
                           **_selectors(label_selector, field_selector))

    async def read_node(self, name: str) -> JSON:
        return await self._call(f"read node {name}", self._core.read_node, name)

    async def create_node(self, body: JSON) -> JSON:
        name = body["metadata"]["name"]
        return await self._call(f"create node {name}", self._core.create_node, body)

    async def patch_node(self, name: str, patch: JSON) -> JSON:
        """A JSON merge patch of the node (labels, annotations)."""
        return await self._send(f"patch node {name}", "PATCH",
                                f"/api/v1/nodes/{_segment(name)}", patch, MERGE_PATCH)

    async def patch_node_status(self, name: str, patch: JSON) -> JSON:
        """A strategic merge patch of the node's status (conditions merge by type)."""
        return await self._send(f"patch node {name} status", "PATCH",
                                f"/api/v1/nodes/{_segment(name)}/status", patch, STRATEGIC_PATCH)

    # ------------------------------------------------------------ leases

    async def patch_lease(self, namespace: str, name: str, patch: JSON, *,
                          answer: bool = True) -> JSON:
        """A JSON merge patch of the Lease; the Lease, or {} without ``answer``."""
        return await self._send(f"patch lease {namespace}/{name}", "PATCH",
                                f"/apis/coordination.k8s.io/v1/namespaces/{_segment(namespace)}"
                                f"/leases/{_segment(name)}", patch, MERGE_PATCH, answer=answer)

    async def create_lease(self, namespace: str, body: JSON) -> JSON:
        return await self._call(f"create lease {namespace}/{body['metadata']['name']}",
                                self._coordination.create_namespaced_lease, namespace, body)

    # ------------------------------------------------------------ pods

    async def list_pods(self, *, namespace: str | None = None, label_selector: str | None = None,
                        field_selector: str | None = None) -> ObjectList:
        selectors = _selectors(label_selector, field_selector)
        if namespace is None:
            return await self._list("list pods", self._core.list_pod_for_all_namespaces,
                                    **selectors)
        return await self._list(f"list pods in {namespace}", self._core.list_namespaced_pod,
                                namespace, **selectors)

    def watch_pods(self, resource_version: str, *, label_selector: str | None = None,
                   field_selector: str | None = None, timeout_s: int = WATCH_TIMEOUT_S
                   ) -> AsyncIterator[WatchEvent]:
        """Pods of every namespace."""
        return self._watch("watch pods", self._core.list_pod_for_all_namespaces,
                           resource_version, timeout_s,
                           **_selectors(label_selector, field_selector))

    async def read_pod(self, namespace: str, name: str) -> JSON:
        return await self._call(f"read pod {namespace}/{name}", self._core.read_namespaced_pod,
                                name, namespace)

    async def create_pod(self, namespace: str, body: JSON) -> JSON:
        return await self._call(f"create pod {namespace}/{body['metadata']['name']}",
                                self._core.create_namespaced_pod, namespace, body)

    async def patch_pod(self, namespace: str, name: str, patch: JSON) -> JSON:
        """A JSON merge patch of the pod (annotations)."""
        return await self._send(f"patch pod {namespace}/{name}", "PATCH",
                                _pod_path(namespace, name), patch, MERGE_PATCH)

    async def patch_pod_status(self, namespace: str, name: str, patch: JSON, *,
                               answer: bool = True) -> JSON:
        """A strategic merge patch of the pod's status (conditions merge by type); the
        pod, or {} without ``answer`` (a node agent's writes need no pod back)."""
        return await self._send(f"patch pod {namespace}/{name} status", "PATCH",
                                _pod_path(namespace, name) + "/status", patch, STRATEGIC_PATCH,
                                answer=answer)

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None = None,
                         grace_period_s: int | None = None, missing_ok: bool = False) -> None:
        """Delete a pod; with ``uid``, only that incarnation of it (409 otherwise); with
        ``missing_ok``, a pod already gone is not an error."""
        body: JSON = {}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        if grace_period_s is not None:
            body["gracePeriodSeconds"] = grace_period_s
        try:
            await self._call(f"delete pod {namespace}/{name}", self._core.delete_namespaced_pod,
                             name, namespace, body=body or None,
                             grace_period_seconds=grace_period_s)
        except NotFoundError:
            if not missing_ok:
                raise

    async def bind_pod(self, namespace: str, name: str, node: str) -> None:
        """Bind a pod to a node through the Binding subresource, as a scheduler does."""
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self._call(f"bind pod {namespace}/{name} to {node}",
                         self._core.create_namespaced_pod_binding, name, namespace, body)

    async def list_batch_jobs(self, namespace: str) -> ObjectList:
        """batch/v1 Jobs of a namespace."""
        return await self._list(f"list jobs in {namespace}", self._batch.list_namespaced_job,
                                namespace)

    # ------------------------------------------------------------ events

    async def record_event(self, involved: JSON, reason: str, message: str,
                           kind: str = "Normal", *, component: str, host: str | None = None,
                           involved_kind: str = "Pod") -> None:
        """Record an Event about ``involved``; best effort, as a recorder's are: a refusal
        or no answer is dropped (the Event is what would have reported it)."""
        body = event_body(involved, reason, message, kind, component, host, involved_kind)
        try:
            await self._send(f"create event {reason}", "POST",
                             f"/api/v1/namespaces/{_segment(body['metadata']['namespace'])}"
                             "/events", body)
        except KubeError:
            return

    async def list_events(self, *, field_selector: str | None = None) -> ObjectList:
        return await self._list("list events", self._core.list_event_for_all_namespaces,
                                **_selectors(None, field_selector))

    # ------------------------------------------------------------ config maps, namespaces

    async def read_configmap(self, namespace: str, name: str) -> JSON:
        return await self._call(f"read configmap {namespace}/{name}",
                                self._core.read_namespaced_config_map, name, namespace)

    async def create_configmap(self, namespace: str, body: JSON) -> JSON:
        return await self._call(f"create configmap {namespace}/{body['metadata']['name']}",
                                self._core.create_namespaced_config_map, namespace, body)

    async def replace_configmap(self, namespace: str, body: JSON) -> JSON:
        """Replace with the body's resourceVersion: a concurrent writer makes it a conflict."""
        name = body["metadata"]["name"]
        return await self._call(f"replace configmap {namespace}/{name}",
                                self._core.replace_namespaced_config_map, name, namespace, body)

    async def create_namespace(self, name: str) -> JSON:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        return await self._call(f"create namespace {name}", self._core.create_namespace, body)

    # ------------------------------------------------------------ custom objects, CRDs

    async def list_custom_objects(self, resource: CustomResource,
                                  namespace: str | None = None) -> ObjectList:
        """Every object of a custom resource, in one namespace or in all."""
        if namespace is None:
            return await self._list(f"list {resource.plural}",
                                    self._custom.list_cluster_custom_object, *resource)
        return await self._list(f"list {resource.plural} in {namespace}",
                                self._custom.list_namespaced_custom_object, resource.group,
                                resource.version, namespace, resource.plural)

    async def read_custom_object(self, resource: CustomResource, namespace: str,
                                 name: str) -> JSON:
        return await self._call(f"read {resource.plural} {namespace}/{name}",
                                self._custom.get_namespaced_custom_object, resource.group,
                                resource.version, namespace, resource.plural, name)

    async def patch_custom_object_status(self, resource: CustomResource, namespace: str,
                                         name: str, patch: JSON) -> JSON:
        """A JSON merge patch of the status subresource."""
        return await self._call(f"patch {resource.plural} {namespace}/{name} status",
                                self._custom.patch_namespaced_custom_object_status,
                                resource.group, resource.version, namespace, resource.plural,
                                name, patch, _content_type=MERGE_PATCH)

    async def create_crd(self, manifest: JSON) -> JSON:
        return await self._call(f"create crd {manifest['metadata']['name']}",
                                self._extensions.create_custom_resource_definition, manifest)

    async def read_crd(self, name: str) -> JSON:
        return await self._call(f"read crd {name}",
                                self._extensions.read_custom_resource_definition, name)

    async def replace_crd(self, name: str, body: JSON) -> JSON:
        return await self._call(f"replace crd {name}",
                                self._extensions.replace_custom_resource_definition, name, body)

    # ------------------------------------------------------------ DRA (resource.k8s.io/v1)

    async def list_resource_slices(self, *, field_selector: str | None = None) -> ObjectList:
        return await self._list("list resourceslices", self._resource.list_resource_slice,
                                **_selectors(None, field_selector))

    async def create_resource_slice(self, body: JSON) -> JSON:
        return await self._call(f"create resourceslice {body['metadata']['name']}",
                                self._resource.create_resource_slice, body)

    async def replace_resource_slice(self, name: str, body: JSON) -> JSON:
        """Replace with the body's resourceVersion: a concurrent writer makes it a conflict."""
        return await self._call(f"replace resourceslice {name}",
                                self._resource.replace_resource_slice, name, body)

    async def delete_resource_slice(self, name: str) -> None:
        try:
            await self._call(f"delete resourceslice {name}",
                             self._resource.delete_resource_slice, name)
        except NotFoundError:
            return

    async def list_resource_claims(self) -> ObjectList:
        """Every ResourceClaim of every namespace."""
        return await self._list("list resourceclaims",
                                self._resource.list_resource_claim_for_all_namespaces)

    async def create_resource_claim_template(self, namespace: str, body: JSON) -> JSON:
        return await self._call(
            f"create resourceclaimtemplate {namespace}/{body['metadata']['name']}",
            self._resource.create_namespaced_resource_claim_template, namespace, body)

    async def read_resource_claim_template(self, namespace: str, name: str) -> JSON:
        return await self._call(f"read resourceclaimtemplate {namespace}/{name}",
                                self._resource.read_namespaced_resource_claim_template, name,
                                namespace)

    async def read_resource_claim(self, namespace: str, name: str) -> JSON:
        return await self._call(f"read resourceclaim {namespace}/{name}",
                                self._resource.read_namespaced_resource_claim, name, namespace)

    async def patch_resource_claim_status(self, namespace: str, name: str, patch: JSON) -> JSON:
        """A JSON merge patch of the claim's status (the driver's device status)."""
        return await self._call(f"patch resourceclaim {namespace}/{name} status",
                                self._resource.patch_namespaced_resource_claim_status, name,
                                namespace, patch, _content_type=MERGE_PATCH)

    async def read_device_class(self, name: str) -> JSON:
        return await self._call(f"read deviceclass {name}", self._resource.read_device_class,
                                name)

    async def create_device_class(self, body: JSON) -> JSON:
        return await self._call(f"create deviceclass {body['metadata']['name']}",
                                self._resource.create_device_class, body)
