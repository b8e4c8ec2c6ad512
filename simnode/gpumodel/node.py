"""The hardware of one simulated node: a system spec made concrete for a node name.

``systems.yaml`` describes a DGX A100 as a kind; a node is one machine of that
kind with its own name, and therefore its own GPU UUIDs. This module adds the
per-node identity and the relations tools print (``nvidia-smi topo -m``): NVLink
counts between GPUs, the PCIe path between any two devices and each device's
CPU and NUMA affinity. All figures come from the system and device catalogs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpumodel.gpus import device
from gpumodel.ids import GpuUUID, gpu_uuid
from gpumodel.systems import CpuSpec, NicSpec, SecuritySpec, StorageSpec, system
from gpumodel.vocabulary import DEFAULT_NODE_KIND

Link = Literal["X", "SYS", "NODE", "PHB", "PXB", "PIX"] | str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuHardware(_Frozen):
    """One GPU of a node: identity, placement on the board and the device kind's size."""

    index: int = Field(ge=0)
    uuid: GpuUUID
    device: str
    product_name: str
    pci_bus_id: str
    pci_device_id: str
    memory_mib: int = Field(gt=0)
    sms: int = Field(gt=0)
    pcie_switch: int = Field(ge=0)
    numa_node: int = Field(ge=0)
    nvlinks: int = Field(ge=0)


class NvswitchHardware(_Frozen):
    index: int = Field(ge=0)
    generation: int = Field(ge=1)
    links_per_gpu: int = Field(ge=1)


class NodeHardware(_Frozen):
    """Everything fixed about one node; its MIG and allocation state live in simnode."""

    name: str
    kind: str
    product_name: str
    gpus: tuple[GpuHardware, ...]
    nvswitches: tuple[NvswitchHardware, ...]
    nics: tuple[NicSpec, ...]
    cpu: CpuSpec
    memory_gib: int
    storage: StorageSpec
    security: SecuritySpec

    def gpu(self, index: int) -> GpuHardware:
        if not 0 <= index < len(self.gpus):
            raise IndexError(f"GPU {index} not found; this node has GPUs 0-{len(self.gpus) - 1}")
        return self.gpus[index]

    def rdma_nics(self) -> tuple[NicSpec, ...]:
        """The Mellanox ports ``topo -m`` lists (``mlx5_*``), in name order."""
        return tuple(sorted((n for n in self.nics if n.name.startswith("mlx5_")),
                            key=lambda n: int(n.name.split("_")[1])))

    def nvlinks_between(self, a: int, b: int) -> int:
        """Bonded NVLinks between two GPUs: through every NVSwitch, 2 links each -> 12."""
        if a == b or not self.nvswitches:
            return 0
        return sum(s.links_per_gpu for s in self.nvswitches)

    def cpu_affinity(self, numa_node: int) -> str:
        """Logical CPUs of a NUMA node, as ``topo -m`` prints them: ``48-63,176-191``."""
        per_node = self.cpu.cores // self.cpu.numa_nodes
        first = numa_node * per_node
        ranges = [f"{first}-{first + per_node - 1}"]
        for thread in range(1, self.cpu.threads_per_core):
            base = thread * self.cpu.cores + first
            ranges.append(f"{base}-{base + per_node - 1}")
        return ",".join(ranges)

    def _place(self, name: str) -> tuple[int | None, int]:
        if name.startswith("GPU"):
            gpu = self.gpu(int(name[3:]))
            return gpu.pcie_switch, gpu.numa_node
        for nic in self.nics:
            if nic.name == name:
                return nic.pcie_switch, nic.numa_node
        raise KeyError(f"no device {name!r} on node {self.name}")

    def link(self, a: str, b: str) -> str:
        """``topo -m`` relation of two devices (``GPU0``, ``mlx5_3``): X, NV#, PIX, PXB, NODE,
        SYS."""
        if a == b:
            return "X"
        if a.startswith("GPU") and b.startswith("GPU"):
            links = self.nvlinks_between(int(a[3:]), int(b[3:]))
            if links:
                return f"NV{links}"
        adapters = {nic.name: nic.adapter for nic in self.nics}
        if adapters.get(a) is not None and adapters.get(a) == adapters.get(b):
            return "PIX"  # two ports of one card
        (switch_a, numa_a), (switch_b, numa_b) = self._place(a), self._place(b)
        if switch_a is not None and switch_a == switch_b:
            return "PXB"
        return "NODE" if numa_a == numa_b else "SYS"


def build_node_hardware(name: str, kind: str = DEFAULT_NODE_KIND) -> NodeHardware:
    """The hardware of node ``name`` of system ``kind`` (see ``systems.yaml``)."""
    spec = system(kind)
    gpu_spec = device(spec.gpu)
    links = spec.nvswitches.count * spec.nvswitches.links_per_gpu_per_switch \
        if spec.nvswitches else (gpu_spec.nvlink.links if gpu_spec.nvlink else 0)
    gpus = tuple(
        GpuHardware(index=slot.index, uuid=gpu_uuid(name, slot.index), device=spec.gpu,
                    product_name=gpu_spec.product_name, pci_bus_id=slot.pci_bus_id,
                    pci_device_id=gpu_spec.pci_device_id or "", memory_mib=gpu_spec.memory_mib,
                    sms=gpu_spec.sms, pcie_switch=slot.pcie_switch, numa_node=slot.numa_node,
                    nvlinks=links)
        for slot in spec.gpus)
    switches = tuple(
        NvswitchHardware(index=i, generation=spec.nvswitches.generation,
                         links_per_gpu=spec.nvswitches.links_per_gpu_per_switch)
        for i in range(spec.nvswitches.count)) if spec.nvswitches else ()
    return NodeHardware(name=name, kind=kind, product_name=spec.product_name, gpus=gpus,
                        nvswitches=switches, nics=spec.nics, cpu=spec.cpu,
                        memory_gib=spec.memory_gib, storage=spec.storage,
                        security=spec.security)
