"""Prometheus metrics of the operator, exposed with prometheus_client over aiohttp.

The loops update plain counters and gauges here; a prometheus_client collector
turns them into metric families when scraped, so the text format, escaping and
histogram buckets are the library's. Series:

* ``dgxsim_operator_reconciles_total{loop,outcome}`` and
  ``dgxsim_operator_reconcile_seconds`` (a histogram per loop): how often the
  partitioner and the job placer ran and how long they took;
* ``dgxsim_operator_pending_demand{resource}`` and
  ``dgxsim_operator_unmet_demand{resource}``: devices pending pods and jobs wait
  for, before and after what exists and what the partitioner decided;
* ``dgxsim_operator_node_fragmentation{node}``: how much of a node's free MIG
  space placement rules make unusable (see ``planning.slices.fragmentation``);
* ``dgxsim_operator_decisions_total{kind}``: layout changes and placements made;
* ``dgxsim_operator_jobs{phase}``: DGXJobs by phase.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus server scrapes."""
GAUGES = (("dgxsim_operator_pending_demand", "resource",
           "Devices pending pods and DGXJobs wait for, by resource."),
          ("dgxsim_operator_unmet_demand", "resource",
           "Pending demand that no device and no decided layout serves."),
          ("dgxsim_operator_node_fragmentation", "node",
           "Mean share of free MIG space on a node that placement rules make unusable "
           "(0: none)."),
          ("dgxsim_operator_jobs", "phase", "DGXJobs by phase."))


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: int = 0
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum_s += seconds
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per upper bound, ``+Inf`` last, as the library wants them."""
        return [*((repr(b), float(c)) for b, c in zip(BUCKETS_S, self.counts, strict=True)),
                ("+Inf", float(self.total))]


@dataclass(eq=False)  # a registry keeps its collectors in a dict: identity, not value
class Metrics:
    """The operator's series; loops update them, ``collect``/``render`` expose them."""

    reconciles: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)
    pending_demand: dict[str, int] = field(default_factory=dict)
    unmet_demand: dict[str, int] = field(default_factory=dict)
    fragmentation: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)

    def reconciled(self, loop: str, outcome: str, seconds: float) -> None:
        self.reconciles[(loop, outcome)] = self.reconciles.get((loop, outcome), 0) + 1
        self.latency.setdefault(loop, Histogram()).observe(seconds)

    def decided(self, kind: str, n: int = 1) -> None:
        self.decisions[kind] = self.decisions.get(kind, 0) + n

    def set_demand(self, pending: Mapping[str, int], unmet: Mapping[str, int]) -> None:
        self.pending_demand = {k: pending.get(k, 0) for k in {*pending, *self.pending_demand}}
        self.unmet_demand = {k: unmet.get(k, 0) for k in {*unmet, *self.unmet_demand}}

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus_client's collector protocol)."""
        reconciles = CounterMetricFamily("dgxsim_operator_reconciles",
                                         "Reconcile rounds by loop and outcome.",
                                         labels=["loop", "outcome"])
        for (loop, outcome), n in sorted(dict(self.reconciles).items()):
            reconciles.add_metric([loop, outcome], n)
        yield reconciles
        latency = HistogramMetricFamily("dgxsim_operator_reconcile_seconds",
                                        "Duration of reconcile rounds.", labels=["loop"])
        for loop, h in sorted(dict(self.latency).items()):
            latency.add_metric([loop], h.buckets(), h.sum_s)
        yield latency
        values: dict[str, Mapping[str, float]] = {
                  "dgxsim_operator_pending_demand": self.pending_demand,
                  "dgxsim_operator_unmet_demand": self.unmet_demand,
                  "dgxsim_operator_node_fragmentation": self.fragmentation,
                  "dgxsim_operator_jobs": self.jobs}
        for name, label, text in GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=[label])
            for key, value in sorted(dict(values[name]).items()):
                gauge.add_metric([key], float(value))
            yield gauge
        decisions = CounterMetricFamily("dgxsim_operator_decisions",
                                        "Decisions made: MIG layout changes and gang placements.",
                                        labels=["kind"])
        for kind, n in sorted(dict(self.decisions).items()):
            decisions.add_metric([kind], n)
        yield decisions

    def render(self) -> str:
        """The series in Prometheus's text format."""
        registry = CollectorRegistry()
        registry.register(self)
        return generate_latest(registry).decode()


async def serve(metrics: Metrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``/metrics`` on ``host:port`` (0 picks a free port); returns the runner and port."""
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={
            "Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = int(sockets[0].getsockname()[1]) if sockets else port
    return runner, actual
