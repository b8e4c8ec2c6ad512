"""Named MIG configs applied through per-GPU plans (mig-manager's role, done better)."""

from __future__ import annotations

import pytest

from dgxnode.errors import AllocationError, ApplyBlockedError, GpuBusyError
from dgxnode.events import NodeEvent
from dgxnode.node import SimNode
from gpumodel.migparted import default_mig_configs, parse_mig_parted_config


def layout(node: SimNode, gpu: int) -> list[tuple[str, int]]:
    return sorted((d.profile, d.gi.start) for d in node.mig_devices(gpu))


@pytest.mark.parametrize("kind", ["dgx-a100-320gb", "dgx-a100-640gb"])
@pytest.mark.parametrize("name", default_mig_configs().names())
def test_every_default_config_applies_to_a_fresh_node(kind: str, name: str) -> None:
    node = SimNode.create("n", kind)
    node.apply(name)
    assert node.state.mig_config == name and node.state.mig_config_state == "success"
    targets = node.targets(name)
    for index, target in targets.items():
        gpu = node.state.gpu(index)
        assert gpu.mig_enabled == target.mig_enabled and not gpu.reset_pending
        got: dict[str, int] = {}
        for dev in node.mig_devices(index):
            got[dev.profile] = got.get(dev.profile, 0) + 1
        assert got == target.devices
    assert node.plan(name).changes is False  # applying again changes nothing


def test_balanced_to_1g5gb_keeps_the_allocated_instance() -> None:
    node = SimNode.create("n")
    node.apply("all-balanced")
    small = next(d for d in node.mig_devices(3) if d.profile == "1g.5gb")
    node.allocate(small.uuid, "default/pod-a/main")
    untouched_before = layout(node, 0)
    plan = node.apply("all-1g.5gb")
    assert any(k.gi_id == small.gi.gi_id for k in plan.gpus[3].keep)
    assert layout(node, 3) == [("1g.5gb", s) for s in range(7)]
    assert small.uuid in {d.uuid for d in node.mig_devices(3)}
    assert node.state.allocations == {small.uuid: "default/pod-a/main"}
    assert untouched_before != layout(node, 0)


def test_blocking_allocation_is_named_and_nothing_changes() -> None:
    node = SimNode.create("n")
    node.apply("all-balanced")
    big = next(d for d in node.mig_devices(2) if d.profile == "3g.20gb")
    node.allocate(big.uuid, "team/train-0/main")
    before = node.state.gpus
    with pytest.raises(ApplyBlockedError) as err:
        node.apply("all-1g.5gb")
    message = str(err.value)
    assert f"GPU 2: 3g.20gb (GI {big.gi.gi_id}, {big.uuid}) is allocated to team/train-0/main" \
        in message
    assert [b.device_id for b in err.value.blockers] == [big.uuid]
    assert node.state.gpus == before and node.state.mig_config_state == "failed"


def test_wait_applies_the_rest_and_finishes_on_release() -> None:
    node = SimNode.create("n")
    node.apply("all-balanced")
    big = next(d for d in node.mig_devices(2) if d.profile == "3g.20gb")
    node.allocate(big.uuid, "team/train-0/main")
    plan = node.apply("all-1g.5gb", wait=True)
    assert [p.gpu for p in plan.blocked] == [2]
    assert node.state.mig_config_state == "pending"
    assert layout(node, 0) == [("1g.5gb", s) for s in range(7)]
    assert ("3g.20gb", big.gi.start) in layout(node, 2)
    node.release(big.uuid)
    assert node.state.mig_config_state == "success" and node.state.pending_apply is None
    assert layout(node, 2) == [("1g.5gb", s) for s in range(7)]


def test_untouched_gpus_and_kept_instances() -> None:
    node = SimNode.create("n")
    node.apply("all-3g.20gb")
    config = parse_mig_parted_config("""
version: v1
mig-configs:
  half:
    - devices: [0]
      mig-enabled: true
      mig-devices: {"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2}
""")
    uuids = {d.uuid for d in node.mig_devices(1)}
    plan = node.apply("half", config)
    assert [p.action for p in plan.gpus] == ["reconfigure"] + ["untouched"] * 7
    assert len(plan.gpus[0].keep) == 1 and len(plan.gpus[0].destroy) == 1
    assert {d.uuid for d in node.mig_devices(1)} == uuids


