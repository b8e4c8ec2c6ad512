"""NCCL's bus-bandwidth definitions and the fabric figures, checked by hand."""

from __future__ import annotations

import pytest

from gpumodel.perf.calibration import constants
from gpumodel.perf.collectives import bus_factor, collective_time, fabric
from gpumodel.perf.model import predict_job

GIB = 2**30


@pytest.mark.parametrize(("kind", "ranks", "factor"), [
    ("allreduce", 8, 2 * 7 / 8), ("allreduce", 2, 1.0), ("allgather", 8, 7 / 8),
    ("reducescatter", 4, 3 / 4), ("alltoall", 16, 15 / 16), ("allreduce", 1, 0.0)])
def test_bus_factor(kind: str, ranks: int, factor: float) -> None:
    assert bus_factor(kind, ranks) == pytest.approx(factor)  # type: ignore[arg-type]


def test_fabrics_come_from_the_specs_and_nccl_link_figures() -> None:
    c = constants()
    a100 = fabric("a100-40gb", c)
    assert a100.intra_name == "nvswitch"
    assert a100.intra_gb_per_s == pytest.approx(12 * 20.0)  # 12 NVLink3 links at NCCL's 20 GB/s
    assert a100.inter_gb_per_s == pytest.approx(25.0 * c.scalar("ib_efficiency"))
    v100 = fabric("v100-16gb", c)
    assert v100.intra_name == "hybrid-cube-mesh"
    assert v100.intra_gb_per_s == pytest.approx(6 * 20.0)
    # DGX-1: four 100 Gb/s NICs for eight GPUs
    assert v100.inter_gb_per_s == pytest.approx(4 * 12.5 / 8 * c.scalar("ib_efficiency"))
    assert fabric("t4", c).intra_hop == "pcie"


def test_ring_allreduce_time_by_hand() -> None:
    c = constants()
    size = 1 * GIB
    t = collective_time("allreduce", size, 8, 1, "a100-40gb", c)
    alpha = (8.4 + 2 * 7 * 3.4) * 1e-6
    assert t.time_s == pytest.approx(alpha + 2 * 7 / 8 * size / 240e9)


def test_hierarchical_allreduce_by_hand() -> None:
    c = constants()
    size, g, n = 1 * GIB, 8, 4
    nic = fabric("a100-40gb", c).inter_gb_per_s * 1e9
    intra = (8.4 + 7 * 3.4) * 1e-6 + 7 / 8 * size / 240e9
    inter = (8.4 + 2 * 3 * 14.0) * 1e-6 + 2 * 3 / 4 * (size / g) / nic
    t = collective_time("allreduce", size, g, n, "a100-40gb", c)
    assert t.time_s == pytest.approx(2 * intra + inter)


def test_large_message_busbw_approaches_link_bandwidth() -> None:
    intra = predict_job("allreduce", "a100-40gb", gpus_per_node=8, precision="fp32")
    assert intra.busbw_gb_per_s == pytest.approx(240.0, rel=0.01)
    ib = predict_job("ib-link", "a100-40gb", nodes=2, precision="fp32")
    assert ib.busbw_gb_per_s == pytest.approx(25.0 * constants().scalar("ib_efficiency"),
                                              rel=0.01)


def test_small_messages_are_latency_bound() -> None:
    small = predict_job("allreduce", "a100-40gb", gpus_per_node=8, precision="fp32",
                        params={"bytes": 8})
    assert small.step_time_s == pytest.approx((8.4 + 14 * 3.4) * 1e-6, rel=0.01)
    assert small.busbw_gb_per_s is not None and small.busbw_gb_per_s < 0.01


def test_more_nodes_slow_an_allreduce_down_but_only_to_the_nic() -> None:
    one = predict_job("allreduce", "a100-40gb", gpus_per_node=8, precision="fp32")
    many = predict_job("allreduce", "a100-40gb", gpus_per_node=8, nodes=16, precision="fp32")
    assert many.step_time_s > one.step_time_s
    # per-GPU rails: the cross-node stage carries only 1/8 of the buffer per NIC
    assert many.busbw_gb_per_s is not None and many.busbw_gb_per_s > 100


@pytest.mark.parametrize("kind", ["allgather", "reducescatter", "alltoall"])
def test_other_collectives_predict(kind: str) -> None:
    one_node = predict_job(kind, "a100-40gb", gpus_per_node=8, precision="fp16")
    two_nodes = predict_job(kind, "a100-40gb", gpus_per_node=8, nodes=2, precision="fp16")
    assert 0 < one_node.step_time_s < two_nodes.step_time_s
