"""The kubelet API's generated code is in step with its .proto and matches the kubelet's wire."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeletapi.podresources.v1 import api_pb2 as podresources_pb2
from kubeletapi.v1beta1 import api_pb2

REPO_ROOT = Path(__file__).resolve().parents[3]
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "api_pb2_grpc.pyi")


@pytest.mark.parametrize("package", ["kubeletapi/v1beta1", "kubeletapi/podresources/v1"])
def test_generated_code_matches_the_proto(tmp_path: Path, package: str) -> None:
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "plugin",
         f"--python_out={tmp_path}", f"--mypy_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--mypy_grpc_out={tmp_path}",
         f"plugin/{package}/api.proto"],
        cwd=REPO_ROOT, check=True, capture_output=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    for name in GENERATED:
        committed = (REPO_ROOT / "plugin" / package / name).read_text()
        fresh = (tmp_path / package / name).read_text()
        assert committed == fresh, f"{package}/{name} is stale: run `make proto`"


def test_services_and_methods_have_the_kubelet_names() -> None:
    services = api_pb2.DESCRIPTOR.services_by_name
    assert api_pb2.DESCRIPTOR.package == "v1beta1"
    assert [m.name for m in services["Registration"].methods] == ["Register"]
    assert [m.name for m in services["DevicePlugin"].methods] == [
        "GetDevicePluginOptions", "ListAndWatch", "GetPreferredAllocation", "Allocate",
        "PreStartContainer"]
    assert services["DevicePlugin"].methods_by_name["ListAndWatch"].server_streaming


def _fields(message: str) -> dict[str, int]:
    return {f.name: f.number for f in api_pb2.DESCRIPTOR.message_types_by_name[message].fields}


def test_field_names_and_numbers_match_the_published_api() -> None:
    assert _fields("RegisterRequest") == {
        "version": 1, "endpoint": 2, "resource_name": 3, "options": 4}
    assert _fields("DevicePluginOptions") == {
        "pre_start_required": 1, "get_preferred_allocation_available": 2}
    assert _fields("Device") == {"ID": 1, "health": 2, "topology": 3}
    assert _fields("ContainerPreferredAllocationRequest") == {
        "available_deviceIDs": 1, "must_include_deviceIDs": 2, "allocation_size": 3}
    assert _fields("ContainerAllocateResponse") == {
        "envs": 1, "mounts": 2, "devices": 3, "annotations": 4, "cdi_devices": 5}
    assert _fields("Mount") == {"container_path": 1, "host_path": 2, "read_only": 3}
    assert _fields("DeviceSpec") == {"container_path": 1, "host_path": 2, "permissions": 3}


def test_a_message_round_trips_through_the_wire_format() -> None:
    request = api_pb2.RegisterRequest(
        version="v1beta1", endpoint="nvidia-gpu.sock", resource_name="nvidia.com/gpu",
        options=api_pb2.DevicePluginOptions(get_preferred_allocation_available=True))
    # Field 3 (resource_name), wire type 2 (length-delimited): tag byte 0x1a.
    assert b"\x1a\x0envidia.com/gpu" in request.SerializeToString()
    assert api_pb2.RegisterRequest.FromString(request.SerializeToString()) == request


def test_pod_resources_has_the_kubelets_wire_names_and_numbers() -> None:
    descriptor = podresources_pb2.DESCRIPTOR
    assert descriptor.package == "v1"
    lister = descriptor.services_by_name["PodResourcesLister"]
    assert [m.name for m in lister.methods] == ["List", "GetAllocatableResources", "Get"]

    def fields(message: str) -> dict[str, int]:
        return {f.name: f.number for f in descriptor.message_types_by_name[message].fields}

    assert fields("ListPodResourcesResponse") == {"pod_resources": 1}
    assert fields("PodResources") == {"name": 1, "namespace": 2, "containers": 3}
    assert fields("ContainerResources") == {
        "name": 1, "devices": 2, "cpu_ids": 3, "memory": 4, "dynamic_resources": 5}
    assert fields("ContainerDevices") == {"resource_name": 1, "device_ids": 2, "topology": 3}
