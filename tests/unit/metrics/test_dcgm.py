"""DCGM-exporter's series for a simulated node: names, types, help and labels as
dcgm-exporter writes them, values that follow what runs, parsed back with
prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dgxnode.dcgm import FIELDS, ActivityBook, DcgmCollector
from dgxnode.node import SimNode
from gpumodel.gpus import device
from gpumodel.telemetry import (
    HELD_UNKNOWN,
    Activity,
    activity_of_step,
    gpu_load,
    power_w,
    temperature_c,
)

A100 = device("a100-40gb")


def scrape(nodes: dict[str, SimNode], book: ActivityBook) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(DcgmCollector(nodes, book))
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], name: str, **labels: str) -> list[Any]:
    return [s for s in families[name].samples
            if all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.fixture
def node() -> SimNode:
    sim = SimNode.create("dgx-0")
    sim.set_mig_mode(1, True)
    sim.reset_gpu(1)
    for _ in range(7):
        sim.create_gi(1, "1g.5gb", default_ci=True)
    return sim


def test_every_field_is_a_gauge_with_dcgm_exporters_help(node: SimNode) -> None:
    families = scrape({"dgx-0": node}, ActivityBook())
    for name, text in FIELDS.items():
        assert families[name].type == "gauge"
        assert families[name].documentation == text
    gpu0 = samples(families, "DCGM_FI_DEV_POWER_USAGE", gpu="0")[0]
    assert set(gpu0.labels) == {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
                                "DCGM_FI_DRIVER_VERSION"}
    assert gpu0.labels["device"] == "nvidia0"
    assert gpu0.labels["modelName"] == "NVIDIA A100-SXM4-40GB"
    assert gpu0.labels["Hostname"] == "dgx-0"


def test_only_devices_in_use_are_busy_and_carry_their_pod(node: SimNode) -> None:
    book = ActivityBook()
    gpu3 = node.hardware.gpu(3).uuid
    node.allocate(gpu3, "team/train-0/main")
    book.started("uid-1", "team", "train-0", Activity(engine=0.8, tensor=0.6, dram=0.3,
                                                      framebuffer_share=0.9))
    families = scrape({"dgx-0": node}, book)
    util = {s.labels["gpu"]: s.value for s in families["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert util["3"] == 80.0
    assert all(v == 0.0 for g, v in util.items() if g != "3")
    busy = samples(families, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpu="3")[0]
    assert busy.value == pytest.approx(0.6)
    assert (busy.labels["pod"], busy.labels["namespace"], busy.labels["container"]) == (
        "train-0", "team", "main")
    assert "pod" not in samples(families, "DCGM_FI_DEV_GPU_UTIL", gpu="0")[0].labels
    power = {s.labels["gpu"]: s.value for s in families["DCGM_FI_DEV_POWER_USAGE"].samples}
    assert power["3"] > power["0"] == A100.telemetry.idle_power_w  # type: ignore[union-attr]


def test_mig_instances_report_per_instance_and_no_gpu_utilisation(node: SimNode) -> None:
    book = ActivityBook()
    mig = next(d for d in node.inventory().devices if d.kind == "mig")
    node.allocate(mig.id, "infer/bert-0/server")
    families = scrape({"dgx-0": node}, book)
    assert samples(families, "DCGM_FI_DEV_GPU_UTIL", gpu="1") == []
    instances = samples(families, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpu="1")
    assert len(instances) == 7
    assert {s.labels["GPU_I_PROFILE"] for s in instances} == {"1g.5gb"}
    held = [s for s in instances if s.labels.get("pod") == "bert-0"]
    assert len(held) == 1 and held[0].value == HELD_UNKNOWN.engine
    assert held[0].labels["GPU_I_ID"] == str(mig.mig.gi_id)  # type: ignore[union-attr]
    assert all(s.value == 0.0 for s in instances if s is not held[0])
    used = samples(families, "DCGM_FI_DEV_FB_USED", gpu="1", pod="bert-0")[0].value
    free = samples(families, "DCGM_FI_DEV_FB_FREE", gpu="1", pod="bert-0")[0].value
    assert used + free == mig.memory_mib and used > 0


def test_the_last_xid_is_reported_until_a_reboot(node: SimNode) -> None:
    gpu5 = node.hardware.gpu(5).uuid
    node.set_health(gpu5, healthy=False, xid=79)
    node.set_health(gpu5, healthy=True)
    families = scrape({"dgx-0": node}, ActivityBook())
    assert samples(families, "DCGM_FI_DEV_XID_ERRORS", gpu="5")[0].value == 79
    node.reboot()
    families = scrape({"dgx-0": node}, ActivityBook())
    assert samples(families, "DCGM_FI_DEV_XID_ERRORS", gpu="5")[0].value == 0


def test_power_and_temperature_span_idle_to_the_tdp() -> None:
    telemetry = A100.telemetry
    assert telemetry is not None
    full = Activity(engine=1.0, tensor=1.0, dram=1.0)
    assert power_w(A100, Activity()) == telemetry.idle_power_w
    assert power_w(A100, full) == A100.tdp_w
    assert temperature_c(A100, telemetry.idle_power_w) == telemetry.idle_temp_c
    assert temperature_c(A100, A100.tdp_w) == telemetry.full_load_temp_c


def test_a_step_breakdown_becomes_engine_tensor_memory_and_link_activity() -> None:
    act = activity_of_step(step_s=1.0, compute_s=0.5, memory_s=0.2, optimizer_s=0.05,
                           communication_s=0.3, communication_exposed_s=0.1,
                           precision="fp16", link_bytes_per_s=300e9, gpus=8)
    assert act.engine == pytest.approx(0.85)
    assert act.tensor == pytest.approx(0.5)
    assert act.dram == pytest.approx(0.2)
    assert act.nvlink_bytes_per_s == pytest.approx(90e9)
    fp64 = activity_of_step(1.0, 0.5, 0.2, 0.0, 0.3, 0.1, "fp64", 300e9, 1)
    assert fp64.tensor == 0.0 and fp64.nvlink_bytes_per_s == 0.0


def test_a_gpus_load_weighs_its_instances_by_their_slices() -> None:
    busy = Activity(engine=1.0, tensor=1.0, dram=1.0)
    one_slice = gpu_load([(busy, 1 / 7, 1 / 8)])
    assert one_slice.engine == pytest.approx(1 / 7) and one_slice.dram == pytest.approx(1 / 8)
    assert gpu_load([(busy, 1.0, 1.0)]).engine == 1.0
