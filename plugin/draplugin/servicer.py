"""The gRPC side: the DRA plugin service and the registration the kubelet's watcher calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, TypeAlias

import grpc

from draplugin.checkpoint import PreparedClaim
from draplugin.errors import DraPluginError
from draplugin.preparing import DeviceState
from gpumodel.vocabulary import DRA_DRIVER
from kubeletapi.dra.v1 import DRA_PLUGIN_SERVICE, DRA_PLUGIN_TYPE, api_pb2, api_pb2_grpc
from kubeletapi.pluginregistration.v1 import api_pb2 as reg_pb2
from kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from kubewire import KubeError

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class ClaimReader(Protocol):
    """Reads a ResourceClaim from the API server and writes its device status."""

    async def read_resource_claim(self, namespace: str, name: str) -> JSON: ...

    async def patch_resource_claim_status(self, namespace: str, name: str, patch: JSON
                                          ) -> JSON: ...


def device_status(prepared: PreparedClaim) -> list[JSON]:
    """The claim's ``status.devices``: each prepared device and the GPU or MIG device
    (UUID) that stands behind it."""
    return [{"driver": DRA_DRIVER, "pool": d.pool, "device": d.device,
             "data": {"uuid": d.uuid, "cdiDeviceIDs": list(d.cdi_device_ids)}}
            for d in prepared.devices]


class DraServicer(api_pb2_grpc.DRAPluginServicer):
    """``NodePrepareResources`` / ``NodeUnprepareResources`` over :class:`DeviceState`."""

    def __init__(self, state: DeviceState, claims: ClaimReader) -> None:
        self.state = state
        self.claims = claims

    async def NodePrepareResources(self, request: api_pb2.NodePrepareResourcesRequest,
                                   context: Context) -> api_pb2.NodePrepareResourcesResponse:
        answers = await asyncio.gather(*(self._prepare(c) for c in request.claims))
        return api_pb2.NodePrepareResourcesResponse(
            claims={c.uid: a for c, a in zip(request.claims, answers, strict=True)})

    async def _prepare(self, ref: api_pb2.Claim) -> api_pb2.NodePrepareResourceResponse:
        try:
            claim = await self.claims.read_resource_claim(ref.namespace, ref.name)
            if claim["metadata"]["uid"] != ref.uid:
                return api_pb2.NodePrepareResourceResponse(
                    error=f"ResourceClaim {ref.namespace}/{ref.name} has UID "
                          f"{claim['metadata']['uid']}, not {ref.uid}")
            prepared = await self.state.prepare(claim)
            await self._report(ref, device_status(prepared))
        except (DraPluginError, OSError) as err:
            return api_pb2.NodePrepareResourceResponse(error=str(err))
        except Exception as err:  # the kubelet reports the error on the pod
            log.exception("prepare %s/%s failed", ref.namespace, ref.name)
            return api_pb2.NodePrepareResourceResponse(error=f"prepare failed: {err}")
        return api_pb2.NodePrepareResourceResponse(devices=[
            api_pb2.Device(request_names=d.request_names, pool_name=d.pool,
                           device_name=d.device, cdi_device_ids=d.cdi_device_ids)
            for d in prepared.devices])

    async def _report(self, ref: api_pb2.Claim, devices: list[JSON]) -> None:
        """Write the claim's device status; best effort (the pod runs either way)."""
        try:
            await self.claims.patch_resource_claim_status(ref.namespace, ref.name, {
                "metadata": {"uid": ref.uid}, "status": {"devices": devices or None}})
        except KubeError as err:
            log.warning("device status of claim %s/%s not written: %s", ref.namespace,
                        ref.name, err)

    async def NodeUnprepareResources(self, request: api_pb2.NodeUnprepareResourcesRequest,
                                     context: Context
                                     ) -> api_pb2.NodeUnprepareResourcesResponse:
        answers = {}
        for ref in request.claims:
            try:
                await self.state.unprepare(ref.uid)
                await self._report(ref, [])
                answers[ref.uid] = api_pb2.NodeUnprepareResourceResponse()
            except (DraPluginError, OSError) as err:
                answers[ref.uid] = api_pb2.NodeUnprepareResourceResponse(error=str(err))
        return api_pb2.NodeUnprepareResourcesResponse(claims=answers)


class RegistrationServicer(reg_grpc.RegistrationServicer):
    """Answers the kubelet's plugin watcher: a DRA plugin for ``gpu.nvidia.com``."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.registered = asyncio.Event()
        self.error: str | None = None

    async def GetInfo(self, request: reg_pb2.InfoRequest, context: Context
                      ) -> reg_pb2.PluginInfo:
        return reg_pb2.PluginInfo(type=DRA_PLUGIN_TYPE, name=DRA_DRIVER, endpoint=self.endpoint,
                                  supported_versions=[DRA_PLUGIN_SERVICE])

    async def NotifyRegistrationStatus(self, request: reg_pb2.RegistrationStatus,
                                       context: Context) -> reg_pb2.RegistrationStatusResponse:
        if request.plugin_registered:
            self.error = None
            self.registered.set()
        else:
            self.error = request.error
            log.error("the kubelet refused the %s plugin: %s", DRA_DRIVER, request.error)
        return reg_pb2.RegistrationStatusResponse()
