"""The labels gpu-feature-discovery writes on a DGX A100-40GB, in each MIG strategy.

The expected sets follow GFD's label makers in NVIDIA/k8s-device-plugin
(``internal/lm``: nvml.go, resource.go, mig-strategy.go, machine-type.go) and its
documented table (``docs/gpu-feature-discovery/README.md``). Each test checks
the node has every label with the value GFD writes, and no ``nvidia.com/``
label GFD would not write (besides the GPU Operator's ``gpu.present``).
"""

from __future__ import annotations

import re

from dgxnode.node import SimNode
from gpumodel.labels import gfd_labels

OPERATOR = {"nvidia.com/gpu.present": "true"}
COMMON = {
    "nvidia.com/gpu.machine": "DGXA100-920-23687-2530-000",
    "nvidia.com/cuda.driver.major": "535", "nvidia.com/cuda.driver.minor": "183",
    "nvidia.com/cuda.driver.rev": "06",
    "nvidia.com/cuda.runtime.major": "12", "nvidia.com/cuda.runtime.minor": "2",
    "nvidia.com/cuda.driver-version.major": "535",
    "nvidia.com/cuda.driver-version.minor": "183",
    "nvidia.com/cuda.driver-version.revision": "06",
    "nvidia.com/cuda.driver-version.full": "535.183.06",
    "nvidia.com/cuda.runtime-version.major": "12",
    "nvidia.com/cuda.runtime-version.minor": "2",
    "nvidia.com/cuda.runtime-version.full": "12.2",
    "nvidia.com/mig.capable": "true", "nvidia.com/mps.capable": "false",
    "nvidia.com/gpu.mode": "compute",
    "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": "8",
    "nvidia.com/gpu.replicas": "1", "nvidia.com/gpu.sharing-strategy": "none",
    "nvidia.com/gpu.memory": "40960", "nvidia.com/gpu.family": "ampere",
    "nvidia.com/gpu.compute.major": "8", "nvidia.com/gpu.compute.minor": "0",
}


def labels(config: str | None, strategy: str) -> dict[str, str]:
    node = SimNode.create("dgx-0")
    if config:
        node.apply(config)
    return gfd_labels(node.inventory(), strategy, "a100-40gb")  # type: ignore[arg-type]


def mig_type(key: str, product: str, count: int, memory: int, sms: int, gi: int, ci: int,
             engines: tuple[int, int, int, int, int], replicas: int = 1) -> dict[str, str]:
    copy, dec, enc, jpeg, ofa = engines
    return {f"{key}.product": product, f"{key}.count": str(count),
            f"{key}.replicas": str(replicas), f"{key}.sharing-strategy": "none",
            f"{key}.memory": str(memory), f"{key}.multiprocessors": str(sms),
            f"{key}.slices.gi": str(gi), f"{key}.slices.ci": str(ci),
            f"{key}.engines.copy": str(copy), f"{key}.engines.decoder": str(dec),
            f"{key}.engines.encoder": str(enc), f"{key}.engines.jpeg": str(jpeg),
            f"{key}.engines.ofa": str(ofa)}


def test_strategy_none_writes_no_mig_strategy_label() -> None:
    assert labels(None, "none") == {**OPERATOR, **COMMON}
    assert labels("all-1g.5gb", "none") == {**OPERATOR, **COMMON, "nvidia.com/gpu.replicas": "0"}


def test_strategy_single_one_profile() -> None:
    got = labels("all-1g.5gb", "single")
    assert got == {**OPERATOR, **COMMON, "nvidia.com/mig.strategy": "single",
                   **mig_type("nvidia.com/gpu", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 56, 4864,
                              14, 1, 1, (1, 0, 0, 0, 0))}


def test_strategy_single_refuses_mixed_profiles_as_gfd_does() -> None:
    got = labels("all-balanced", "single")
    assert got == {**OPERATOR, **COMMON, "nvidia.com/mig.strategy": "single",
                   "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-INVALID",
                   "nvidia.com/gpu.count": "0", "nvidia.com/gpu.replicas": "0",
                   "nvidia.com/gpu.memory": "0"}
    assert labels(None, "single") == {**OPERATOR, **COMMON, "nvidia.com/mig.strategy": "single"}


def test_strategy_mixed_per_profile_labels_with_driver_memory() -> None:
    got = labels("all-balanced", "mixed")
    product = "NVIDIA-A100-SXM4-40GB-MIG-"
    assert got == {
        **OPERATOR, **COMMON, "nvidia.com/gpu.replicas": "0", "nvidia.com/mig.strategy": "mixed",
        **mig_type("nvidia.com/mig-1g.5gb", product + "1g.5gb", 16, 4864, 14, 1, 1,
                   (1, 0, 0, 0, 0)),
        **mig_type("nvidia.com/mig-2g.10gb", product + "2g.10gb", 8, 9984, 28, 2, 2,
                   (2, 1, 0, 0, 0)),
        **mig_type("nvidia.com/mig-3g.20gb", product + "3g.20gb", 8, 20096, 42, 3, 3,
                   (3, 2, 0, 0, 0)),
    }


def test_plus_me_written_with_a_dot_and_every_label_is_valid() -> None:
    got = labels("all-1g.5gb.me", "mixed")
    assert got["nvidia.com/mig-1g.5gb.me.count"] == "8"
    assert got["nvidia.com/mig-1g.5gb.me.product"] == "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb.me"
    assert labels("all-7g.40gb", "mixed")["nvidia.com/mig-7g.40gb.memory"] == "40448"
    name = re.compile(r"^[a-z0-9.-]+/[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
    value = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
    assert all(name.match(k) and value.match(v) for k, v in got.items())
