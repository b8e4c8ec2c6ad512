"""Watches: one decoder for the event stream and the list-then-watch loop every follower runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from kubewire import (
    JSON,
    ExpiredError,
    KubeClient,
    MalformedError,
    ObjectList,
    UnavailableError,
    WatchEvent,
    decode_events,
    list_and_watch,
)


def _line(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _pod(name: str, version: str) -> JSON:
    return {"metadata": {"name": name, "resourceVersion": version}}


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _decode(*parts: bytes) -> list[WatchEvent]:
    return [event async for event in decode_events(_chunks(*parts), "watch pods")]


async def test_lines_split_across_chunks_are_reassembled() -> None:
    stream = _line("ADDED", _pod("a", "1")) + _line("MODIFIED", _pod("a", "2"))
    parts = [stream[:7], stream[7:40], stream[40:41], stream[41:]]
    assert await _decode(*parts) == [("ADDED", _pod("a", "1")), ("MODIFIED", _pod("a", "2"))]


async def test_several_events_in_one_chunk_and_a_last_line_without_newline() -> None:
    stream = _line("ADDED", _pod("a", "1")) + b"\n" + _line("DELETED", _pod("a", "3"))[:-1]
    assert [e.type for e in await _decode(stream)] == ["ADDED", "DELETED"]


async def test_a_bookmark_is_an_event_carrying_only_a_version() -> None:
    events = await _decode(_line("BOOKMARK", {"metadata": {"resourceVersion": "9"}}))
    assert events == [("BOOKMARK", {"metadata": {"resourceVersion": "9"}})]


async def test_an_error_event_with_410_is_the_expired_error() -> None:
    status = {"kind": "Status", "code": 410, "reason": "Expired",
              "message": "too old resource version: 5 (80)"}
    with pytest.raises(ExpiredError) as caught:
        await _decode(_line("ADDED", _pod("a", "6")), _line("ERROR", status))
    assert str(caught.value) == "watch pods: HTTP 410: too old resource version: 5 (80)"


async def test_an_error_event_with_another_code_is_its_class() -> None:
    with pytest.raises(UnavailableError, match="watch pods: HTTP 500: etcd"):
        await _decode(_line("ERROR", {"code": 500, "message": "etcd"}))


async def test_a_line_that_is_not_an_event_is_malformed_with_its_cause() -> None:
    with pytest.raises(MalformedError, match="not a watch event") as caught:
        await _decode(b'{"type": "ADDED"}\n')
    assert isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(MalformedError):
        await _decode(b"<html>\n")


class Script:
    """A lister and a watcher that play back canned answers and record what was asked."""

    def __init__(self, lists: list[ObjectList], watches: list[list[bytes] | Exception]) -> None:
        self.lists, self.watches = lists, watches
        self.asked: list[str] = []
        self.seen: list[tuple[str, Any]] = []

    async def lister(self) -> ObjectList:
        self.asked.append("list")
        return self.lists.pop(0)

    async def watcher(self, version: str) -> AsyncIterator[WatchEvent]:
        self.asked.append(f"watch from {version}")
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        async for event in decode_events(_chunks(*answer), "watch pods"):
            yield event

    async def on_list(self, items: list[JSON]) -> None:
        self.seen.append(("listed", [i["metadata"]["name"] for i in items]))

    async def on_event(self, kind: str, obj: JSON) -> None:
        self.seen.append((kind, obj["metadata"]["name"]))


async def test_list_then_watch_resumes_from_the_last_version_and_relists_when_expired() -> None:
    expired = _line("ERROR", {"code": 410, "message": "too old"})
    script = Script(
        lists=[ObjectList([_pod("a", "3")], "10"), ObjectList([_pod("b", "30")], "31")],
        watches=[[_line("ADDED", _pod("b", "11")), _line("BOOKMARK", _pod("", "15"))],
                 [_line("MODIFIED", _pod("b", "16")), expired],
                 [_line("DELETED", _pod("b", "32"))],
                 UnavailableError("watch pods", 0, "connection reset")])
    with pytest.raises(UnavailableError, match="connection reset"):
        await list_and_watch(script.lister, script.watcher, script.on_list, script.on_event)
    assert script.asked == ["list", "watch from 10", "watch from 15", "list", "watch from 31",
                            "watch from 32"]
    assert script.seen == [("listed", ["a"]), ("ADDED", "b"), ("MODIFIED", "b"),
                           ("listed", ["b"]), ("DELETED", "b")]


class RawStream:
    """A watch's raw answer: status, and a body that arrives in chunks."""

    def __init__(self, status: int, parts: list[bytes]) -> None:
        self.status, self.reason, self.parts = status, "", parts
        self.content = self

    async def iter_any(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def read(self) -> bytes:
        return b"".join(self.parts)

    def release(self) -> None:
        return None

    async def __aenter__(self) -> RawStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeCore:
    def __init__(self, answer: RawStream) -> None:
        self.answer = answer
        self.kwargs: dict[str, Any] = {}

    async def list_pod_for_all_namespaces(self, **kwargs: Any) -> RawStream:
        self.kwargs = kwargs
        return self.answer


async def test_the_clients_watch_asks_for_bookmarks_from_a_version_and_decodes_chunks() -> None:
    kube = KubeClient(client.ApiClient())
    stream = _line("ADDED", _pod("a", "5"))
    core = FakeCore(RawStream(200, [stream[:10], stream[10:]]))
    kube._core = core
    events = [e async for e in kube.watch_pods("4", field_selector="spec.nodeName!=")]
    assert events == [("ADDED", _pod("a", "5"))]
    assert core.kwargs == {"watch": True, "resource_version": "4",
                           "allow_watch_bookmarks": True, "timeout_seconds": 300,
                           "_preload_content": False, "field_selector": "spec.nodeName!="}
    await kube.close()


async def test_a_watch_refused_outright_with_410_is_expired() -> None:
    kube = KubeClient(client.ApiClient())
    kube._core = FakeCore(RawStream(410, [b'{"message": "too old"}']))
    with pytest.raises(ExpiredError, match="watch pods: HTTP 410: too old"):
        _ = [e async for e in kube.watch_pods("1")]
    await kube.close()
