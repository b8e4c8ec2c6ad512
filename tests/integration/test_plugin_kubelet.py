"""The device plugin against the node agent's kubelet emulation, over real gRPC sockets."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from factories import BALANCED, balanced, make_inventory

from deviceplugin.server import NodePlugin, socket_name
from deviceplugin.servicer import AllocateContext
from deviceplugin.source import InventoryFeed
from deviceplugin.strategy import Strategy, advertised_counts
from dgxnode.agent.checkpoint import Checkpoint
from dgxnode.agent.errors import DeviceAllocationError
from dgxnode.agent.kubelet import DeviceManager
from gpumodel.node import build_node_hardware
from kubeletapi.v1beta1 import api_pb2, api_pb2_grpc

TIMEOUT_S = 10.0


async def until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Node:
    feed: InventoryFeed
    plugin: NodePlugin
    kubelet: DeviceManager
    plugin_dir: Path


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths may not exceed 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dgx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node_factory(short_dir: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[Node] = []
    tmp_path = short_dir

    async def make(strategy: Strategy = "mixed", inventory: object = None) -> Node:
        plugin_dir = tmp_path / "device-plugins"
        kubelet = DeviceManager("dgx-0", plugin_dir, Checkpoint(tmp_path / "checkpoint.json"))
        await kubelet.start()
        feed = InventoryFeed(inventory or make_inventory())  # type: ignore[arg-type]
        plugin = NodePlugin(feed, plugin_dir, strategy,
                            AllocateContext("dgx-0", "unix:///run/dgxsim/dgx-0.sock",
                                            "/opt/dgxsim/bin/nvidia-smi"))
        node = Node(feed, plugin, kubelet, plugin_dir)
        started.append(node)
        await plugin.start()
        return node

    yield make
    for node in started:
        await node.plugin.stop()
        await node.kubelet.stop()


async def test_registration_request_has_the_kubelet_fields(node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: "nvidia.com/gpu" in node.kubelet.endpoints)
    request = node.kubelet.registrations[0]
    assert request.version == "v1beta1"
    assert request.resource_name == "nvidia.com/gpu"
    assert request.endpoint == socket_name("nvidia.com/gpu") == "nvidia-gpu.sock"
    assert (node.plugin_dir / request.endpoint).is_socket()
    assert request.options.get_preferred_allocation_available
    assert not request.options.pre_start_required
    # As the kubelet writes its checkpoint on a plugin's device update: before any pod.
    await until(lambda: node.kubelet.checkpoint.on_disk)
    assert node.kubelet.checkpoint.path.read_bytes() == b'{"version":"v2"}\n'


async def test_first_list_and_watch_message_lists_every_gpu_healthy(
        node_factory: Callable) -> None:
    node = await node_factory()
    hardware = build_node_hardware("dgx-0")
    async with grpc.aio.insecure_channel(
            f"unix://{node.plugin_dir / socket_name('nvidia.com/gpu')}") as channel:
        stream = api_pb2_grpc.DevicePluginStub(channel).ListAndWatch(api_pb2.Empty())
        first = await stream.read()
        stream.cancel()
    assert [d.ID for d in first.devices] == [g.uuid for g in hardware.gpus]
    assert {d.health for d in first.devices} == {"Healthy"}
    assert [d.topology.nodes[0].ID for d in first.devices] == [g.numa_node for g in hardware.gpus]


async def test_allocate_of_an_unknown_device_is_an_error(node_factory: Callable) -> None:
    node = await node_factory()
    async with grpc.aio.insecure_channel(
            f"unix://{node.plugin_dir / socket_name('nvidia.com/gpu')}") as channel:
        stub = api_pb2_grpc.DevicePluginStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Allocate(api_pb2.AllocateRequest(container_requests=[
                api_pb2.ContainerAllocateRequest(devices_ids=["GPU-does-not-exist"])]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GPU-does-not-exist" in (info.value.details() or "")


async def test_preferred_allocation_honours_must_include(node_factory: Callable) -> None:
    node = await node_factory()
    gpus = build_node_hardware("dgx-0").gpus
    async with grpc.aio.insecure_channel(
            f"unix://{node.plugin_dir / socket_name('nvidia.com/gpu')}") as channel:
        stub = api_pb2_grpc.DevicePluginStub(channel)
        reply = await stub.GetPreferredAllocation(api_pb2.PreferredAllocationRequest(
            container_requests=[api_pb2.ContainerPreferredAllocationRequest(
                available_deviceIDs=[g.uuid for g in gpus],
                must_include_deviceIDs=[gpus[5].uuid], allocation_size=2)]))
    chosen = list(reply.container_responses[0].deviceIDs)
    assert gpus[5].uuid in chosen
    # The partner shares GPU 5's PCIe switch: GPU 4.
    assert set(chosen) == {gpus[4].uuid, gpus[5].uuid}


async def test_preferred_allocation_passes_over_devices_the_plugin_no_longer_has(
        node_factory: Callable) -> None:
    """The kubelet's list can lag a MIG change: a GPU just carved into MIG devices is
    still offered. The plugin picks among the devices it has, as NVIDIA's plugin does."""
    node = await node_factory()
    gpus = build_node_hardware("dgx-0").gpus
    gone = "GPU-00000000-0000-0000-0000-000000000000"
    async with grpc.aio.insecure_channel(
            f"unix://{node.plugin_dir / socket_name('nvidia.com/gpu')}") as channel:
        stub = api_pb2_grpc.DevicePluginStub(channel)
        reply = await stub.GetPreferredAllocation(api_pb2.PreferredAllocationRequest(
            container_requests=[api_pb2.ContainerPreferredAllocationRequest(
                available_deviceIDs=[gone, gpus[2].uuid, gpus[3].uuid],
                allocation_size=1)]))
        chosen = list(reply.container_responses[0].deviceIDs)
        assert len(chosen) == 1 and chosen[0] in {gpus[2].uuid, gpus[3].uuid}
        with pytest.raises(grpc.aio.AioRpcError, match="unknown device"):
            await stub.Allocate(api_pb2.AllocateRequest(container_requests=[
                api_pb2.ContainerAllocateRequest(devices_ids=[gone])]))


