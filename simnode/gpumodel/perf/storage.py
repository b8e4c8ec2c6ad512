"""Data loading: the DGX's local NVMe cache versus network storage.

Why epochs matter: a DGX A100 keeps a dataset it has read once in its local
RAID-0 NVMe cache (cachefilesd over NFS), so the first epoch reads from the
storage network (two storage HCAs per node, or whatever the filer delivers) and
later epochs read from the local drives, several times faster. Loaders prefetch,
so reading only costs time when it is slower than the step it feeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumodel.perf.calibration import PerfConstants
from gpumodel.perf.collectives import system_for


@dataclass(frozen=True, slots=True)
class StorageRead:
    """Where a node reads its input from and how long one step's input takes."""

    source: str
    gb_per_s: float
    time_s: float


def node_read(bytes_per_step: float, device_name: str, epoch: int, dataset_gb: float,
              network_gb_per_s: float | None, c: PerfConstants) -> StorageRead:
    """Time for one node to read ``bytes_per_step`` in ``epoch`` (1 = first, cold cache)."""
    if bytes_per_step <= 0:
        return StorageRead(source="none", gb_per_s=0.0, time_s=0.0)
    sys_spec = system_for(device_name)
    if sys_spec is None:  # a lone server: its local drive is all there is
        return StorageRead(source="local", gb_per_s=2.0, time_s=bytes_per_step / 2.0e9)
    network = network_gb_per_s
    if network is None:  # the storage HCAs' line rate: the most the filer could deliver
        nics = sys_spec.nics_with_role("storage") or sys_spec.nics_with_role("management")
        network = sum(n.gb_per_s for n in nics) * c.scalar("ib_efficiency")
    cache = sys_spec.storage.cache
    cached = epoch > 1 and dataset_gb <= cache.capacity_tb * 1000 and cache.read_gb_per_s > 0
    if cached:
        rate, source = cache.read_gb_per_s, "nvme-cache"
    else:
        rate, source = network, "network"
    return StorageRead(source=source, gb_per_s=rate, time_s=bytes_per_step / (rate * 1e9))
