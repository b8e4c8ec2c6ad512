"""The software a simulated node reports: driver, CUDA and compute capability.

One place for what ``nvidia-smi`` prints in its header and ``--query-gpu``
answers, and what gpu-feature-discovery writes into the ``nvidia.com/cuda.*``
and ``gpu.compute.*`` labels.
"""

from __future__ import annotations

DRIVER_VERSION = (535, 183, 6)
"""The R535 data-center driver of DGX OS 6."""
CUDA_VERSION = (12, 2)
"""The CUDA version that driver supports (``CUDA Version`` in nvidia-smi's header)."""
COMPUTE_CAPABILITY = {"volta": (7, 0), "turing": (7, 5), "ampere": (8, 0), "hopper": (9, 0)}


def driver_version() -> str:
    """``535.183.06``, as nvidia-smi prints it."""
    major, minor, rev = DRIVER_VERSION
    return f"{major}.{minor}.{rev:02d}"


def cuda_version() -> str:
    return f"{CUDA_VERSION[0]}.{CUDA_VERSION[1]}"


def compute_capability(architecture: str) -> tuple[int, int] | None:
    return COMPUTE_CAPABILITY.get(architecture)
