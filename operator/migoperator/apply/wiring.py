"""The operator's long-lived parts and their start and stop, in one object.

Started once by the kopf startup handler: the API client, the CRD (installed
or updated, then waited on until Established), the default mig-parted
ConfigMap, the Prometheus endpoint, the partitioner's loop and the job
controller. Handlers reach them through kopf's ``memo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiohttp import web

from migoperator.apply.configs import CONFIG_MAP, ensure_default_configmap
from migoperator.apply.jobs import JobController
from migoperator.apply.kube import Kube
from migoperator.apply.partitioning import Partitioner
from migoperator.crd import CRD_NAME, crd_manifest
from migoperator.metrics import Metrics, serve
from migoperator.settings import OperatorSettings

log = logging.getLogger(__name__)
CRD_WAIT_S = 30.0


@dataclass
class Operator:
    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    partitioner: Partitioner
    jobs: JobController
    metrics_port: int | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @classmethod
    async def start(cls, settings: OperatorSettings) -> Operator:
        kube = await Kube.connect(settings.kube.kubeconfig)
        metrics = Metrics()
        partitioner = Partitioner(kube, settings, metrics)
        jobs = JobController(kube, settings, metrics, on_change=partitioner.wake)
        op = cls(settings, kube, metrics, partitioner, jobs)
        try:
            await op._prepare()
        except BaseException:
            await op.stop()
            raise
        return op

    async def _prepare(self) -> None:
        if self.settings.kube.install_crd:
            how = await self.kube.apply_crd(crd_manifest())
            log.info("CRD %s %s", CRD_NAME, how)
            await self._wait_established()
        namespace = self.settings.kube.namespace
        if await ensure_default_configmap(self.kube, namespace):
            log.info("installed ConfigMap %s/%s with the default MIG configs", namespace,
                     CONFIG_MAP)
        if self.settings.metrics.port is not None:
            self._runner, self.metrics_port = await serve(
                self.metrics, self.settings.metrics.host, self.settings.metrics.port)
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics.host,
                     self.metrics_port)
        self._tasks.append(asyncio.create_task(self.partitioner.run(), name="partitioner"))
        self._tasks.append(asyncio.create_task(self.jobs.run(), name="requeued jobs"))

    async def _wait_established(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CRD_WAIT_S
        while not await self.kube.crd_established(CRD_NAME):
            if loop.time() > deadline:
                raise TimeoutError(f"CRD {CRD_NAME} not Established after {CRD_WAIT_S:.0f} s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.kube.close()