def test_mode_changes_need_an_idle_gpu_and_a_reset() -> None:
    node = SimNode.create("n")
    gpu_uuid = node.hardware.gpu(0).uuid
    node.allocate(gpu_uuid, "default/full/main")
    with pytest.raises(GpuBusyError, match="GPU 0: enabling MIG mode needs an idle GPU"):
        node.set_mig_mode(0, True)
    with pytest.raises(ApplyBlockedError, match="enabling MIG needs an idle GPU"):
        node.apply("all-1g.5gb")
    node.release(gpu_uuid)
    assert node.set_mig_mode(0, True) is True
    assert node.state.gpu(0).reset_pending and not node.state.gpu(0).mig_enabled
    node.reset_gpu(0)
    assert node.state.gpu(0).mig_enabled
    with pytest.raises(AllocationError, match="in MIG mode"):
        node.allocate(gpu_uuid, "default/full/main")


def test_apply_reports_pending_rebooting_success_to_subscribers() -> None:
    node = SimNode.create("n")
    events: list[NodeEvent] = []
    unsubscribe = node.subscribe(events.append)
    node.apply("all-7g.40gb")
    states = [e.message.split(": ")[-1] for e in events if e.kind == "config"][:2]
    assert states == ["pending", "rebooting"]
    assert events[-1].generation == node.state.generation
    unsubscribe()
    node.apply("all-disabled")
    assert events[-1].generation < node.state.generation


def test_reboot_keeps_modes_and_drops_instances() -> None:
    node = SimNode.create("n")
    node.apply("all-2g.10gb")
    node.allocate(node.mig_devices(0)[0].uuid, "a/b/c")
    node.reboot()
    assert all(g.mig_enabled and not g.gis for g in node.state.gpus)
    assert node.state.allocations == {}


def test_inventory_lists_what_the_plugin_needs() -> None:
    node = SimNode.create("n")
    node.apply("all-balanced")
    dev = node.mig_devices(6)[0]
    node.allocate(dev.uuid, "ns/pod/c")
    node.set_health(node.mig_devices(7)[0].uuid, False)
    inv = node.inventory()
    assert inv.resources() == {"nvidia.com/mig-1g.5gb": 16, "nvidia.com/mig-2g.10gb": 8,
                               "nvidia.com/mig-3g.20gb": 8}
    entry = inv.device(dev.uuid)
    assert (entry.gpu_index, entry.pcie_switch, entry.numa_node, entry.owner) == (6, 3, 5,
                                                                                 "ns/pod/c")
    assert entry.mig is not None and entry.mig.gi_id == dev.gi.gi_id
    assert inv.device(node.mig_devices(7)[0].uuid).health == "Unhealthy"
    node.set_health(node.mig_devices(7)[0].uuid, True)
    assert node.inventory().device(node.mig_devices(7)[0].uuid).health == "Healthy"
    assert inv.mig_config == "all-balanced"


def test_the_inventory_follows_every_change_of_owners_and_layout() -> None:
    """The inventory of a state that differs only in owners is derived from the last
    one; it must equal the inventory built from scratch, whatever the change."""
    from dgxnode.publishing import build_inventory

    node = SimNode.create("node-a")

    def check() -> None:
        assert node.inventory() == build_inventory(node.hardware, node.table, node.state)

    check()
    gpu0, gpu1 = node.hardware.gpus[0].uuid, node.hardware.gpus[1].uuid
    node.allocate(gpu0, "default/a/main")
    check()
    node.allocate(gpu1, "default/b/main")
    check()
    node.release(gpu0)
    check()
    node.set_health(gpu1, False, xid=79)
    check()
    node.release(gpu1)
    check()
    node.apply("all-1g.5gb")
    check()
    mig = node.mig_devices(3)[2].uuid
    node.allocate(mig, "default/c/main")
    check()
    assert node.inventory().device(mig).owner == "default/c/main"
    node.release(mig)
    check()
    assert node.inventory().generation == node.state.generation
