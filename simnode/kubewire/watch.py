"""Watches: one decoder for the API server's event stream, one list-then-watch loop.

A watch answers with one JSON event per line, ``{"type": ..., "object": ...}``,
but the transport delivers bytes in chunks that need not end at a line, so
lines are reassembled here. ``BOOKMARK`` events carry only a newer
resourceVersion (the server sends them so a watch can resume without a
list); an ``ERROR`` event carries a ``Status`` and ends the watch, raised here
as the :mod:`kubewire.errors` class for its code, so an expired
resourceVersion (410 Gone) is an :class:`~kubewire.errors.ExpiredError` the
caller answers by listing again.

:func:`list_and_watch` is the loop every follower of a kind of object runs (the
informer pattern, without a cache): list, then watch from the list's
resourceVersion, resume from the last version seen when the server ends a
watch, and list again only when that version has expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import NamedTuple, NoReturn

import orjson

from kubewire.errors import ExpiredError, KubeError, MalformedError, error_for
from kubewire.wire import JSON, resource_version_of

__all__ = ["ObjectList", "WatchEvent", "decode_events", "list_and_watch"]


class WatchEvent(NamedTuple):
    """One event of a watch: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK``."""

    type: str
    object: JSON


class ObjectList(NamedTuple):
    """The items of a list call and the resourceVersion to watch from."""

    items: list[JSON]
    resource_version: str


async def decode_events(chunks: AsyncIterable[bytes], what: str) -> AsyncIterator[WatchEvent]:
    """The events of a watch's body, however its bytes are split into chunks.

    An ``ERROR`` event raises the error for its ``Status`` code; a line that is
    not an event raises :class:`~kubewire.errors.MalformedError`.
    """
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield _event(line, what)
    if pending.strip():
        yield _event(pending, what)


def _event(line: bytes, what: str) -> WatchEvent:
    try:
        decoded = orjson.loads(line)
        event = WatchEvent(str(decoded["type"]), dict(decoded["object"]))
    except (ValueError, KeyError, TypeError) as err:
        raise MalformedError(what, 200, f"not a watch event: {line[:200]!r}") from err
    if event.type == "ERROR":
        raise _status_error(what, event.object)
    return event


def _status_error(what: str, status: JSON) -> KubeError:
    """The error a watch's ``ERROR`` event (a ``Status`` object) reports."""
    code = status.get("code")
    detail = str(status.get("message") or status.get("reason") or "watch ended with an error")
    return error_for(what, code if isinstance(code, int) else 0, detail)


Lister = Callable[[], Awaitable[ObjectList]]
Watcher = Callable[[str], AsyncIterator[WatchEvent]]


async def list_and_watch(lister: Lister, watcher: Watcher,
                         on_list: Callable[[list[JSON]], Awaitable[None]],
                         on_event: Callable[[str, JSON], Awaitable[None]]) -> NoReturn:
    """Follow a kind of object for ever: ``on_list`` with every (re-)list's items,
    ``on_event`` with each watch event but bookmarks.

    A watch the server ends is resumed from the last resourceVersion seen (of an
    event or a bookmark); an expired one is answered by listing again. Any other
    :class:`~kubewire.errors.KubeError` ends the loop: the caller decides whether
    and when to start it again.
    """
    version = await _relist(lister, on_list)
    while True:
        try:
            async for event in watcher(version):
                version = resource_version_of(event.object) or version
                if event.type != "BOOKMARK":
                    await on_event(event.type, event.object)
        except ExpiredError:
            version = await _relist(lister, on_list)


async def _relist(lister: Lister, on_list: Callable[[list[JSON]], Awaitable[None]]) -> str:
    listed = await lister()
    await on_list(listed.items)
    return listed.resource_version
