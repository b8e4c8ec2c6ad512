"""DCGM-exporter's metrics for simulated nodes: the series every GPU dashboard reads.

NVIDIA's dcgm-exporter publishes one series per GPU (and per MIG instance)
with the field's name, type and help from its counters file (``etc/
default-counters.csv`` and ``dcp-metrics-included.csv``), labelled ``gpu``,
``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` and the
driver version; a MIG instance adds ``GPU_I_PROFILE`` and ``GPU_I_ID``; in
Kubernetes the pod holding the device adds ``pod``, ``namespace`` and
``container``. dgxsim writes the same series so dashboards, alerts and
autoscalers written for dcgm-exporter work unchanged; the values come from
what runs (:mod:`gpumodel.telemetry`): a device's activity is that of the
workload its pod runs, as the node agent recorded it in an
:class:`ActivityBook` when it started the pod.

As on a real A100, device-level fields (utilisation, power, temperature,
clocks, XID) are per physical GPU, utilisation is not reported for a GPU in
MIG mode, and the profiling and framebuffer fields are per MIG instance.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dgxnode.agent.errors import AnnotationError
from dgxnode.agent.workload import WORKLOAD, parse_workload
from dgxnode.node import SimNode
from dgxnode.prediction import ActivityEstimator
from gpumodel.gpus import DeviceSpec, device
from gpumodel.inventory import InventoryDevice
from gpumodel.software import driver_version
from gpumodel.systems import system
from gpumodel.telemetry import (
    HELD_UNKNOWN,
    IDLE,
    Activity,
    gpu_load,
    power_w,
    sm_clock_mhz,
    temperature_c,
)

FIELDS: Mapping[str, str] = {
    "DCGM_FI_DEV_SM_CLOCK": "SM clock frequency (in MHz).",
    "DCGM_FI_DEV_MEM_CLOCK": "Memory clock frequency (in MHz).",
    "DCGM_FI_DEV_GPU_TEMP": "GPU temperature (in C).",
    "DCGM_FI_DEV_POWER_USAGE": "Power draw (in W).",
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
    "DCGM_FI_DEV_XID_ERRORS": "Value of the last XID error encountered.",
    "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB).",
    "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active.",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "Ratio of cycles the tensor (HMMA) pipe is active.",
    "DCGM_FI_PROF_DRAM_ACTIVE":
        "Ratio of cycles the device memory interface is active sending or receiving data.",
    "DCGM_FI_PROF_NVLINK_TX_BYTES":
        "The rate of data transmitted over NVLink, not including protocol headers, in bytes "
        "per second.",
    "DCGM_FI_PROF_NVLINK_RX_BYTES":
        "The rate of data received over NVLink, not including protocol headers, in bytes "
        "per second.",
}
"""Every field published, with dcgm-exporter's help text; all are gauges, as there."""
BASE_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
               "DCGM_FI_DRIVER_VERSION")
MIG_LABELS = ("GPU_I_PROFILE", "GPU_I_ID")
POD_LABELS = ("pod", "namespace", "container")


@dataclass
class ActivityBook:
    """What each running pod's devices are doing; written by the node agent's event loop
    when it starts and ends pods, read by the metrics server's thread."""

    _by_pod: dict[str, Activity] = field(default_factory=dict)
    _pod_of: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, uid: str, namespace: str, pod: str, activity: Activity) -> None:
        with self._lock:
            self._pod_of[uid] = f"{namespace}/{pod}"
            self._by_pod[f"{namespace}/{pod}"] = activity

    def ended(self, uid: str) -> None:
        with self._lock:
            key = self._pod_of.pop(uid, None)
            if key is not None:
                self._by_pod.pop(key, None)

    def of_owner(self, owner: str | None) -> Activity:
        """The activity of a device held by ``owner`` (``namespace/pod/container``)."""
        if owner is None:
            return IDLE
        with self._lock:
            return self._by_pod.get(owner.rsplit("/", 1)[0], HELD_UNKNOWN)


@dataclass
class PodActivities:
    """The pod controller's telemetry hook: each started pod's activity into the book,
    estimated from its ``dgxsim.io/workload`` on the devices it got."""

    book: ActivityBook
    estimate: ActivityEstimator | None = None

    def started(self, pod: dict[str, Any], devices: Mapping[str, tuple[str, ...]]) -> None:
        meta = pod["metadata"]
        text = (meta.get("annotations") or {}).get(WORKLOAD)
        activity = HELD_UNKNOWN
        if text is not None and self.estimate is not None:
            try:
                activity = self.estimate(parse_workload(text), devices)
            except AnnotationError:
                activity = HELD_UNKNOWN
        self.book.started(meta["uid"], meta["namespace"], meta["name"], activity)

    def ended(self, uid: str) -> None:
        self.book.ended(uid)


class DcgmCollector(Collector):
    """The DCGM series of every node of this process, computed when scraped."""

    def __init__(self, nodes: Mapping[str, SimNode], book: ActivityBook) -> None:
        self.nodes, self.book = nodes, book

    def collect(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(name, text, labels=None)
                    for name, text in FIELDS.items()}
        for sim in list(self.nodes.values()):
            for name, labels, value in node_samples(sim, self.book):
                families[name].add_sample(name, labels, value)
        yield from families.values()


