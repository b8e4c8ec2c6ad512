"""A pod's end that arrives while the API server does not answer still ends its DGXJob.

kopf does not retry an event handler, so the operator's pod handler syncs a job
again while the API server is away (restarting, or its etcd is) instead of
dropping the pod's end; an answer that is a refusal is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kubewire import ForbiddenError, ObjectList, UnavailableError
from migoperator.apply import jobs as jobs_module
from migoperator.apply.jobs import JobController
from migoperator.metrics import Metrics
from migoperator.settings import OperatorSettings

JSON = dict[str, Any]


@dataclass
class AwayThenBack:
    """The API server: no answer ``away`` times, then a job whose one pod succeeded."""

    away: int
    refusal: Exception | None = None
    statuses: list[JSON] = field(default_factory=list)

    async def get_job(self, namespace: str, name: str) -> JSON | None:
        if self.refusal is not None:
            raise self.refusal
        if self.away > 0:
            self.away -= 1
            raise UnavailableError("read dgxjobs", 0, "no answer")
        return {"metadata": {"name": name, "namespace": namespace},
                "spec": {"workload": "gemm"},
                "status": {"phase": "Running", "placement": [
                    {"replica": 0, "node": "dgx-0", "pod": f"{name}-r0"}]}}

    async def list_pods(self, **_: Any) -> ObjectList:
        return ObjectList([{"metadata": {"name": "j-r0", "namespace": "ml"},
                            "status": {"phase": "Succeeded"}}], "1")

    async def patch_job_status(self, namespace: str, name: str, patch: JSON) -> JSON:
        self.statuses.append(patch)
        return {"status": patch}

    async def event(self, *_: Any, **__: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "SYNC_RETRY_S", 0.001)
    monkeypatch.setattr(jobs_module, "SYNC_RETRY_MAX_S", 0.002)


async def test_the_job_ends_once_the_api_server_answers_again() -> None:
    kube = AwayThenBack(away=20)
    jobs = JobController(kube, OperatorSettings(), Metrics())  # type: ignore[arg-type]
    await jobs.sync_when_answered("ml", "j")
    assert kube.away == 0
    assert [s.get("phase") for s in kube.statuses] == ["Succeeded"]


async def test_a_refusal_is_not_retried() -> None:
    kube = AwayThenBack(away=0, refusal=ForbiddenError("read dgxjobs", 403, "no"))
    jobs = JobController(kube, OperatorSettings(), Metrics())  # type: ignore[arg-type]
    with pytest.raises(ForbiddenError):
        await jobs.sync_when_answered("ml", "j")
    assert kube.statuses == []
