"""The kopf handlers: decorators and a few lines each; the work lives in ``apply``.

Outcomes follow kopf's vocabulary: a DGXJob that can never run is a
``PermanentError`` (its status already says Failed and why), a job that waits
for capacity or a node that is still reconfiguring is a ``TemporaryError``
retried after a delay. Pod and node events only wake the loops that care.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from gpumodel.vocabulary import JOB_LABEL
from migoperator.apply.wiring import Operator
from migoperator.errors import InvalidJobError, NotReadyError
from migoperator.models import GROUP, PLURAL, VERSION
from migoperator.settings import OperatorSettings

PREFIX = "dgxsim.io"


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    settings: OperatorSettings = kwargs["memo"].settings
    if settings.kube.kubeconfig is not None:
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.posting.level = logging.WARNING
    memo.operator = await Operator.start(memo.settings)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "operator", None) is not None:
        await memo.operator.stop()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
async def place_job(body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                    **_: Any) -> None:
    op: Operator = memo.operator
    namespace = namespace or "default"
    try:
        if await op.jobs.admit(dict(body)) is None:
            return
        await op.jobs.place(namespace, name)
        await op.jobs.sync(namespace, name)
    except InvalidJobError as err:
        raise kopf.PermanentError(str(err)) from err
    except NotReadyError as err:
        raise kopf.TemporaryError(str(err), delay=err.delay_s) from err


@kopf.on.event("", "v1", "pods")
async def pod_changed(labels: kopf.Labels, namespace: str | None, memo: kopf.Memo,
                      **_: Any) -> None:
    op: Operator = memo.operator
    op.partitioner.wake()
    if JOB_LABEL in labels and namespace:
        await op.jobs.sync_when_answered(namespace, labels[JOB_LABEL])


@kopf.on.event("", "v1", "nodes")
async def node_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.operator.partitioner.wake()
