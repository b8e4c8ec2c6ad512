"""Prometheus text exposition of the operator's metrics, and the endpoint serving it."""

from __future__ import annotations

import aiohttp

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
    lines = text.splitlines()
    assert 'dgxsim_operator_reconciles_total{loop="partition",outcome="changed"} 1' in lines
    assert 'dgxsim_operator_reconcile_seconds_bucket{le="0.025",loop="partition"} 1' in lines
    assert 'dgxsim_operator_reconcile_seconds_bucket{le="+Inf",loop="partition"} 2' in lines
    assert 'dgxsim_operator_reconcile_seconds_count{loop="partition"} 2' in lines
    assert 'dgxsim_operator_pending_demand{resource="nvidia.com/mig-1g.5gb"} 14' in lines
    assert 'dgxsim_operator_unmet_demand{resource="nvidia.com/mig-1g.5gb"} 0' in lines
    assert 'dgxsim_operator_node_fragmentation{node="dgx-0"} 0.5' in lines
    assert 'dgxsim_operator_decisions_total{kind="mig-layout"} 1' in lines
    assert 'dgxsim_operator_jobs{phase="Running"} 2' in lines
    assert "# TYPE dgxsim_operator_reconcile_seconds histogram" in lines
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
