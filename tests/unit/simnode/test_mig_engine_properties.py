"""Property tests of the MIG engine over random create/destroy sequences.

Whatever the sequence: no two GIs overlap, no profile exceeds its per-GPU
maximum, compute stays within 7 slices, a refused operation changes nothing,
and every state can be emptied again.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dgxnode import engine
from dgxnode.errors import InstanceNotFoundError
from dgxnode.state import GpuState
from gpumodel.errors import PlacementError
from gpumodel.mig import ProfileTable, profile_table

TABLES = [profile_table("a100-40gb"), profile_table("a100-80gb")]

Op = tuple[str, int, int | None]
ops = st.lists(st.tuples(st.sampled_from(["create", "create", "destroy", "ci", "dci"]),
                         st.integers(0, 6), st.one_of(st.none(), st.integers(0, 7))),
               max_size=40)


def check_invariants(table: ProfileTable, gpu: GpuState) -> None:
    used = [0] * table.memory_slices
    for gi in gpu.gis:
        spec = table.get(gi.profile)
        assert gi.start in spec.starts and gi.size == spec.memory_slices
        for s in range(gi.start, gi.start + gi.size):
            used[s] += 1
        ci_slices = [0] * spec.compute_slices
        for ci in gi.cis:
            for s in range(ci.start, ci.start + ci.slices):
                ci_slices[s] += 1
        assert max(ci_slices, default=0) <= 1
    assert max(used) <= 1, "overlapping GIs"
    counts = Counter(g.profile for g in gpu.gis)
    assert all(n <= table.get(p).max_per_gpu for p, n in counts.items())
    assert sum(table.get(g.profile).compute_slices for g in gpu.gis) <= table.compute_slices
    assert len({g.gi_id for g in gpu.gis}) == len(gpu.gis) <= 7


def apply_op(table: ProfileTable, gpu: GpuState, op: Op) -> GpuState:
    kind, pick, start = op
    try:
        if kind == "create":
            return engine.create_gi(gpu, table, table.profiles[pick].name, start)[0]
        if not gpu.gis:
            return gpu
        gi = gpu.gis[pick % len(gpu.gis)]
        if kind == "destroy":
            for ci in gi.cis:
                gpu = engine.destroy_ci(gpu, gi.gi_id, ci.ci_id)
            return engine.destroy_gi(gpu, gi.gi_id)
        if kind == "ci":
            sizes = table.get(gi.profile).compute_instance_slices
            return engine.create_ci(gpu, table, gi.gi_id, sizes[(start or 0) % len(sizes)])[0]
        if gi.cis:
            return engine.destroy_ci(gpu, gi.gi_id, gi.cis[0].ci_id)
        return gpu
    except (PlacementError, InstanceNotFoundError):
        return gpu


@settings(max_examples=200, deadline=None)
@given(family=st.sampled_from([0, 1]), sequence=ops)
def test_random_sequences_keep_invariants_and_can_be_emptied(family: int,
                                                             sequence: list[Op]) -> None:
    table = TABLES[family]
    gpu = GpuState(index=0, mig_enabled=True, mig_pending=True)
    for op in sequence:
        gpu = apply_op(table, gpu, op)
        check_invariants(table, gpu)
    for gi in list(gpu.gis):
        for ci in gi.cis:
            gpu = engine.destroy_ci(gpu, gi.gi_id, ci.ci_id)
        gpu = engine.destroy_gi(gpu, gi.gi_id)
    assert gpu.gis == ()
    for _ in range(7):  # an emptied GPU takes a full layout again
        gpu = engine.create_gi(gpu, table, table.profiles[0].name)[0]
    check_invariants(table, gpu)


@settings(max_examples=200, deadline=None)
@given(sequence=ops, profile=st.integers(0, 6), start=st.one_of(st.none(), st.integers(0, 7)))
def test_refusal_changes_nothing(sequence: list[Op], profile: int, start: int | None) -> None:
    table = TABLES[0]
    gpu = GpuState(index=2, mig_enabled=True, mig_pending=True)
    for op in sequence:
        gpu = apply_op(table, gpu, op)
    before = gpu
    name = table.profiles[profile].name
    try:
        after, gi = engine.create_gi(gpu, table, name, start)
    except PlacementError as err:
        assert gpu == before
        assert str(err).startswith("GPU 2: ") and err.profile == name
    else:
        assert gi in after.gis and len(after.gis) == len(before.gis) + 1


def test_mig_disabled_gpu_refuses() -> None:
    table = TABLES[0]
    gpu = GpuState(index=1)
    try:
        engine.create_gi(gpu, table, "1g.5gb")
    except PlacementError as err:
        assert str(err) == "GPU 1: MIG mode is disabled; cannot create 1g.5gb"
    else:
        raise AssertionError("created a GI with MIG disabled")


def test_gi_with_compute_instances_is_in_use() -> None:
    table = TABLES[0]
    gpu = GpuState(index=0, mig_enabled=True, mig_pending=True)
    gpu, gi = engine.create_gi(gpu, table, "3g.20gb")
    gpu, _ = engine.create_ci(gpu, table, gi.gi_id, 2)
    gpu, _ = engine.create_ci(gpu, table, gi.gi_id, 1)
    assert [(c.ci_id, c.start, c.slices) for c in gpu.gis[0].cis] == [(0, 0, 2), (1, 2, 1)]
    try:
        engine.destroy_gi(gpu, gi.gi_id)
    except PlacementError as err:
        assert "compute instance" in str(err)
    else:
        raise AssertionError("destroyed a GI that has compute instances")
