"""The fabric NCCL sees from one GPU: NVLink or PCIe inside the node, rail NICs across nodes.

Why its own module: the collective algorithms (:mod:`gpumodel.perf.nccl`) and
storage reads both need the node's links, and those come only from the device
and system catalogs plus the per-link figures NCCL's own topology search uses
(``perf-constants.yaml``), so every bandwidth here traces to a spec sheet or to
NCCL's source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from gpumodel.gpus import DeviceSpec, device
from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.errors import PerfError
from gpumodel.systems import SystemSpec, system_catalog


@dataclass(frozen=True, slots=True)
class Fabric:
    """Per-GPU bandwidths and hop kinds NCCL sees on one kind of node.

    ``inter_gb_per_s`` is one GPU's share of the node's compute NICs;
    ``nic_gb_per_s`` what one NIC carries and ``nics`` how many the node has.
    """

    intra_gb_per_s: float
    intra_hop: Literal["nvlink", "pcie"]
    inter_gb_per_s: float
    intra_name: str
    nic_gb_per_s: float
    nics: int

    def node_nic_gb_per_s(self, gpus_per_node: int) -> float:
        """What ``gpus_per_node`` GPUs of one node can send across nodes: one rail each."""
        return min(gpus_per_node, self.nics) * self.nic_gb_per_s


def system_for(device_name: str) -> SystemSpec | None:
    """The DGX system built from ``device_name`` (first in catalog order), if any."""
    for spec in system_catalog().values():
        if spec.gpu == device_name:
            return spec
    return None


@cache
def fabric(device_name: str, c: PerfConstants) -> Fabric:
    """The fabric a GPU of ``device_name`` sits on: its DGX system, or its own links."""
    spec = device(device_name)
    sys_spec = system_for(device_name)
    intra_name = sys_spec.intra_node_fabric if sys_spec else ("nvswitch" if spec.nvlink
                                                               else "pcie")
    if spec.nvlink is not None:
        per_link = c.table("nccl_nvlink_gb_per_s_per_link", str(spec.nvlink.generation))
        intra, hop = spec.nvlink.links * per_link, "nvlink"
    else:
        intra, hop = _pcie_gb_per_s(spec, c), "pcie"
    nic, nics = _nics(spec, sys_spec, c)
    return Fabric(intra_gb_per_s=intra, intra_hop=hop,  # type: ignore[arg-type]
                  inter_gb_per_s=nic * nics / (sys_spec.gpu_count if sys_spec else 1),
                  intra_name=intra_name, nic_gb_per_s=nic, nics=nics)


def _pcie_gb_per_s(spec: DeviceSpec, c: PerfConstants) -> float:
    if spec.pcie is None:
        raise PerfError(f"{spec.name} has neither NVLink nor PCIe to talk to its peers")
    gen3_x16_gb_per_s = 15.75  # the Gen3 x16 line rate NCCL's PCI_BW figure stands for
    return c.scalar("nccl_pcie_gen3_x16_gb_per_s") * spec.pcie.gb_per_s / gen3_x16_gb_per_s


def _nics(spec: DeviceSpec, sys_spec: SystemSpec | None, c: PerfConstants) -> tuple[float, int]:
    """(GB/s one compute NIC carries, compute NICs per node) at the IB efficiency."""
    efficiency = c.scalar("ib_efficiency")
    if sys_spec is None:  # a lone server: assume one HDR 200 Gb/s NIC per GPU
        return 200 / 8 * efficiency, 1
    nics = sys_spec.nics_with_role("compute")
    return max(n.gb_per_s for n in nics) * efficiency, len(nics)
