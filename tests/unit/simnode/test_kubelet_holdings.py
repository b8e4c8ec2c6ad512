"""Devices a real kubelet assigned, recorded as the node's allocations (kind mode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgxnode.errors import ApplyBlockedError
from dgxnode.node import SimNode
from dgxnode.store import NodeStore

OWNER = "team/infer-0/main"


def mig_node(store: NodeStore | None = None) -> tuple[SimNode, str]:
    node = SimNode.create("n", store=store)
    node.apply("all-1g.5gb")
    return node, node.mig_devices(3)[2].uuid


def test_a_listed_device_blocks_a_change_that_would_destroy_it_and_names_the_pod() -> None:
    node, device = mig_node()
    change = node.hold_for_kubelet({device: OWNER})
    assert change.added == (device,) and not change.released
    assert node.state.allocations == {device: OWNER}
    assert node.state.kubelet_assigned == (device,)
    before = node.state.gpus
    with pytest.raises(ApplyBlockedError) as err:
        node.apply("all-disabled")
    assert OWNER in str(err.value) and [b.owner for b in err.value.blockers] == [OWNER]
    assert node.state.gpus == before and node.state.mig_config_state == "failed"


def test_a_device_the_kubelet_no_longer_lists_is_released() -> None:
    node, device = mig_node()
    node.hold_for_kubelet({device: OWNER})
    change = node.hold_for_kubelet({})
    assert change.released == (device,)
    assert node.state.allocations == {} and node.state.kubelet_assigned == ()
    node.apply("all-disabled")
    assert node.state.mig_config_state == "success"


def test_a_waiting_apply_resumes_when_the_kubelet_releases() -> None:
    node, device = mig_node()
    node.hold_for_kubelet({device: OWNER})
    node.apply("all-disabled", wait=True)
    assert node.state.mig_config_state == "pending"
    assert device in {d.uuid for d in node.mig_devices(3)}
    node.hold_for_kubelet({})
    assert node.state.mig_config_state == "success" and node.state.pending_apply is None
    assert not any(g.mig_enabled for g in node.state.gpus)


def test_the_nodes_own_allocations_are_left_alone() -> None:
    node, device = mig_node()
    other = node.mig_devices(4)[0].uuid
    node.allocate(other, "ops/debug/shell")
    change = node.hold_for_kubelet({other: OWNER})
    assert change.foreign == (other,) and not change.added
    assert node.state.allocations == {other: "ops/debug/shell"}
    node.hold_for_kubelet({device: OWNER})
    assert node.state.allocations == {other: "ops/debug/shell", device: OWNER}
    assert node.state.kubelet_assigned == (device,)


def test_an_allocation_the_workload_made_first_is_the_kubelets_to_release() -> None:
    node, device = mig_node()
    node.allocate(device, OWNER)  # the container's workload, through the endpoint
    change = node.hold_for_kubelet({device: OWNER})
    assert not change.added and node.state.kubelet_assigned == (device,)
    node.hold_for_kubelet({})
    assert node.state.allocations == {}


def test_a_device_given_to_another_pod_changes_owner() -> None:
    node, device = mig_node()
    node.hold_for_kubelet({device: OWNER})
    change = node.hold_for_kubelet({device: "team/infer-1/main"})
    assert change.added == (device,) and not change.released
    assert node.state.allocations == {device: "team/infer-1/main"}


def test_unknown_ids_are_skipped_and_the_same_answer_commits_nothing() -> None:
    node, device = mig_node()
    node.hold_for_kubelet({device: OWNER, "MIG-not-on-this-node": OWNER})
    assert node.state.allocations == {device: OWNER}
    generation = node.state.generation
    change = node.hold_for_kubelet({device: OWNER})
    assert change.describe() == "kubelet's devices: unchanged"
    assert node.state.generation == generation


def test_release_and_reboot_forget_the_kubelets_record() -> None:
    node, device = mig_node()
    node.hold_for_kubelet({device: OWNER})
    node.release(device)  # the workload ended
    assert node.state.kubelet_assigned == ()
    node.allocate(device, "ops/debug/shell")
    node.hold_for_kubelet({})
    assert node.state.allocations == {device: "ops/debug/shell"}, \
        "an allocation made after the kubelet's was released is not the kubelet's"
    node.hold_for_kubelet({node.mig_devices(5)[0].uuid: OWNER})
    node.reboot()
    assert node.state.kubelet_assigned == () and node.state.allocations == {}


def test_the_kubelets_record_survives_a_restart_of_the_node(tmp_path: Path) -> None:
    node, device = mig_node(NodeStore(tmp_path))
    node.hold_for_kubelet({device: OWNER})
    reopened = SimNode.open(NodeStore(tmp_path))
    assert reopened.state.kubelet_assigned == (device,)
    reopened.hold_for_kubelet({})
    assert reopened.state.allocations == {}


def test_a_whole_gpu_the_kubelet_lists_keeps_its_mig_mode() -> None:
    node = SimNode.create("n")
    gpu = node.hardware.gpu(5).uuid
    node.hold_for_kubelet({gpu: "team/train-0/main"})
    with pytest.raises(ApplyBlockedError) as err:
        node.apply("all-1g.5gb")
    assert "team/train-0/main" in str(err.value)
    assert not any(g.mig_enabled or g.mig_pending for g in node.state.gpus)
