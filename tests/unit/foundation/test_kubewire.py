"""The one API client's error family and raw answers: every failure names its call."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubewire import (
    ConflictError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    KubeClient,
    KubeconfigError,
    KubeError,
    MalformedError,
    NotFoundError,
    UnavailableError,
    event_body,
    now_micro,
    now_rfc3339,
    or_none,
    read_json,
)
from kubewire.errors import error_for, wire_error


@dataclass
class RawAnswer:
    """What a generated API call returns with ``_preload_content=False``."""

    status: int
    body: bytes
    reason: str = ""
    released: bool = False

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize(("status", "cls"), [
    (400, InvalidError), (403, ForbiddenError), (404, NotFoundError), (409, ConflictError),
    (410, ExpiredError), (422, InvalidError), (429, UnavailableError), (0, UnavailableError),
    (500, UnavailableError), (503, UnavailableError), (401, KubeError), (418, KubeError),
])
def test_each_status_has_its_class(status: int, cls: type[KubeError]) -> None:
    err = error_for("list pods", status, "why")
    assert type(err) is cls
    assert (err.what, err.status, err.detail) == ("list pods", status, "why")


def test_the_message_names_the_call_and_the_answer() -> None:
    assert str(error_for("patch node dgx-0", 403, "forbidden")) == (
        "patch node dgx-0: HTTP 403: forbidden")
    assert str(error_for("list pods", 0, "Connection refused")) == (
        "list pods: no answer: Connection refused")


async def test_a_2xx_answer_is_its_decoded_body() -> None:
    assert await read_json(RawAnswer(201, b'{"kind": "Node"}'), "create node") == {
        "kind": "Node"}


async def test_an_empty_2xx_answer_is_an_empty_object() -> None:
    assert await read_json(RawAnswer(200, b""), "delete pod") == {}


async def test_a_refusal_raises_its_class_with_the_servers_message_and_the_cause() -> None:
    body = b'{"kind": "Status", "reason": "AlreadyExists", "message": "pods \\"a\\" exists"}'
    answer = RawAnswer(409, body, "Conflict")
    with pytest.raises(ConflictError) as caught:
        await read_json(answer, "create pod ml/a")
    assert str(caught.value) == 'create pod ml/a: HTTP 409: pods "a" exists'
    cause = caught.value.__cause__
    assert isinstance(cause, ApiException)
    assert (cause.status, cause.reason) == (409, "Conflict")
    assert "AlreadyExists" in cause.body
    assert answer.released


async def test_a_long_refusal_body_is_cut() -> None:
    with pytest.raises(UnavailableError) as caught:
        await read_json(RawAnswer(500, b"x" * 10_000, "Internal Server Error"), "list nodes")
    assert isinstance(caught.value.__cause__, ApiException)
    assert len(caught.value.__cause__.body) == 2000
    assert len(caught.value.detail) == 500


async def test_a_2xx_body_that_is_not_a_json_object_is_malformed() -> None:
    with pytest.raises(MalformedError, match="read node a: HTTP 200: not JSON"):
        await read_json(RawAnswer(200, b"<html>"), "read node a")
    with pytest.raises(MalformedError, match="not a JSON object"):
        await read_json(RawAnswer(200, b"[1]"), "read node a")


def test_library_errors_map_onto_the_family() -> None:
    refused = ApiException(status=404, reason="Not Found")
    refused.body = b'{"message": "nodes \\"x\\" not found"}'
    assert isinstance(wire_error("read node x", refused), NotFoundError)
    assert str(wire_error("read node x", refused)) == 'read node x: HTTP 404: nodes "x" not found'
    dropped = aiohttp.ServerDisconnectedError()
    assert isinstance(wire_error("watch pods", dropped), UnavailableError)
    assert isinstance(wire_error("list pods", TimeoutError()), UnavailableError)
    assert wire_error("list pods", TimeoutError()).detail == "TimeoutError"


class FakeCore:
    """The generated CoreV1Api at the process edge: canned answers, recorded calls."""

    def __init__(self, answer: RawAnswer | BaseException) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> RawAnswer:
            self.calls.append((name, args, kwargs))
            if isinstance(self.answer, BaseException):
                raise self.answer
            return self.answer
        return call


def _kube(answer: RawAnswer | BaseException) -> tuple[KubeClient, FakeCore]:
    kube = KubeClient(client.ApiClient())
    core = FakeCore(answer)
    kube._core = core
    return kube, core


async def test_a_call_sends_raw_and_decodes_the_answer() -> None:
    kube, core = _kube(RawAnswer(200, b'{"items": [{"a": 1}], "metadata": '
                                      b'{"resourceVersion": "42"}}'))
    listed = await kube.list_pods(namespace="ml", label_selector="app=x")
    assert listed.items == [{"a": 1}] and listed.resource_version == "42"
    assert core.calls == [("list_namespaced_pod", ("ml",),
                           {"_preload_content": False, "label_selector": "app=x"})]
    await kube.close()


class FakeSession:
    """The generated client's aiohttp session, for the calls sent on it directly."""

    def __init__(self, answer: RawAnswer | BaseException) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> RawAnswer:
        self.calls.append((method, url, kwargs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def _direct(answer: RawAnswer | BaseException, token: str | None = None
            ) -> tuple[KubeClient, FakeSession]:
    configuration = client.Configuration(host="https://127.0.0.1:6443")
    if token is not None:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    kube = KubeClient(client.ApiClient(configuration))
    session = FakeSession(answer)
    kube._session = session
    return kube, session


async def test_a_patch_says_its_content_type_and_sends_json() -> None:
    kube, session = _direct(RawAnswer(200, b'{"metadata": {"name": "a"}}'))
    answer = await kube.patch_pod_status("ml", "a", {"status": {"phase": "Running"}})
    await kube.patch_node("dgx-0", {"metadata": {}})
    assert answer == {"metadata": {"name": "a"}}
    (method, url, sent), (_, node_url, node_sent) = session.calls
    assert (method, url) == ("PATCH", "https://127.0.0.1:6443/api/v1/namespaces/ml/pods/a/status")
    assert sent["headers"]["Content-Type"] == "application/strategic-merge-patch+json"
    assert sent["headers"]["Accept"] == "application/json"
    assert json.loads(sent["data"]) == {"status": {"phase": "Running"}}
    assert node_url == "https://127.0.0.1:6443/api/v1/nodes/dgx-0"
    assert node_sent["headers"]["Content-Type"] == "application/merge-patch+json"
    await kube.close()


async def test_a_write_without_its_answer_is_not_decoded_but_still_refused() -> None:
    kube, _ = _direct(RawAnswer(200, b"<not decoded>"))
    assert await kube.patch_pod_status("ml", "a", {"status": {}}, answer=False) == {}
    assert await kube.patch_lease("kube-node-lease", "dgx-0", {}, answer=False) == {}
    await kube.close()
    kube, _ = _direct(RawAnswer(422, b'{"message": "bad phase"}', "Unprocessable Entity"))
    with pytest.raises(InvalidError, match="patch pod ml/a status: HTTP 422: bad phase"):
        await kube.patch_pod_status("ml", "a", {"status": {"phase": "Nope"}}, answer=False)
    await kube.close()


async def test_a_direct_call_carries_the_bearer_token_and_the_client_headers() -> None:
    kube, session = _direct(RawAnswer(200, b"{}"), token="t0k3n")
    kube.api.user_agent = "dgxsim-test"
    await kube.patch_lease("kube-node-lease", "dgx-0", {"spec": {}})
    method, url, sent = session.calls[0]
    assert (method, url) == ("PATCH", "https://127.0.0.1:6443/apis/coordination.k8s.io/v1/"
                                      "namespaces/kube-node-lease/leases/dgx-0")
    assert sent["headers"]["authorization"] == "Bearer t0k3n"
    assert sent["headers"]["User-Agent"] == "dgxsim-test"
    await kube.close()


async def test_a_direct_call_refused_names_itself() -> None:
    kube, _ = _direct(RawAnswer(422, b'{"message": "bad phase"}', "Unprocessable Entity"))
    with pytest.raises(InvalidError, match="patch pod ml/a status: HTTP 422: bad phase"):
        await kube.patch_pod_status("ml", "a", {"status": {"phase": "Nope"}})
    await kube.close()


async def test_no_answer_is_unavailable_naming_the_call_with_the_cause() -> None:
    refused = aiohttp.ClientConnectionError("Connection refused")
    kube, _ = _direct(refused)
    with pytest.raises(UnavailableError) as caught:
        await kube.patch_node_status("dgx-0", {})
    assert str(caught.value) == "patch node dgx-0 status: no answer: Connection refused"
    assert caught.value.__cause__ is refused
    await kube.close()


async def test_or_none_answers_none_for_a_missing_object_only() -> None:
    kube, _ = _kube(RawAnswer(404, b'{"message": "not found"}', "Not Found"))
    assert await or_none(kube.read_configmap("ns", "cm")) is None
    kube._core = FakeCore(RawAnswer(403, b'{"message": "forbidden"}', "Forbidden"))
    with pytest.raises(ForbiddenError, match="read configmap ns/cm: HTTP 403: forbidden"):
        await or_none(kube.read_configmap("ns", "cm"))
    await kube.close()


async def test_delete_pod_tolerates_a_missing_pod_only_when_asked() -> None:
    kube, core = _kube(RawAnswer(404, b"{}", "Not Found"))
    await kube.delete_pod("ml", "a", uid="u-1", grace_period_s=0, missing_ok=True)
    assert core.calls[0][2]["body"] == {"preconditions": {"uid": "u-1"}, "gracePeriodSeconds": 0}
    with pytest.raises(NotFoundError):
        await kube.delete_pod("ml", "a")
    await kube.close()


async def test_events_are_best_effort() -> None:
    kube, session = _direct(aiohttp.ClientConnectionError("down"))
    await kube.record_event({"metadata": {"name": "a", "namespace": "ml"}}, "Started", "m",
                            component="c")
    method, url, sent = session.calls[0]
    assert (method, url) == ("POST", "https://127.0.0.1:6443/api/v1/namespaces/ml/events")
    assert json.loads(sent["data"])["reason"] == "Started"
    await kube.close()


async def test_an_unusable_kubeconfig_is_a_kubeconfig_error(tmp_path: Any) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(KubeconfigError, match=f"load kubeconfig {path}: no answer"):
        await KubeClient.connect(path)


def test_timestamps_have_the_api_servers_formats() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_rfc3339())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now_micro())


