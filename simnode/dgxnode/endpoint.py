"""The node's local endpoint: how a job container talks to its simulated node.

Real jobs learn about their GPUs from the driver; a dgxsim job container runs
``dgxsim workload``, which asks its node instead, over HTTP on a Unix socket
that the device plugin's Allocate mounts into the container
(``DGXSIM_ENDPOINT``). Routes, per node:

* ``GET  /v1/nodes/{node}/inventory``: the node's published inventory.
* ``POST /v1/nodes/{node}/predict``: ``{"workload": {...}, "devices": [...]}``
  -> the predicted step time and run time on those devices.
* ``POST /v1/nodes/{node}/containers``: ``{"owner": "ns/pod/ctr", "devices": [...]}``
  records the devices as in use (what running CUDA processes mean to the
  MIG manager); ``DELETE`` with the same body releases them. A device a real
  kubelet assigned (:mod:`dgxnode.holdings`) is already held by the pod the
  kubelet gave it to, whatever owner name the container uses.

Bad requests get HTTP 400 with ``{"error": "..."}`` naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgxnode.agent.errors import AnnotationError
from dgxnode.agent.workload import StepPredictor, WorkloadSpec
from dgxnode.errors import SimnodeError
from dgxnode.node import SimNode
from gpumodel.inventory import InventoryDevice


class PredictRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: WorkloadSpec
    devices: tuple[str, ...] = Field(min_length=1)


class ContainerRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: str = Field(min_length=1)
    devices: tuple[str, ...] = Field(min_length=1)


def _prepare_socket(socket: Path) -> None:
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class NodeEndpoint:
    """The HTTP app over a set of nodes; :meth:`serve` binds it to a Unix socket."""

    def __init__(self, nodes: Mapping[str, SimNode], predictor: StepPredictor | None,
                 time_scale: float = 1.0) -> None:
        self.nodes = nodes
        self.predictor = predictor
        self.time_scale = time_scale
        self.app = web.Application()
        self.app.add_routes([
            web.get("/v1/nodes/{node}/inventory", self.inventory),
            web.post("/v1/nodes/{node}/predict", self.predict),
            web.post("/v1/nodes/{node}/containers", self.hold),
            web.delete("/v1/nodes/{node}/containers", self.release),
        ])
        self._runner: web.AppRunner | None = None

    async def serve(self, socket: Path) -> None:
        _prepare_socket(socket)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(socket)).start()
        # Job containers run as any user; the socket is their only way in.
        socket.chmod(0o666)  # noqa: ASYNC240

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _node(self, request: web.Request) -> SimNode | web.Response:
        name = request.match_info["node"]
        node = self.nodes.get(name)
        return node if node is not None else _error(404, f"no node {name} here")

    @staticmethod
    async def _body(request: web.Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(json.loads(await request.read()))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {err}"}),
                                     content_type="application/json") from err
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise web.HTTPBadRequest(text=json.dumps({"error": f"{where}: {first['msg']}"}),
                                     content_type="application/json") from err

    async def inventory(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if isinstance(node, web.Response):
            return node
        return web.Response(text=node.inventory().model_dump_json(),
                            content_type="application/json")

    async def predict(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if isinstance(node, web.Response):
            return node
        body: PredictRequest = await self._body(request, PredictRequest)
        known: dict[str, InventoryDevice] = {d.id: d for d in node.inventory().devices}
        unknown = [d for d in body.devices if d not in known]
        if unknown:
            return _error(400, f"unknown device(s) on {node.name}: {', '.join(unknown)}")
        if self.predictor is None:
            return _error(501, "this node has no performance model")
        by_resource: dict[str, tuple[str, ...]] = {}
        for device_id in body.devices:
            resource = known[device_id].resource
            by_resource[resource] = (*by_resource.get(resource, ()), device_id)
        try:
            step_s = self.predictor(body.workload, by_resource)
        except (AnnotationError, ValueError, KeyError) as err:
            return _error(400, str(err))
        duration_s = step_s * body.workload.steps
        return web.json_response({
            "step_time_s": step_s, "steps": body.workload.steps, "duration_s": duration_s,
            "time_scale": self.time_scale, "wall_s": duration_s / self.time_scale})

    async def hold(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if isinstance(node, web.Response):
            return node
        body: ContainerRequest = await self._body(request, ContainerRequest)
        try:
            for device_id in body.devices:
                if device_id in node.state.kubelet_assigned:
                    continue  # a real kubelet gave it to this container's pod: its record stands
                node.allocate(device_id, body.owner)
        except SimnodeError as err:
            return _error(409, str(err))
        return web.json_response({"held": list(body.devices)})

    async def release(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if isinstance(node, web.Response):
            return node
        body: ContainerRequest = await self._body(request, ContainerRequest)
        mine = [d for d in body.devices if node.state.allocations.get(d) == body.owner]
        for device_id in mine:
            node.release(device_id)
        return web.json_response({"released": mine})
