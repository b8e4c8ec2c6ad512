"""The DGX A100 node model: identity, NVLink/PCIe/NUMA topology, deterministic IDs."""

from __future__ import annotations

import re

from gpumodel.ids import gpu_uuid, mig_uuid
from gpumodel.node import build_node_hardware
from gpumodel.systems import system_catalog
from gpumodel.vocabulary import DEFAULT_NODE_KIND, NODE_KINDS

UUID = re.compile(r"^(GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_node_kinds_are_the_catalog_dgx_a100_systems() -> None:
    # The CLI offers NODE_KINDS without loading the catalog; they must stay the same set.
    assert set(NODE_KINDS) == {k for k in system_catalog() if k.startswith("dgx-a100")}
    assert DEFAULT_NODE_KIND in NODE_KINDS
    for kind in NODE_KINDS:
        assert len(build_node_hardware("n", kind).gpus) == 8


def test_dgx_a100_320gb() -> None:
    hw = build_node_hardware("node-a")
    assert len(hw.gpus) == 8 and len(hw.nvswitches) == 6
    assert {g.product_name for g in hw.gpus} == {"NVIDIA A100-SXM4-40GB"}
    assert [g.numa_node for g in hw.gpus] == [3, 3, 1, 1, 7, 7, 5, 5]
    assert [g.pcie_switch for g in hw.gpus] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert {hw.link(f"GPU{a}", f"GPU{b}") for a in range(8) for b in range(8) if a != b} \
        == {"NV12"}
    assert hw.link("GPU0", "mlx5_0") == "PXB" and hw.link("GPU0", "mlx5_2") == "SYS"
    assert hw.link("GPU4", "mlx5_6") == "PXB"
    assert hw.cpu_affinity(3) == "48-63,176-191"
    assert [n.name for n in hw.rdma_nics()] == [f"mlx5_{i}" for i in range(10)]
    assert hw.storage.cache.capacity_tb > 15 and hw.security.self_encrypting_drives


def test_640gb_variant() -> None:
    hw = build_node_hardware("node-b", "dgx-a100-640gb")
    assert {g.memory_mib for g in hw.gpus} == {81920} and hw.memory_gib == 2048


def test_ids_are_deterministic_and_distinct() -> None:
    assert gpu_uuid("n", 0) == gpu_uuid("n", 0)
    ids = {gpu_uuid(node, i) for node in ("n1", "n2") for i in range(8)}
    assert len(ids) == 16 and all(UUID.match(i) for i in ids)
    mig = mig_uuid("n1", 0, 4, 4)
    assert UUID.match(mig) and mig[18] == "5"  # a version-5 UUID, like the driver's
    assert mig != mig_uuid("n1", 0, 0, 4) != mig_uuid("n1", 0, 4, 4, 0, 1)
    assert build_node_hardware("x").gpus[3].uuid == gpu_uuid("x", 3)


def test_dgx_a100_nodes_sit_in_scalable_units_of_twenty() -> None:
    from gpumodel.labels import leaf_switch
    from gpumodel.systems import system

    per_leaf = system("dgx-a100-320gb").nodes_per_leaf
    assert per_leaf == 20 and system("dgx-a100-640gb").nodes_per_leaf == 20
    assert [leaf_switch(per_leaf, i) for i in (0, 19, 20, 139)] == ["su-0", "su-0", "su-1",
                                                                     "su-6"]
    assert leaf_switch(system("dgx-1-v100-32gb").nodes_per_leaf, 5) is None
