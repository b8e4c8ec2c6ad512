"""A Node update the API server refuses ends the MIG change ``failed``, with its reason.

Labels the server calls invalid (HTTP 422) cannot succeed on a retry, so the
node agent must report the refusal and stop, not retry every second while
``nvidia.com/mig.config.state`` stays ``pending``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dgxnode.agent.nodes import NodeController
from dgxnode.node import SimNode
from gpumodel.vocabulary import MIG_CONFIG, MIG_CONFIG_STATE
from kubewire import InvalidError

JSON = dict[str, Any]
REASON = 'Node "n" is invalid: metadata.labels: Invalid value: "nvidia.com/x+y"'


class RefusingKube:
    """Accepts label patches until one carries a GFD label, then refuses it as the server does."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.events: list[tuple[str, str]] = []
        self.refused = 0

    async def read_node(self, name: str) -> JSON:
        return {"metadata": {"name": name, "uid": "u", "labels": dict(self.labels)}}

    async def patch_node(self, name: str, body: JSON) -> JSON:
        labels = body["metadata"].get("labels") or {}
        if any(k.startswith("nvidia.com/mig-") for k in labels):
            self.refused += 1
            raise InvalidError(f"patch node {name}", 422, REASON)
        self.labels.update({k: v for k, v in labels.items() if v is not None})
        return await self.read_node(name)

    async def event(self, obj: JSON, reason: str, message: str, kind: str = "Normal",
                    host: str | None = None) -> None:
        self.events.append((reason, message))

    async def read_configmap(self, namespace: str, name: str) -> None:
        return None


def test_refused_labels_end_the_reconfiguration_failed_with_the_reason() -> None:
    async def scenario() -> tuple[RefusingKube, SimNode]:
        kube = RefusingKube()
        sim = SimNode.create("n")
        controller = NodeController(kube=kube, sim=sim, devices=None,  # type: ignore[arg-type]
                                    strategy="mixed")
        node = await kube.read_node("n")
        await controller.apply_mig_config("all-1g.5gb", node)
        await controller._sync()  # a later change: the same refused update is not sent again
        return kube, sim

    kube, sim = asyncio.run(scenario())
    assert kube.labels[MIG_CONFIG_STATE] == "failed"
    assert sim.state.mig_config_state == "failed"
    assert ("NodeUpdateRefused", f"patch node n: HTTP 422: {REASON}") in kube.events
    assert kube.refused <= 2
    assert MIG_CONFIG not in kube.labels or kube.labels[MIG_CONFIG] == "all-1g.5gb"
