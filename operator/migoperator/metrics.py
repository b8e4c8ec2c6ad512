"""Prometheus metrics of the operator, in the text exposition format, over aiohttp.

Why no client library: the operator exports a dozen series, and the text
format (``# HELP``, ``# TYPE``, ``name{labels} value``) is simple and stable;
aiohttp is already there because kopf depends on it. Series:

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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               for k, v in sorted(labels.items()))
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Metrics:
    """The operator's series; loops update them, ``render`` prints them."""

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

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}"))

        family("dgxsim_operator_reconciles_total", "counter",
               "Reconcile rounds by loop and outcome.")
        for (loop, outcome), n in sorted(self.reconciles.items()):
            out.append(f"dgxsim_operator_reconciles_total{_labels(loop=loop, outcome=outcome)} {n}")
        family("dgxsim_operator_reconcile_seconds", "histogram", "Duration of reconcile rounds.")
        for loop, h in sorted(self.latency.items()):
            for bound, count in zip(BUCKETS_S, h.counts, strict=True):
                le = _labels(loop=loop, le=_number(bound))
                out.append(f"dgxsim_operator_reconcile_seconds_bucket{le} {count}")
            out.append(f"dgxsim_operator_reconcile_seconds_bucket{_labels(loop=loop, le='+Inf')}"
                       f" {h.total}")
            out.append(f"dgxsim_operator_reconcile_seconds_sum{_labels(loop=loop)} "
                       f"{_number(h.sum_s)}")
            out.append(f"dgxsim_operator_reconcile_seconds_count{_labels(loop=loop)} {h.total}")
        for name, values, text in (
                ("dgxsim_operator_pending_demand", self.pending_demand,
                 "Devices pending pods and DGXJobs wait for, by resource."),
                ("dgxsim_operator_unmet_demand", self.unmet_demand,
                 "Pending demand that no device and no decided layout serves."),
                ("dgxsim_operator_node_fragmentation", self.fragmentation,
                 "Mean share of free MIG space on a node that placement rules make unusable "
                 "(0: none)."),
                ("dgxsim_operator_jobs", self.jobs, "DGXJobs by phase.")):
            family(name, "gauge", text)
            key = {"dgxsim_operator_node_fragmentation": "node",
                   "dgxsim_operator_jobs": "phase"}.get(name, "resource")
            for label, value in sorted(values.items()):
                out.append(f"{name}{_labels(**{key: label})} {_number(value)}")
        family("dgxsim_operator_decisions_total", "counter",
               "Decisions made: MIG layout changes and gang placements.")
        for kind, n in sorted(self.decisions.items()):
            out.append(f"dgxsim_operator_decisions_total{_labels(kind=kind)} {n}")
        return "\n".join(out) + "\n"


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
