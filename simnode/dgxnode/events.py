"""Change notifications: how the device plugin learns that the node changed.

Subscribers register a callback (called synchronously, in commit order, after
the new state is saved) or take an :class:`asyncio.Queue` fed from the node.
Each :class:`NodeEvent` carries the new ``generation`` and what kind of change
it was; readers fetch the full :class:`gpumodel.inventory.NodeInventory` from
the node rather than patching their own copy, which keeps them simple and
correct (the plugin re-sends its whole device list on each change).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

EventKind = Literal["mig", "mode", "reset", "allocation", "health", "config", "init"]


class NodeEvent(BaseModel):
    """One committed change of a node's state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str
    generation: int
    kind: EventKind
    gpu: int | None = None
    message: str = ""


Subscriber = Callable[[NodeEvent], None]


class ChangeFeed:
    """Fan-out of :class:`NodeEvent` to callbacks and asyncio queues."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` for every event from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def queue(self) -> tuple[asyncio.Queue[NodeEvent], Callable[[], None]]:
        """A queue for the running event loop, fed thread-safely; and its unsubscribe."""
        loop, on_loop = asyncio.get_running_loop(), threading.get_ident()
        queue: asyncio.Queue[NodeEvent] = asyncio.Queue()

        def feed(event: NodeEvent) -> None:
            if threading.get_ident() == on_loop:  # a change made on the loop itself
                queue.put_nowait(event)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, event)

        return queue, self.subscribe(feed)

    def publish(self, event: NodeEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not undo a committed change
                log.exception("node event subscriber %r failed on %s", callback, event)
