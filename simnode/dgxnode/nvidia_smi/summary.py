"""``nvidia-smi`` with no command: the summary table, in the R535 driver's layout.

Three boxes, 89 columns wide: the GPUs (name, persistence, bus ID, ECC,
temperature, performance state, power, memory, utilisation, compute and MIG
mode, with ``*`` where a MIG mode change waits for a reset), the MIG devices
when any GPU has MIG on (GPU, GI, CI and MIG device IDs, memory and BAR1 of
the instance, SMs, copy engines, decoders, OFA and JPEG units), and the
processes. An idle simulated GPU uses no memory and runs no process; what
containers hold is in the node's inventory, not in CUDA contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dgxnode.devices import MigDevice
from dgxnode.node import SimNode
from dgxnode.nvidia_smi.listing import idle_telemetry
from gpumodel.gpus import device
from gpumodel.software import cuda_version, driver_version

WIDTH = 89
GPU_COLUMNS = (41, 22, 22)
MIG_COLUMNS = (18, 32, 11, 23)


def _rule(columns: Sequence[int], fill: str = "-", edge: str = "+") -> str:
    return edge + "+".join(fill * c for c in columns) + edge


def _row(*cells: str) -> str:
    return "|" + "|".join(cells) + "|"


def _line(text: str) -> str:
    return f"| {text:<{WIDTH - 4}} |"


def _mode(enabled: bool, pending: bool) -> str:
    word = "Enabled" if pending else "Disabled"
    return word + ("*" if enabled != pending else "")


def _header(now: datetime) -> list[str]:
    driver = driver_version()
    return [
        now.strftime("%a %b %d %H:%M:%S %Y") + " " * 7,
        _rule([WIDTH - 2]),
        f"| NVIDIA-SMI {driver:<22} Driver Version: {driver:<12} "
        f"CUDA Version: {cuda_version():<9}|",
        "|" + _rule(GPU_COLUMNS)[1:],
        "| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                      |               MIG M. |",
        _rule(GPU_COLUMNS, "=", "|"),
    ]


def _gpu_rows(node: SimNode, index: int) -> list[str]:
    hw = node.hardware.gpu(index)
    spec = device(hw.device)
    state = node.state.gpu(index)
    mig = state.mig_enabled
    temperature_c, power_w = idle_telemetry(hw.device)
    return [
        _row(f"{index:>4}  {hw.product_name:<31}{'On':<4}",
             f" {hw.pci_bus_id} Off ", f" {'On' if mig else '0':>20} "),
        _row(f" N/A {temperature_c:>4}C {'P0':>5}{f'{power_w}W':>17} / "
             f"{f'{spec.tdp_w}W':>4} ",
             f"{'0MiB':>10} / {f'{hw.memory_mib}MiB':>8} ",
             f"{'N/A' if mig else '0%':>8}{'Default':>13} "),
        _row(" " * GPU_COLUMNS[0], " " * GPU_COLUMNS[1],
             f" {_mode(mig, state.mig_pending):>20} "),
        _rule(GPU_COLUMNS),
    ]


def _mig_rows(node: SimNode, gpus: Sequence[int]) -> list[str]:
    lines = [
        _rule([WIDTH - 2]),
        _line("MIG devices:"),
        _rule(MIG_COLUMNS),
        "| GPU  GI  CI  MIG |                   Memory-Usage |        Vol|      Shared           |",
        "|      ID  ID  Dev |                     BAR1-Usage | SM     Unc| CE ENC DEC OFA JPG    |",
        "|                  |                                |        ECC|                       |",
        _rule(MIG_COLUMNS, "=", "|"),
    ]
    devices = [(i, n, d) for i in gpus if node.state.gpu(i).mig_enabled
               for n, d in enumerate(node.mig_devices(i))]
    if not devices:
        return [*lines, _line(" No MIG devices found"), _rule([WIDTH - 2])]
    for index, number, dev in devices:
        lines += _mig_device_rows(node, index, number, dev)
    return lines


def _mig_device_rows(node: SimNode, index: int, number: int, dev: MigDevice) -> list[str]:
    geometry = device(node.hardware.gpu(index).device).mig
    assert geometry is not None
    spec = dev.gi_spec
    share = dev.ci.slices / spec.compute_slices  # a smaller CI gets its share of engines
    bar1 = geometry.bar1_mib * spec.memory_slices // geometry.memory_slices - 1
    copy_engines = max(1, int(spec.copy_engines * share))
    return [
        _row(f"{index:>3}{dev.gi.gi_id:>5}{dev.ci.ci_id:>4}{number:>4}  ",
             f"{'0MiB':>19} / {f'{spec.memory_mib}MiB':>8}  ",
             f" {dev.sms:>2}{0:>7} ",
             f"{copy_engines:>3}{spec.encoders:>4}{spec.decoders:>5}{spec.ofa:>5}"
             f"{spec.jpeg_decoders:>5} "),
        _row(" " * MIG_COLUMNS[0], f"{'0MiB':>19} / {f'{bar1}MiB':>8}  ",
             " " * MIG_COLUMNS[2], " " * MIG_COLUMNS[3]),
        _rule(MIG_COLUMNS),
    ]


def _processes() -> list[str]:
    return [
        " " * WIDTH,
        _rule([WIDTH - 2]),
        _line("Processes:"),
        _line(" GPU   GI   CI        PID   Type   Process name                            "
              "GPU Memory"),
        _line("       ID   ID                                                             "
              "Usage     "),
        _rule([WIDTH - 2], "=", "|"),
        _line(" No running processes found"),
        _rule([WIDTH - 2]),
    ]


def summary(node: SimNode, gpus: Sequence[int], now: datetime | None = None) -> list[str]:
    """The lines ``nvidia-smi`` prints with no command, for the GPUs ``gpus``."""
    lines = _header(now or datetime.now().astimezone())
    for index in gpus:
        lines += _gpu_rows(node, index)
    if any(node.state.gpu(i).mig_enabled for i in gpus):
        lines += ["", *_mig_rows(node, gpus)]
    return lines + _processes()
