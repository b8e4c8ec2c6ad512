"""Preparing claims on a simulated node: the slot the scheduler chose, made real and undone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from draplugin.checkpoint import ClaimCheckpoint
from draplugin.errors import PrepareError
from draplugin.preparing import DeviceState

from dgxnode.node import SimNode
from dgxsim.drahost import SimNodeHost


def claim(uid: str, *devices: str, pool: str = "dgx-0") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": "ns", "name": f"claim-{uid}"},
            "status": {"allocation": {"devices": {"results": [
                {"request": "mig", "driver": "gpu.nvidia.com", "pool": pool, "device": d}
                for d in devices]}}}}


def state(tmp_path: Path, mode: str = "dynamic") -> tuple[SimNode, DeviceState]:
    node = SimNode.create("dgx-0")
    return node, DeviceState("dgx-0", mode, SimNodeHost(node),  # type: ignore[arg-type]
                             ClaimCheckpoint(tmp_path / "dra.json"))


def layout(node: SimNode, gpu: int) -> list[tuple[str, int]]:
    return sorted((d.profile, d.gi.start) for d in node.mig_devices(gpu))


def test_dynamic_prepare_creates_the_chosen_slot_and_unprepare_makes_the_gpu_whole(
        tmp_path: Path) -> None:
    node, dra = state(tmp_path)
    prepared = asyncio.run(dra.prepare(claim("a", "gpu-2-mig-1g5gb-19-3")))
    assert node.state.gpu(2).mig_enabled
    assert layout(node, 2) == [("1g.5gb", 3)]
    (device,) = prepared.devices
    assert device.uuid.startswith("MIG-") and device.created
    assert device.cdi_device_ids == (f"nvidia.com/gpu={device.uuid}",)
    assert device.request_names == ("mig",)
    again = asyncio.run(dra.prepare(claim("a", "gpu-2-mig-1g5gb-19-3")))
    assert again == prepared and dra.prepares == 1 and layout(node, 2) == [("1g.5gb", 3)]
    asyncio.run(dra.unprepare("a"))
    assert layout(node, 2) == [] and not node.state.gpu(2).mig_enabled
    asyncio.run(dra.unprepare("a"))  # unpreparing twice is no error


def test_a_restarted_plugin_finds_its_prepared_claims(tmp_path: Path) -> None:
    node, dra = state(tmp_path)
    first = asyncio.run(dra.prepare(claim("a", "gpu-0-mig-3g20gb-9-4")))
    restarted = DeviceState("dgx-0", "dynamic", SimNodeHost(node),
                            ClaimCheckpoint(tmp_path / "dra.json"))
    assert asyncio.run(restarted.prepare(claim("a", "gpu-0-mig-3g20gb-9-4"))) == first
    assert restarted.prepares == 0 and layout(node, 0) == [("3g.20gb", 4)]


def test_a_claim_that_fails_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    node, dra = state(tmp_path)
    asyncio.run(dra.prepare(claim("a", "gpu-0-mig-4g20gb-5-0")))
    with pytest.raises(PrepareError, match="GPU 0"):
        asyncio.run(dra.prepare(claim("b", "gpu-1-mig-1g5gb-19-0", "gpu-0-mig-3g20gb-9-0")))
    assert layout(node, 1) == [] and not node.state.gpu(1).mig_enabled
    assert layout(node, 0) == [("4g.20gb", 0)]
    assert dra.checkpoint.get("b") is None


def test_a_whole_gpu_and_results_of_other_pools_or_drivers(tmp_path: Path) -> None:
    node, dra = state(tmp_path)
    other = claim("c", "gpu-1")
    other["status"]["allocation"]["devices"]["results"].append(
        {"request": "x", "driver": "other.example.com", "pool": "dgx-0", "device": "gpu-5"})
    prepared = asyncio.run(dra.prepare(other))
    assert [d.uuid for d in prepared.devices] == [str(node.hardware.gpu(1).uuid)]
    with pytest.raises(PrepareError, match="not allocated"):
        asyncio.run(dra.prepare({"metadata": {"uid": "d", "namespace": "ns", "name": "d"},
                                 "status": {}}))


def test_static_prepare_finds_the_existing_device(tmp_path: Path) -> None:
    node, dra = state(tmp_path, "static")
    node.set_mig_mode(0, True)
    node.reset_gpu(0)
    node.create_gi(0, "2g.10gb", 2, default_ci=True)
    prepared = asyncio.run(dra.prepare(claim("s", "gpu-0-mig-2g10gb-14-2")))
    assert prepared.devices[0].uuid == str(node.mig_devices(0)[0].uuid)
    assert not prepared.devices[0].created
    asyncio.run(dra.unprepare("s"))
    assert layout(node, 0) == [("2g.10gb", 2)], "static devices are not destroyed"
    with pytest.raises(PrepareError, match="no longer exists"):
        asyncio.run(dra.prepare(claim("t", "gpu-0-mig-1g5gb-19-0")))


def test_dynamic_start_clears_mig_devices_no_claim_holds(tmp_path: Path) -> None:
    node, dra = state(tmp_path)
    asyncio.run(dra.prepare(claim("a", "gpu-0-mig-1g5gb-19-6")))
    node.create_gi(0, "1g.5gb", 0, default_ci=True)
    node.set_mig_mode(4, True)
    node.reset_gpu(4)
    node.create_gi(4, "2g.10gb", 0, default_ci=True)
    node.allocate(str(node.mig_devices(4)[0].uuid), "ns/pod/ctr")
    left = asyncio.run(dra.clear_strangers())
    assert layout(node, 0) == [("1g.5gb", 6)], "the claim's device stays, the stranger goes"
    assert layout(node, 4) == [("2g.10gb", 0)] and left == [
        f"{node.mig_devices(4)[0].uuid} (held by ns/pod/ctr)"]