def test_an_event_about_a_pod_is_in_its_namespace_and_names_its_source() -> None:
    pod = {"metadata": {"name": "infer-0", "namespace": "ml", "uid": "u-1"}}
    body = event_body(pod, "Started", "x" * 2000, "Normal", "dgxsim-node-agent", "dgx-3")
    assert body["metadata"] == {"generateName": "infer-0.", "namespace": "ml"}
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "infer-0",
                                      "namespace": "ml", "uid": "u-1"}
    assert body["source"] == {"component": "dgxsim-node-agent", "host": "dgx-3"}
    assert (body["reportingComponent"], body["reportingInstance"]) == (
        "dgxsim-node-agent", "dgx-3")
    assert len(body["message"]) == 1024 and body["count"] == 1
    assert body["firstTimestamp"] == body["lastTimestamp"]


def test_an_event_about_a_cluster_scoped_object_goes_to_default() -> None:
    node = {"metadata": {"name": "dgx-0", "uid": "u-2"}}
    body = event_body(node, "MigLayoutDecided", "why", "Normal", "dgxsim-operator",
                      involved_kind="Node")
    assert body["metadata"]["namespace"] == "default"
    assert body["involvedObject"]["kind"] == "Node"
    assert body["involvedObject"]["namespace"] is None
    assert body["source"] == {"component": "dgxsim-operator"}