async def test_two_gpus_share_a_pcie_switch_and_env_names_them(node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    gpus = {g.uuid: g for g in build_node_hardware("dgx-0").gpus}
    first = await node.kubelet.allocate("pod-a", "main", "nvidia.com/gpu", 2)
    second = await node.kubelet.allocate("pod-b", "main", "nvidia.com/gpu", 2)
    for alloc in (first, second):
        assert len({gpus[d].pcie_switch for d in alloc.device_ids}) == 1
        assert alloc.envs["NVIDIA_VISIBLE_DEVICES"] == ",".join(alloc.device_ids)
        assert alloc.envs["DGXSIM_NODE"] == "dgx-0"
        assert alloc.cdi_devices == tuple(f"nvidia.com/gpu={d}" for d in alloc.device_ids)
        assert ("/usr/bin/nvidia-smi", "/opt/dgxsim/bin/nvidia-smi") in alloc.mounts
    assert not set(first.device_ids) & set(second.device_ids)
    again = await node.kubelet.allocate("pod-a", "main", "nvidia.com/gpu", 2)
    assert again == first, "a container keeps its devices"


async def test_mig_change_reaches_the_kubelet(node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    await node.feed.publish(balanced(generation=2))
    await until(lambda: node.kubelet.allocatable() == {
        "nvidia.com/gpu": 0, "nvidia.com/mig-1g.5gb": 16, "nvidia.com/mig-2g.10gb": 8,
        "nvidia.com/mig-3g.20gb": 8})


async def test_mig_devices_pack_onto_partly_used_gpus(node_factory: Callable) -> None:
    node = await node_factory(inventory=balanced(gpus=[0, 1]))
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/mig-1g.5gb") == 4)
    first = await node.kubelet.allocate("p1", "c", "nvidia.com/mig-1g.5gb", 1)
    second = await node.kubelet.allocate("p2", "c", "nvidia.com/mig-1g.5gb", 1)
    inventory = node.feed.snapshot()
    gpu_of = {d.id: d.gpu_index for d in inventory.devices}
    assert gpu_of[first.device_ids[0]] == gpu_of[second.device_ids[0]]


async def test_health_flips_both_ways(node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    sick = build_node_hardware("dgx-0").gpus[3].uuid
    await node.feed.publish(make_inventory(generation=2, unhealthy=[sick]))
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 7)
    assert node.kubelet.capacity()["nvidia.com/gpu"] == 8
    assert sick not in node.kubelet.free_devices("nvidia.com/gpu")
    await node.feed.publish(make_inventory(generation=3))
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)


async def test_plugin_registers_again_when_kubelet_socket_is_recreated(
        node_factory: Callable, short_dir: Path) -> None:
    node = await node_factory()
    await until(lambda: "nvidia.com/gpu" in node.kubelet.endpoints)
    await node.kubelet.stop()
    # A kubelet restart takes a while; the plugin sees its socket go.
    await asyncio.sleep(0.3)
    restarted = DeviceManager("dgx-0", node.plugin_dir,
                              Checkpoint(short_dir / "checkpoint.json"))
    await restarted.start()
    try:
        await until(lambda: restarted.allocatable().get("nvidia.com/gpu") == 8)
        assert restarted.registrations[0].resource_name == "nvidia.com/gpu"
    finally:
        await restarted.stop()


async def test_a_kubelet_restart_that_clears_the_directory_registers_each_resource_once(
        node_factory: Callable, short_dir: Path) -> None:
    """A restarting kubelet removes every socket in its directory, then creates its own:
    the plugin sees its socket go and the kubelet's come back, and registers once."""
    node = await node_factory(inventory=balanced())
    await until(lambda: len(node.kubelet.endpoints) == len(node.plugin.servers))
    await node.kubelet.stop()
    for entry in node.plugin_dir.iterdir():
        entry.unlink()
    restarted = DeviceManager("dgx-0", node.plugin_dir,
                              Checkpoint(short_dir / "checkpoint.json"))
    await restarted.start()
    try:
        await until(lambda: set(restarted.endpoints) == set(node.plugin.servers))
        await asyncio.sleep(0.5)  # any second registration would have arrived by now
        names = [r.resource_name for r in restarted.registrations]
        assert sorted(names) == sorted(node.plugin.servers), names
    finally:
        await restarted.stop()


async def test_plugin_restarts_its_server_when_its_socket_disappears(
        node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: len(node.kubelet.registrations) == 1)
    (node.plugin_dir / socket_name("nvidia.com/gpu")).unlink()
    await until(lambda: len(node.kubelet.registrations) == 2)
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    alloc = await node.kubelet.allocate("pod-x", "main", "nvidia.com/gpu", 1)
    assert len(alloc.device_ids) == 1


async def test_single_strategy_refuses_two_profiles(node_factory: Callable) -> None:
    node = await node_factory(strategy="single", inventory=balanced())
    assert node.plugin.last_error is not None
    assert "more than one MIG device type" in node.plugin.last_error
    assert node.kubelet.endpoints == {}
    assert advertised_counts(balanced(), "single") == {}
    assert advertised_counts(balanced(), "mixed") == {
        "nvidia.com/mig-1g.5gb": 16, "nvidia.com/mig-2g.10gb": 8, "nvidia.com/mig-3g.20gb": 8}


async def test_single_strategy_advertises_one_profile_as_gpu(node_factory: Callable) -> None:
    seven = [("1g.5gb", s) for s in range(7)]
    node = await node_factory(strategy="single",
                              inventory=make_inventory(layout=dict.fromkeys(range(8), seven)))
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 56)


