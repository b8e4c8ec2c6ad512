"""`dgxsim status` calls the node agent unhealthy while one of its watches is not live."""

from __future__ import annotations

import asyncio
from typing import Any

from dgxnode.agent.runner import NodeAgent
from dgxnode.dcgm import WatchLiveness, serve_metrics
from dgxsim.commands.cluster import watch_health
from kubewire.errors import UnavailableError
from kubewire.watch import ObjectList


def test_status_names_the_watches_that_are_not_live() -> None:
    live = {"pod": True, "node": True}
    port = serve_metrics(WatchLiveness(live), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/metrics"
    assert watch_health(url) == "health ok"
    live["pod"] = False
    assert watch_health(url) == "health watches not live: pod"


def test_status_says_when_it_cannot_tell() -> None:
    assert watch_health("http://127.0.0.1:9/metrics").startswith("health unknown")


async def test_a_watch_is_live_only_between_a_list_and_its_failure() -> None:
    agent = NodeAgent(kube=None, controllers={}, pods=None)  # type: ignore[arg-type]
    outcomes: list[Any] = [UnavailableError("list pods", 0, "refused"), ObjectList([], "7")]

    async def lister() -> ObjectList:
        outcome = outcomes.pop(0) if outcomes else ObjectList([], "8")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def watcher(version: str) -> Any:
        await asyncio.sleep(3600)
        yield  # pragma: no cover

    async def nothing(*_: Any) -> None:
        return None

    task = asyncio.create_task(agent._follow("pod", lister, watcher, nothing, nothing))
    await asyncio.sleep(0.05)
    assert agent.live["pod"] is False, "the first list failed"
    for _ in range(60):
        await asyncio.sleep(0.05)
        if agent.live["pod"]:
            break
    assert agent.live["pod"] is True, "listed again and watching"
    task.cancel()
