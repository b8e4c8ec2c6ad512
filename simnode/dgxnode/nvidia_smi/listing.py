"""``nvidia-smi -L``, ``--query-gpu`` and ``topo -m`` of a simulated node.

Layouts follow NVIDIA's: ``-L`` lists each GPU and its MIG devices in NVML
order; ``--query-gpu`` prints CSV with NVIDIA's field names and units (``[MiB]``
in the header and ``MiB`` after values unless ``nounits``); ``topo -m`` prints
the tab-separated matrix with NIC columns and CPU/NUMA affinity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dgxnode.node import SimNode
from dgxnode.nvidia_smi.errors import INVALID_ARGUMENT, SmiError
from gpumodel.gpus import device
from gpumodel.node import GpuHardware
from gpumodel.software import compute_capability, driver_version


def idle_telemetry(device_kind: str) -> tuple[int, int]:
    """(temperature C, power W) of an idle board, from the catalog: what ``temperature.gpu``,
    ``power.draw`` and the summary show (nvidia-smi reads an idle simulated GPU)."""
    telemetry = device(device_kind).telemetry
    if telemetry is None:
        raise ValueError(f"{device_kind}: the catalog has no telemetry for this device")
    return round(telemetry.idle_temp_c), round(telemetry.idle_power_w)
TOPO_LEGEND = """
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks"""  # noqa: E501


def list_gpus(node: SimNode, gpus: Sequence[int]) -> list[str]:
    lines = []
    for index in gpus:
        hw = node.hardware.gpu(index)
        lines.append(f"GPU {index}: {hw.product_name} (UUID: {hw.uuid})")
        if node.state.gpu(index).mig_enabled:
            for number, dev in enumerate(node.mig_devices(index)):
                lines.append(f"  MIG {dev.profile:<11} Device {number:>2}: (UUID: {dev.uuid})")
    return lines


def _mode(enabled: bool) -> str:
    return "Enabled" if enabled else "Disabled"


def _compute_cap(hw: GpuHardware) -> str:
    found = compute_capability(device(hw.device).architecture)
    return f"{found[0]}.{found[1]}" if found else ""


def _fields() -> dict[str, tuple[str, str, Callable[[SimNode, GpuHardware], str]]]:
    """Query name -> (canonical name, unit, value)."""
    def spec(hw: GpuHardware) -> str:
        return device(hw.device).name

    return {
        "index": ("index", "", lambda n, g: str(g.index)),
        "name": ("name", "", lambda n, g: g.product_name),
        "uuid": ("uuid", "", lambda n, g: g.uuid),
        "count": ("count", "", lambda n, g: str(len(n.hardware.gpus))),
        "driver_version": ("driver_version", "", lambda n, g: driver_version()),
        "pci.bus_id": ("pci.bus_id", "", lambda n, g: g.pci_bus_id),
        "pci.device_id": ("pci.device_id", "", lambda n, g: g.pci_device_id),
        "memory.total": ("memory.total", "MiB", lambda n, g: str(g.memory_mib)),
        "memory.used": ("memory.used", "MiB", lambda n, g: "0"),
        "memory.free": ("memory.free", "MiB", lambda n, g: str(g.memory_mib)),
        "mig.mode.current": ("mig.mode.current", "",
                             lambda n, g: _mode(n.state.gpu(g.index).mig_enabled)),
        "mig.mode.pending": ("mig.mode.pending", "",
                             lambda n, g: _mode(n.state.gpu(g.index).mig_pending)),
        "compute_cap": ("compute_cap", "", lambda n, g: _compute_cap(g)),
        "clocks.max.sm": ("clocks.max.sm", "MHz",
                          lambda n, g: str(device(spec(g)).boost_clock_mhz)),
        "power.limit": ("power.limit", "W", lambda n, g: f"{device(spec(g)).tdp_w:.2f}"),
        "power.draw": ("power.draw", "W",
                       lambda n, g: f"{idle_telemetry(spec(g))[1]:.2f}"),
        "utilization.gpu": ("utilization.gpu", "%", lambda n, g: "0"),
        "temperature.gpu": ("temperature.gpu", "",
                            lambda n, g: str(idle_telemetry(spec(g))[0])),
        "persistence_mode": ("persistence_mode", "", lambda n, g: "Enabled"),
        "pstate": ("pstate", "", lambda n, g: "P0"),
    }


ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
           "pci.device": "pci.device_id"}


def query_gpu(node: SimNode, gpus: Sequence[int], query: str, fmt: str) -> list[str]:
    options = [o.strip() for o in fmt.split(",")]
    if not options or options[0] != "csv" or set(options[1:]) - {"noheader", "nounits"}:
        raise SmiError(INVALID_ARGUMENT, f'"{fmt}" is not a valid format.')
    known = _fields()
    chosen = []
    for raw in query.split(","):
        name = ALIASES.get(raw.strip(), raw.strip())
        if name not in known:
            raise SmiError(INVALID_ARGUMENT, f'Field "{raw.strip()}" is not a valid field to '
                                            f'query.')
        chosen.append(known[name])
    units = "nounits" not in options
    lines = []
    if "noheader" not in options:
        lines.append(", ".join(f"{c} [{u}]" if u else c for c, u, _ in chosen))
    for index in gpus:
        hw = node.hardware.gpu(index)
        values = []
        for _, unit, value in chosen:
            text = value(node, hw)
            values.append(f"{text} {unit}" if units and unit else text)
        lines.append(", ".join(values))
    return lines


def topo_matrix(node: SimNode) -> list[str]:
    hw = node.hardware
    columns = [f"GPU{g.index}" for g in hw.gpus] + [n.name for n in hw.rdma_nics()]
    lines = ["\t" + "\t".join(columns) + "\tCPU Affinity\tNUMA Affinity"]
    for row in columns:
        cells = [" X " if row == col else hw.link(row, col) for col in columns]
        line = row + "\t" + "\t".join(cells)
        if row.startswith("GPU"):
            numa = hw.gpu(int(row[3:])).numa_node
            line += f"\t{hw.cpu_affinity(numa)}\t{numa}"
        lines.append(line)
    return lines + TOPO_LEGEND.splitlines()