async def test_checkpoint_survives_a_kubelet_restart(node_factory: Callable,
                                                     short_dir: Path) -> None:
    node = await node_factory()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    held = await node.kubelet.allocate("pod-a", "main", "nvidia.com/gpu", 4)
    reloaded = Checkpoint(short_dir / "checkpoint.json")
    assert reloaded.held("nvidia.com/gpu") == set(held.device_ids)


async def test_a_plugin_restart_while_devices_are_held_gives_none_out_twice(
        node_factory: Callable) -> None:
    node = await node_factory()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    held = set((await node.kubelet.allocate("pod-a", "main", "nvidia.com/gpu", 4)).device_ids)
    await node.plugin.stop()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 0)
    restarted = NodePlugin(node.feed, node.plugin_dir, "mixed", node.plugin.context)
    node.plugin = restarted  # stopped by the fixture
    await restarted.start()
    await until(lambda: node.kubelet.allocatable().get("nvidia.com/gpu") == 8)
    assert len(node.kubelet.registrations) == 2
    assert set(node.kubelet.free_devices("nvidia.com/gpu")).isdisjoint(held)
    with pytest.raises(DeviceAllocationError):
        await node.kubelet.allocate("pod-b", "main", "nvidia.com/gpu", 5)
    others = set((await node.kubelet.allocate("pod-b", "main", "nvidia.com/gpu", 4)).device_ids)
    assert others.isdisjoint(held) and len(others | held) == 8


def test_a_truncated_checkpoint_is_set_aside_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text('{"version": "v1", "pods": {"a": ')
    checkpoint = Checkpoint(path)
    assert checkpoint.pods() == []
    assert checkpoint.damaged is not None and "set aside as checkpoint.json.damaged" in \
        checkpoint.damaged
    assert (tmp_path / "checkpoint.json.damaged").read_text().startswith('{"version"')


def test_balanced_fixture_is_a_valid_layout() -> None:
    from gpumodel.mig import profile_table

    table = profile_table("a100-40gb")
    used: set[int] = set()
    for name, start in BALANCED:
        spec = table.get(name)
        assert start in spec.starts, f"{name} cannot start at slice {start}"
        slices = set(range(start, start + spec.memory_slices))
        assert not used & slices
        used |= slices
