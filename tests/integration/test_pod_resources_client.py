"""The kubelet's PodResources API read over a real gRPC socket, and the node's record of it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pod_resources_server import PodResourcesServer, pod

from deviceplugin.podresources import PodResourcesClient, PodResourcesError
from dgxnode.endpoint import NodeEndpoint
from dgxnode.holdings import KubeletHoldings
from dgxnode.node import SimNode


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths may not exceed 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dgp", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(short_dir: Path) -> Iterator[PodResourcesServer]:
    server = PodResourcesServer(short_dir / "pod-resources" / "kubelet.sock").start()
    yield server
    server.stop()


async def test_list_gives_the_gpu_devices_of_every_container(
        kubelet: PodResourcesServer) -> None:
    kubelet.set_pods(
        pod("team", "infer-0", "main", {"nvidia.com/mig-1g.5gb": ["MIG-a"],
                                        "example.com/fpga": ["fpga-0"]}),
        pod("team", "train-0", "main", {"nvidia.com/gpu": ["GPU-b", "GPU-c"]}),
        pod("kube-system", "dns", "coredns", {}))
    assigned = await PodResourcesClient(kubelet.socket).assigned()
    assert assigned == {"MIG-a": "team/infer-0/main", "GPU-b": "team/train-0/main",
                        "GPU-c": "team/train-0/main"}


async def test_no_socket_is_a_connection_error_naming_the_path(short_dir: Path) -> None:
    client = PodResourcesClient(short_dir / "absent.sock")
    with pytest.raises(ConnectionError) as err:
        await client.assigned()
    assert isinstance(err.value, PodResourcesError) and str(client.socket) in str(err.value)


async def test_a_socket_nobody_serves_is_a_connection_error(short_dir: Path) -> None:
    server = PodResourcesServer(short_dir / "gone.sock").start()
    server.stop()
    server.socket.touch()  # a stale file where the socket was
    with pytest.raises(PodResourcesError, match="UNAVAILABLE"):
        await PodResourcesClient(server.socket).assigned()


async def test_the_node_records_what_the_kubelet_says_and_keeps_it_while_unseen(
        kubelet: PodResourcesServer, caplog: pytest.LogCaptureFixture) -> None:
    node = SimNode.create("n")
    node.apply("all-1g.5gb")
    device = node.mig_devices(0)[0].uuid
    holdings = KubeletHoldings(node, PodResourcesClient(kubelet.socket))
    kubelet.set_pods(pod("team", "infer-0", "main", {"nvidia.com/mig-1g.5gb": [device]}))
    assert await holdings.refresh()
    assert node.state.allocations == {device: "team/infer-0/main"}

    kubelet.stop()
    caplog.set_level(logging.WARNING, logger="dgxnode.holdings")
    assert not await holdings.refresh()
    assert not await holdings.refresh()
    unseen = [r for r in caplog.records if "cannot see the kubelet's pod resources" in
              r.getMessage()]
    assert len(unseen) == 1, "said once, not on every attempt"
    assert node.state.allocations == {device: "team/infer-0/main"}, \
        "a kubelet that cannot be asked has released nothing"

    kubelet.set_pods()
    kubelet.start()
    assert await holdings.refresh()
    assert node.state.allocations == {} and kubelet.lists == 2


async def test_a_container_holds_what_the_kubelet_gave_its_pod_whatever_it_calls_itself(
        short_dir: Path) -> None:
    node = SimNode.create("n")
    node.apply("all-1g.5gb")
    device = node.mig_devices(0)[0].uuid
    node.hold_for_kubelet({device: "team/infer-0/cuda"})
    endpoint = NodeEndpoint({node.name: node}, None)
    await endpoint.serve(short_dir / "node.sock")
    url = f"http://node/v1/nodes/{node.name}/containers"
    body = {"owner": "default/infer-0/main", "devices": [device]}  # no downward API env
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(short_dir / "node.sock"))) as http:
            async with http.post(url, json=body) as resp:
                assert resp.status == 200, await resp.text()
            assert node.state.allocations == {device: "team/infer-0/cuda"}
            async with http.delete(url, json=body) as resp:
                assert (await resp.json())["released"] == []
            other = node.mig_devices(1)[0].uuid
            node.allocate(other, "ops/debug/shell")
            async with http.post(url, json={**body, "devices": [other]}) as resp:
                assert resp.status == 409, "a device the node gave to someone else is refused"
    finally:
        await endpoint.close()
    assert node.state.allocations[device] == "team/infer-0/cuda"
