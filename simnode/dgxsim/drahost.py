"""The DRA driver's view of a simulated node: :class:`draplugin.host.GpuHost` over SimNode.

Creating a MIG device on the slot the scheduler chose goes through the node's
MIG engine exactly as ``nvidia-smi mig -cgi <id> ... -C`` with a placement
would: MIG mode is turned on first where it is off (a GPU reset, which needs
the GPU idle), and a GPU left without instances goes back to MIG off.
"""

from __future__ import annotations

from draplugin.errors import PrepareError

from dgxnode.errors import SimnodeError
from dgxnode.node import SimNode
from gpumodel.errors import GpuModelError
from gpumodel.inventory import NodeInventory


class SimNodeHost:
    """A :class:`draplugin.host.GpuHost` for one simulated node."""

    def __init__(self, sim: SimNode) -> None:
        self.sim = sim

    def inventory(self) -> NodeInventory:
        return self.sim.inventory()

    def _fail(self, gpu: int, err: Exception) -> PrepareError:
        return PrepareError(f"{self.sim.name}: GPU {gpu}: {err}")

    def create_mig(self, gpu: int, profile_id: int, start: int) -> str:
        try:
            if not self.sim.state.gpu(gpu).mig_enabled and self.sim.set_mig_mode(gpu, True):
                self.sim.reset_gpu(gpu)
            gi = self.sim.create_gi(gpu, profile_id, start, default_ci=True)
        except (SimnodeError, GpuModelError) as err:
            raise self._fail(gpu, err) from err
        for device in self.sim.mig_devices(gpu):
            if device.gi.gi_id == gi.gi_id:
                return str(device.uuid)
        raise PrepareError(f"{self.sim.name}: GPU {gpu}: GI {gi.gi_id} has no MIG device")

    def destroy_mig(self, gpu: int, uuid: str) -> None:
        try:
            for device in self.sim.mig_devices(gpu):
                if device.uuid == uuid:
                    self.sim.destroy_ci(gpu, device.gi.gi_id, device.ci.ci_id)
                    gi = self.sim.state.gpu(gpu).gi(device.gi.gi_id)
                    if gi is not None and not gi.cis:
                        self.sim.destroy_gi(gpu, gi.gi_id)
            state = self.sim.state.gpu(gpu)
            if state.mig_enabled and not state.gis and self.sim.set_mig_mode(gpu, False):
                self.sim.reset_gpu(gpu)
        except (SimnodeError, GpuModelError) as err:
            raise self._fail(gpu, err) from err

    def whole_gpu(self, gpu: int) -> str:
        try:
            state = self.sim.state.gpu(gpu)
            if state.gis:
                raise PrepareError(f"{self.sim.name}: GPU {gpu} holds MIG devices; it cannot "
                                   "be given whole")
            if state.mig_enabled and self.sim.set_mig_mode(gpu, False):
                self.sim.reset_gpu(gpu)
        except (SimnodeError, GpuModelError) as err:
            raise self._fail(gpu, err) from err
        return str(self.sim.hardware.gpu(gpu).uuid)
