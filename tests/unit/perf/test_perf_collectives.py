"""NCCL's bus-bandwidth definitions, its algorithm and protocol choice, and the fabric figures,
checked by hand."""

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


def test_ring_simple_allreduce_by_hand() -> None:
    c = constants()
    size = 1 * GIB  # large: NCCL runs Simple, its full-bandwidth protocol
    t = collective_time("allreduce", size, 8, 1, "a100-40gb", c)
    assert t.choice == "ring/simple"
    assert t.time_s == pytest.approx((8.4 + 2 * 7 * 3.4) * 1e-6 + 2 * 7 / 8 * size / 240e9)


def test_small_messages_take_the_low_latency_protocol() -> None:
    c = constants()
    t = collective_time("allreduce", 8, 8, 1, "a100-40gb", c)
    assert t.choice == "ring/ll"
    assert t.time_s == pytest.approx((6.6 + 14 * 0.6) * 1e-6, rel=0.01)


def test_across_nodes_the_ring_runs_at_the_nodes_nics() -> None:
    c = constants()
    size, g, n = 4 * GIB, 8, 2
    nics = 8 * fabric("a100-40gb", c).nic_gb_per_s  # eight rails, one per GPU
    t = collective_time("allreduce", size, g, n, "a100-40gb", c)
    # 30 steps round a 16-rank ring that crosses the network on 2 of its 16 links: 4 of them
    steps, net = 2 * 15, 4
    latency = (8.4 + (steps - net) * 3.4 + net * 14.0) * 1e-6
    assert t.choice == "ring/simple"
    assert t.time_s == pytest.approx(latency + 2 * 15 / 16 * size / (nics * 1e9))
    assert 185 < t.busbw_gb_per_s < 195  # DGX A100 clusters measure about 190 GB/s


def test_small_messages_across_many_nodes_take_the_tree() -> None:
    t = collective_time("allreduce", 1024, 8, 32, "a100-40gb", constants())
    assert t.choice == "tree/ll"
    assert t.time_s == pytest.approx((6.8 + 2 * (7 * 0.6 + 5 * 5.0)) * 1e-6, rel=0.01)
    assert t.time_s < 100e-6


def test_large_message_busbw_approaches_link_bandwidth() -> None:
    intra = predict_job("allreduce", "a100-40gb", gpus_per_node=8, precision="fp32")
    assert intra.busbw_gb_per_s == pytest.approx(240.0, rel=0.01)
    ib = predict_job("ib-link", "a100-40gb", nodes=2, precision="fp32")
    assert ib.busbw_gb_per_s == pytest.approx(25.0 * constants().scalar("ib_efficiency"),
                                              rel=0.01)


def test_more_nodes_slow_an_allreduce_down_but_only_to_the_nic() -> None:
    one = predict_job("allreduce", "a100-40gb", gpus_per_node=8, precision="fp32")
    many = predict_job("allreduce", "a100-40gb", gpus_per_node=8, nodes=16, precision="fp32")
    assert many.step_time_s > one.step_time_s
    # eight rails per node: the ring stays near the NICs' 8 x 24 GB/s at 16 nodes
    assert many.busbw_gb_per_s is not None and many.busbw_gb_per_s > 170


@pytest.mark.parametrize("kind", ["allgather", "reducescatter", "alltoall"])
def test_other_collectives_predict(kind: str) -> None:
    one_node = predict_job(kind, "a100-40gb", gpus_per_node=8, precision="fp16")
    two_nodes = predict_job(kind, "a100-40gb", gpus_per_node=8, nodes=2, precision="fp16")
    assert 0 < one_node.step_time_s < two_nodes.step_time_s
