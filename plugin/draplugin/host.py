"""What the DRA plugin needs of its node: the inventory and the MIG engine.

The composition root wires it to the simulated node; a real driver would call
NVML here. Every method blocks (the node commits to disk) and is called off the
event loop. Errors are :class:`draplugin.errors.PrepareError`.
"""

from __future__ import annotations

from typing import Protocol

from gpumodel.inventory import NodeInventory


class GpuHost(Protocol):
    """The node's GPUs as a DRA driver sees them."""

    def inventory(self) -> NodeInventory:
        """The node's devices now."""
        ...

    def create_mig(self, gpu: int, profile_id: int, start: int) -> str:
        """Create the GPU instance of ``profile_id`` at memory slice ``start`` with its full
        compute instance, turning MIG mode on first (a GPU reset) if it is off; the new MIG
        device's UUID."""
        ...

    def destroy_mig(self, gpu: int, uuid: str) -> None:
        """Destroy the MIG device ``uuid`` (compute and GPU instance); a GPU left without
        instances goes back to MIG mode off (a GPU reset), whole again."""
        ...

    def whole_gpu(self, gpu: int) -> str:
        """Make sure GPU ``gpu`` is usable whole (MIG off, a reset if it was on and empty);
        its UUID."""
        ...
