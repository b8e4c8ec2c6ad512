"""Publishes the node's pool of ResourceSlices and keeps it current.

One pool per node (named after it), slices named ``<node>-gpu.nvidia.com-<i>``
and owned by the Node, so they go when it goes. Every change writes a new pool
generation to all of the pool's slices (the scheduler only trusts a complete
pool of the highest generation) and deletes slices left over from a larger
publication. An unchanged publication writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gpumodel.dra import limit_problems, slice_specs
from gpumodel.inventory import NodeInventory
from gpumodel.vocabulary import DRA_API_VERSION, DRA_DRIVER, DraMode
from kubewire import KubeError

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class SliceApi(Protocol):
    """The API calls of a publisher (:class:`kubewire.KubeClient` has them)."""

    async def list_resource_slices(self, *, field_selector: str | None = None) -> Any: ...

    async def create_resource_slice(self, body: JSON) -> JSON: ...

    async def replace_resource_slice(self, name: str, body: JSON) -> JSON: ...

    async def delete_resource_slice(self, name: str) -> None: ...

    async def read_node(self, name: str) -> JSON: ...


def slice_name(node: str, index: int) -> str:
    return f"{node}-{DRA_DRIVER}-{index}"


@dataclass
class SlicePublisher:
    api: SliceApi
    node: str
    mode: DraMode
    inventory: Callable[[], NodeInventory]
    generation: int = 0
    published: list[JSON] | None = None
    writes: int = 0

    async def publish(self) -> bool:
        """Bring the pool in line with the node; True if anything was written."""
        specs = slice_specs(self.inventory(), self.mode)
        problems = limit_problems(specs)
        if problems:
            raise ValueError(f"{self.node}: ResourceSlices beyond the API's limits: "
                             + "; ".join(problems))
        if specs == self.published:
            return False
        owner = await self._owner()
        if owner is None:
            # Slices belong to their Node (deleted with it): none before it exists.
            log.info("%s: no Node yet; its ResourceSlices wait for it", self.node)
            return False
        listed = await self.api.list_resource_slices(
            field_selector=f"spec.nodeName={self.node},spec.driver={DRA_DRIVER}")
        existing = {s["metadata"]["name"]: s for s in listed.items}
        top = max((int(s["spec"]["pool"]["generation"]) for s in existing.values()), default=0)
        self.generation = max(self.generation, top) + 1
        for index, spec in enumerate(specs):
            name = slice_name(self.node, index)
            body: JSON = {
                "apiVersion": DRA_API_VERSION, "kind": "ResourceSlice",
                "metadata": {"name": name, "ownerReferences": [owner]},
                "spec": {**spec, "pool": {"name": self.node, "generation": self.generation,
                                          "resourceSliceCount": len(specs)}}}
            if name in existing:
                body["metadata"]["resourceVersion"] = existing[name]["metadata"][
                    "resourceVersion"]
                await self.api.replace_resource_slice(name, body)
            else:
                await self.api.create_resource_slice(body)
            self.writes += 1
        for name in set(existing) - {slice_name(self.node, i) for i in range(len(specs))}:
            await self.api.delete_resource_slice(name)
        self.published = specs
        log.info("%s: published %d ResourceSlices (%s, generation %d)", self.node, len(specs),
                 self.mode, self.generation)
        return True

    async def _owner(self) -> JSON | None:
        try:
            node = await self.api.read_node(self.node)
        except KubeError:
            return None
        return {"apiVersion": "v1", "kind": "Node", "name": self.node,
                "uid": node["metadata"]["uid"], "controller": True}
