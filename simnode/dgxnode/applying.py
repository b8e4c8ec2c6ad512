"""Carrying out a GPU plan: the engine's operations in the plan's order.

The plan runs against a copy of the GPU's state; the node swaps the result in
only if every step succeeded, so a failure part-way leaves the GPU exactly as
it was (mig-parted reaches the same end with compensating actions; immutable
state gets it for free). Order matters as on a real GPU: compute instances
before their GPU instance, a MIG mode change takes effect at the reset, and
new instances are created at the plan's explicit placements.
"""

from __future__ import annotations

from dgxnode.engine import (
    create_ci,
    create_gi,
    destroy_ci,
    destroy_gi,
    find_gi,
    reset,
    set_mig_mode,
)
from dgxnode.planning import GpuPlan
from dgxnode.state import GpuState
from gpumodel.mig import ProfileTable


def execute(plan: GpuPlan, gpu: GpuState, table: ProfileTable | None,
            mig_enabled: bool) -> GpuState:
    """The GPU state after ``plan``; raises (leaving ``gpu`` as it was) if a step fails."""
    if plan.action != "reconfigure":
        return gpu
    state = gpu
    for ref in plan.destroy:
        gi = find_gi(state, ref.gi_id)
        for ci in gi.cis:
            state = destroy_ci(state, gi.gi_id, ci.ci_id)
        state = destroy_gi(state, gi.gi_id)
    state = set_mig_mode(state, mig_enabled)
    if plan.mode is not None:
        state = reset(state)
    if table is None:
        return state
    for gi_id in plan.add_default_ci:
        state, _ = create_ci(state, table, gi_id)
    for new in plan.create:
        state, created = create_gi(state, table, new.gi_profile, new.start)
        state, _ = create_ci(state, table, created.gi_id, new.ci_slices)
    return state
