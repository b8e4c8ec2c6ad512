"""Where the plugin reads a node's inventory from.

* :class:`InventoryFeed`: in-process. Whoever owns the node state (the dgxsim
  wiring in kubelet-less mode) calls :meth:`InventoryFeed.publish`; watchers
  wake at once, which keeps ``ListAndWatch`` within milliseconds of a change.
* :class:`InventoryFile`: the ``inventory.json`` simnode writes (kind mode,
  where simnode and the plugin are separate processes). It is polled by
  modification time and size; a file that does not parse is reported and the
  last good inventory stays advertised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import ValidationError

from gpumodel.inventory import NodeInventory

log = logging.getLogger(__name__)
POLL_INTERVAL_S = 0.05


class InventoryFeed:
    """An in-process inventory that notifies watchers on every new generation."""

    def __init__(self, initial: NodeInventory) -> None:
        self._current = initial
        self._changed = asyncio.Condition()

    def snapshot(self) -> NodeInventory:
        return self._current

    async def publish(self, inventory: NodeInventory) -> None:
        async with self._changed:
            self._current = inventory
            self._changed.notify_all()

    async def watch(self) -> AsyncIterator[NodeInventory]:
        seen = self._current
        while True:
            async with self._changed:
                while self._current is seen:
                    await self._changed.wait()
                seen = self._current
            yield seen


class InventoryFile:
    """The inventory document in a file, watched by polling."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._current = self._read()
        if self._current is None:
            raise FileNotFoundError(f"no readable node inventory at {path}")

    def _read(self) -> NodeInventory | None:
        try:
            return NodeInventory.model_validate_json(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError) as err:
            log.error("inventory %s is unreadable (%s); keeping the last good one",
                      self.path, err)
            return None

    def snapshot(self) -> NodeInventory:
        assert self._current is not None
        return self._current

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    async def watch(self) -> AsyncIterator[NodeInventory]:
        stamp = self._stamp()
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            now = self._stamp()
            if now == stamp:
                continue
            stamp = now
            fresh = self._read()
            if fresh is not None and fresh != self._current:
                self._current = fresh
                yield fresh
