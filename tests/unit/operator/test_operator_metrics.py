"""Prometheus text exposition of the operator's metrics, and the endpoint serving it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from migoperator.metrics import Metrics, serve


def sample() -> Metrics:
    metrics = Metrics()
    metrics.reconciled("partition", "changed", 0.02)
    metrics.reconciled("partition", "unchanged", 3.0)
    metrics.set_demand({"nvidia.com/mig-1g.5gb": 14}, {"nvidia.com/mig-1g.5gb": 0})
    metrics.fragmentation = {"dgx-0": 0.5}
    metrics.decided("mig-layout")
    metrics.jobs = {"Running": 2}
    return metrics


def test_series_in_the_text_format() -> None:
    text = sample().render()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample_name: str, **labels: str) -> float:
        return next(s.value for s in families[family].samples
                    if s.name == sample_name and s.labels == labels)

    assert families["dgxsim_operator_reconciles"].type == "counter"
    assert value("dgxsim_operator_reconciles", "dgxsim_operator_reconciles_total",
                 loop="partition", outcome="changed") == 1
    seconds = "dgxsim_operator_reconcile_seconds"
    assert families[seconds].type == "histogram"
    assert value(seconds, f"{seconds}_bucket", loop="partition", le="0.025") == 1
    assert value(seconds, f"{seconds}_bucket", loop="partition", le="+Inf") == 2
    assert value(seconds, f"{seconds}_count", loop="partition") == 2
    assert value(seconds, f"{seconds}_sum", loop="partition") == 3.02
    assert value("dgxsim_operator_pending_demand", "dgxsim_operator_pending_demand",
                 resource="nvidia.com/mig-1g.5gb") == 14
    assert value("dgxsim_operator_unmet_demand", "dgxsim_operator_unmet_demand",
                 resource="nvidia.com/mig-1g.5gb") == 0
    assert value("dgxsim_operator_node_fragmentation", "dgxsim_operator_node_fragmentation",
                 node="dgx-0") == 0.5
    assert value("dgxsim_operator_decisions", "dgxsim_operator_decisions_total",
                 kind="mig-layout") == 1
    assert value("dgxsim_operator_jobs", "dgxsim_operator_jobs", phase="Running") == 2
    assert text.endswith("\n")


async def test_the_endpoint_serves_them_on_loopback() -> None:
    runner, port = await serve(sample(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "dgxsim_operator_jobs" in await response.text()
    finally:
        await runner.cleanup()
