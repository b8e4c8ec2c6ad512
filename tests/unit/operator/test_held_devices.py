"""Who holds which device, as the operator and ``dgxsim show`` read it: the owners a
node's inventory names (under a real kubelet) and the devices kubelet-less pods record
(``dgxsim.io/devices``)."""

from __future__ import annotations

from typing import Any

import pytest

from dgxnode.node import SimNode
from dgxsim.commands.show import gpu_blocks
from gpumodel.inventory import devices_record, held_devices, parse_devices_record
from gpumodel.vocabulary import DEVICES_ANNOTATION, INVENTORY_ANNOTATION
from migoperator.planning.views import node_view

JSON = dict[str, Any]


def _pod(name: str, record: str | None, phase: str = "Running",
         asks: str = "nvidia.com/mig-1g.5gb") -> JSON:
    annotations = {} if record is None else {DEVICES_ANNOTATION: record}
    return {"metadata": {"namespace": "team", "name": name, "annotations": annotations},
            "spec": {"nodeName": "n", "containers": [
                {"name": "main", "resources": {"limits": {asks: "1"}}}]},
            "status": {"phase": phase}}


def _mig_node() -> SimNode:
    node = SimNode.create("n")
    node.apply("all-1g.5gb")
    return node


def test_the_record_reads_back_as_written() -> None:
    devices = {"nvidia.com/gpu": ("GPU-a", "GPU-b"), "nvidia.com/mig-1g.5gb": ("MIG-c",)}
    assert parse_devices_record(devices_record(devices)) == devices
    assert devices_record({}) == "none" and parse_devices_record("none") == {}


@pytest.mark.parametrize("text", ["GPU-a", "nvidia.com/gpu GPU-a", ": GPU-a"])
def test_a_malformed_record_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="resource: device"):
        parse_devices_record(text)


def test_holders_come_from_running_pods_and_from_inventory_owners() -> None:
    node = _mig_node()
    first, second, third = (d.id for d in node.inventory().usable_devices()[:3])
    node.allocate(third, "kind/holder/main")  # as a real kubelet's node names it
    inventory = node.inventory()
    pods = [_pod("runs", devices_record({"nvidia.com/mig-1g.5gb": (first,)})),
            _pod("done", devices_record({"nvidia.com/mig-1g.5gb": (second,)}), "Succeeded"),
            _pod("garbled", "not a record"),
            _pod("waiting", None, "Pending")]
    assert held_devices(inventory, pods) == {first: "team/runs", third: "kind/holder"}


def test_the_operator_sees_a_kubeletless_pods_device_busy_and_its_node_settled() -> None:
    inventory = _mig_node().inventory()
    assert not any(d.owner for d in inventory.devices)
    device = inventory.usable_devices()[0]
    node = {"metadata": {"name": "n", "labels": {},
                         "annotations": {INVENTORY_ANNOTATION: inventory.model_dump_json()}},
            "status": {"allocatable": {"nvidia.com/mig-1g.5gb": "56"}}}
    running = _pod("runs", devices_record({device.resource: (device.id,)}))
    view = node_view(node, [running], "leaf")
    busy = [i for g in view.gpus for i in g.instances if i.busy]
    assert len(busy) == 1 and view.gpus[device.gpu_index].instances[0].busy
    assert not view.unsettled, "the running pod's device is held"
    assert node_view(node, [running, _pod("bound", None, "Pending")], "leaf").unsettled, \
        "a bound pod without devices yet leaves the node unsettled"


def test_show_draws_the_pod_that_records_the_device() -> None:
    inventory = _mig_node().inventory()
    device = inventory.usable_devices()[0]
    held = held_devices(inventory, [_pod("runs", devices_record({device.resource: (
        device.id,)}))])
    blocks = gpu_blocks(inventory, device.gpu_index, held)
    assert [b.label for b in blocks if b.state == "held"] == ["1g.5gb team/runs"]
