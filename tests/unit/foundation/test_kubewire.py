"""The wire-level helpers both API clients use: decoding raw answers, timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from kubewire import ApiException, event_body, now_micro, now_rfc3339, read_json


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


async def test_a_2xx_answer_is_its_decoded_body() -> None:
    assert await read_json(RawAnswer(201, b'{"kind": "Node"}')) == {"kind": "Node"}


async def test_an_empty_2xx_answer_is_an_empty_object() -> None:
    assert await read_json(RawAnswer(200, b"")) == {}


async def test_a_refusal_raises_with_status_reason_and_body_and_releases_the_answer() -> None:
    answer = RawAnswer(409, b'{"reason": "AlreadyExists"}', "Conflict")
    with pytest.raises(ApiException) as caught:
        await read_json(answer)
    assert (caught.value.status, caught.value.reason) == (409, "Conflict")
    assert "AlreadyExists" in caught.value.body
    assert answer.released


async def test_a_long_refusal_body_is_cut() -> None:
    with pytest.raises(ApiException) as caught:
        await read_json(RawAnswer(500, b"x" * 10_000, "Internal Server Error"))
    assert len(caught.value.body) == 2000


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
