"""The ResourceSlices a DRA node publishes: NVIDIA's names and types, within the API's limits."""

from __future__ import annotations

from dgxnode.node import SimNode
from gpumodel.dra import (
    device_classes,
    limit_problems,
    mig_device_name,
    parse_device_name,
    slice_specs,
)
from gpumodel.mig import profile_table
from gpumodel.vocabulary import DRA_DRIVER


def _devices(specs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [d for s in specs for d in (s.get("devices") or [])]  # type: ignore[attr-defined]


def test_static_mode_publishes_whole_gpus_with_nvidias_attributes() -> None:
    node = SimNode.create("dgx-0")
    specs = slice_specs(node.inventory(), "static")
    assert limit_problems(specs) == []
    assert len(specs) == 1 and specs[0]["driver"] == DRA_DRIVER
    assert specs[0]["nodeName"] == "dgx-0"
    devices = _devices(specs)
    assert [d["name"] for d in devices] == [f"gpu-{i}" for i in range(8)]
    attrs = devices[0]["attributes"]
    assert attrs["type"] == {"string": "gpu"}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert attrs["productName"] == {"string": "NVIDIA A100-SXM4-40GB"}
    assert attrs["architecture"] == {"string": "Ampere"}
    assert attrs["cudaComputeCapability"] == {"version": "8.0.0"}
    assert attrs["driverVersion"] == {"version": "535.183.6"}
    assert attrs["cudaDriverVersion"] == {"version": "12.2.0"}
    assert attrs["resource.kubernetes.io/pciBusID"]["string"].count(":") == 2
    assert devices[0]["capacity"] == {"memory": {"value": str(40960 * 2**20)}}


def test_static_mode_publishes_the_mig_devices_that_exist() -> None:
    node = SimNode.create("dgx-0")
    node.set_mig_mode(0, True)
    node.reset_gpu(0)
    node.create_gi(0, "3g.20gb", 4, default_ci=True)
    node.create_gi(0, "1g.5gb", 0, default_ci=True)
    devices = _devices(slice_specs(node.inventory(), "static"))
    names = [d["name"] for d in devices]
    assert names[:2] == ["gpu-0-mig-1g5gb-19-0", "gpu-0-mig-3g20gb-9-4"]
    assert "gpu-0" not in names and "gpu-1" in names
    mig = devices[1]
    assert mig["attributes"]["profile"] == {"string": "3g.20gb"}
    assert mig["attributes"]["uuid"]["string"].startswith("MIG-")
    assert mig["attributes"]["parentUUID"]["string"].startswith("GPU-")
    assert mig["capacity"]["multiprocessors"] == {"value": "42"}
    assert mig["capacity"]["memory"] == {"value": str(20096 * 2**20)}
    assert {k for k in mig["capacity"] if k.startswith("memorySlice")} == {
        "memorySlice4", "memorySlice5", "memorySlice6", "memorySlice7"}


def test_dynamic_mode_counters_in_their_own_slice_and_one_slice_per_gpu() -> None:
    node = SimNode.create("dgx-0")
    specs = slice_specs(node.inventory(), "dynamic")
    assert limit_problems(specs) == []
    assert len(specs) == 9
    assert "devices" not in specs[0]
    sets = specs[0]["sharedCounters"]
    assert [s["name"] for s in sets] == [f"gpu-{i}-counter-set" for i in range(8)]
    assert sets[0]["counters"]["memory-slice-7"] == {"value": "1"}
    assert sets[0]["counters"]["multiprocessors"] == {"value": "98"}
    gpu0 = specs[1]["devices"]
    assert len(gpu0) == 1 + 7 + 7 + 4 + 3 + 2 + 1 + 1
    assert gpu0[0]["name"] == "gpu-0"
    slot = next(d for d in gpu0 if d["name"] == "gpu-0-mig-1g5gb-19-6")
    assert "uuid" not in slot["attributes"]
    consumed = slot["consumesCounters"][0]
    assert consumed["counterSet"] == "gpu-0-counter-set"
    assert {k for k in consumed["counters"] if k.startswith("memory-slice")} == {
        "memory-slice-6"}
    assert any(d["name"] == "gpu-0-mig-1g5gb-me-20-3" for d in gpu0)


def test_dynamic_mode_fits_the_api_limits_on_the_640gb_system() -> None:
    node = SimNode.create("dgx-0", "dgx-a100-640gb")
    specs = slice_specs(node.inventory(), "dynamic")
    assert limit_problems(specs) == []
    names = {d["name"] for d in _devices(specs)}
    assert "gpu-3-mig-1g10gb-19-2" in names and "gpu-3-mig-7g80gb-0-0" in names


def test_device_names_parse_back() -> None:
    table = profile_table("a100-40gb")
    ref = parse_device_name(mig_device_name(5, table.get("1g.5gb+me"), 3))
    assert ref is not None and (ref.gpu, ref.profile_id, ref.start) == (5, 20, 3)
    whole = parse_device_name("gpu-7")
    assert whole is not None and whole.gpu == 7 and not whole.is_mig
    assert parse_device_name("something-else") is None


def test_device_classes_are_nvidias() -> None:
    classes = {c["metadata"]["name"]: c for c in device_classes()}
    assert set(classes) == {"gpu.nvidia.com", "mig.nvidia.com"}
    assert classes["mig.nvidia.com"]["spec"]["selectors"][0]["cel"]["expression"] == (
        "device.driver == 'gpu.nvidia.com' && "
        "device.attributes['gpu.nvidia.com'].type == 'mig'")


def test_an_unhealthy_device_carries_nvidias_xid_taint_and_loses_it_when_healthy() -> None:
    node = SimNode.create("dgx-0")
    gpu3 = str(node.hardware.gpu(3).uuid)
    node.set_health(gpu3, healthy=False, xid=79)
    static = {d["name"]: d for d in _devices(slice_specs(node.inventory(), "static"))}
    assert static["gpu-3"]["taints"] == [
        {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}]
    assert "taints" not in static["gpu-2"]
    dynamic = [d for d in _devices(slice_specs(node.inventory(), "dynamic"))
               if d["name"].startswith("gpu-3")]
    assert dynamic and all(d["taints"][0]["value"] == "79" for d in dynamic)
    node.set_health(gpu3, healthy=True)
    assert not any("taints" in d for d in _devices(slice_specs(node.inventory(), "dynamic")))


def test_an_unhealthy_mig_device_taints_its_slot_only() -> None:
    node = SimNode.create("dgx-0")
    node.set_mig_mode(1, True)
    node.reset_gpu(1)
    node.create_gi(1, "2g.10gb", 2, default_ci=True)
    node.set_health(str(node.mig_devices(1)[0].uuid), healthy=False, xid=48)
    tainted = [d["name"] for d in _devices(slice_specs(node.inventory(), "dynamic"))
               if d.get("taints")]
    assert tainted == ["gpu-1-mig-2g10gb-14-2"]
    static = [d for d in _devices(slice_specs(node.inventory(), "static")) if d.get("taints")]
    assert [d["taints"][0]["value"] for d in static] == ["48"]