Sample = tuple[str, dict[str, str], float]


def node_samples(sim: SimNode, book: ActivityBook) -> Iterator[Sample]:
    """Every DCGM sample of one node, from its published inventory."""
    inventory = sim.inventory()
    spec = device(system(inventory.kind).gpu)
    devices = inventory.devices
    for gpu in inventory.gpus:
        whole = next(d for d in devices if d.kind == "gpu" and d.gpu_index == gpu.index)
        base = _base_labels(whole, gpu.product_name, inventory.node)
        migs = [d for d in devices if d.kind == "mig" and d.gpu_index == gpu.index]
        yield from _gpu_samples(sim, spec, whole, migs, base, book)


def _gpu_samples(sim: SimNode, spec: DeviceSpec, whole: InventoryDevice,
                 migs: list[InventoryDevice], base: dict[str, str], book: ActivityBook
                 ) -> Iterator[Sample]:
    in_mig = not whole.usable
    parts = [(book.of_owner(d.owner), d.mig.compute_slices / _compute_slices(spec),
              d.mig.memory_slices / _memory_slices(spec)) for d in migs if d.mig] \
        if in_mig else [(book.of_owner(whole.owner), 1.0, 1.0)]
    load = gpu_load(parts)
    labels = {**base, **_pod_labels(None if in_mig else whole.owner)}
    power = power_w(spec, load)
    telemetry = spec.telemetry
    assert telemetry is not None
    yield "DCGM_FI_DEV_SM_CLOCK", labels, float(sm_clock_mhz(spec, load))
    yield "DCGM_FI_DEV_MEM_CLOCK", labels, float(telemetry.memory_clock_mhz)
    yield "DCGM_FI_DEV_GPU_TEMP", labels, round(temperature_c(spec, power), 1)
    yield "DCGM_FI_DEV_POWER_USAGE", labels, round(power, 3)
    yield "DCGM_FI_DEV_XID_ERRORS", labels, float(sim.state.last_xid.get(whole.id, 0))
    yield "DCGM_FI_PROF_NVLINK_TX_BYTES", labels, load.nvlink_bytes_per_s
    yield "DCGM_FI_PROF_NVLINK_RX_BYTES", labels, load.nvlink_bytes_per_s
    if in_mig:
        for mig in migs:
            yield from _device_samples(mig, book.of_owner(mig.owner),
                                       {**base, **_mig_labels(mig), **_pod_labels(mig.owner)})
        return
    yield "DCGM_FI_DEV_GPU_UTIL", labels, float(round(100 * load.engine))
    yield from _device_samples(whole, load, labels)


def _device_samples(dev: InventoryDevice, activity: Activity, labels: dict[str, str]
                    ) -> Iterator[Sample]:
    used = round(dev.memory_mib * activity.framebuffer_share)
    yield "DCGM_FI_DEV_FB_USED", labels, float(used)
    yield "DCGM_FI_DEV_FB_FREE", labels, float(dev.memory_mib - used)
    yield "DCGM_FI_PROF_GR_ENGINE_ACTIVE", labels, round(activity.engine, 6)
    yield "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", labels, round(activity.tensor, 6)
    yield "DCGM_FI_PROF_DRAM_ACTIVE", labels, round(activity.dram, 6)


def _base_labels(whole: InventoryDevice, model: str, node: str) -> dict[str, str]:
    return {"gpu": str(whole.gpu_index), "UUID": str(whole.gpu_uuid),
            "pci_bus_id": whole.pci_bus_id, "device": f"nvidia{whole.gpu_index}",
            "modelName": model, "Hostname": node, "DCGM_FI_DRIVER_VERSION": driver_version()}


def _mig_labels(mig: InventoryDevice) -> dict[str, str]:
    assert mig.mig is not None
    return {"GPU_I_PROFILE": str(mig.profile), "GPU_I_ID": str(mig.mig.gi_id)}


def _pod_labels(owner: str | None) -> dict[str, str]:
    if owner is None:
        return {}
    namespace, pod, container = [*owner.split("/", 2), "", ""][:3]
    return {"pod": pod, "namespace": namespace, "container": container}


def _compute_slices(spec: DeviceSpec) -> int:
    return spec.mig.compute_slices if spec.mig else 1


def _memory_slices(spec: DeviceSpec) -> int:
    return spec.mig.memory_slices if spec.mig else 1


class WatchLiveness(Collector):
    """``dgxsim_agent_watch_live{watch}``: 1 while the agent's watch of pods (or nodes)
    is listed and running, 0 while it reconnects; what ``dgxsim status`` reads."""

    def __init__(self, live: Mapping[str, bool]) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(WATCH_LIVE, "1 while the node agent's watch is live.",
                                   labels=["watch"])
        for watch, up in sorted(dict(self.live).items()):
            family.add_metric([watch], 1.0 if up else 0.0)
        yield family


WATCH_LIVE = "dgxsim_agent_watch_live"


def serve_metrics(collector: Collector, host: str, port: int,
                  *more: Collector) -> int:
    """Serve ``/metrics`` for the collectors on ``host:port`` (0: a free port) from a
    thread of prometheus_client's own; returns the port."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    for each in (collector, *more):
        registry.register(each)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
