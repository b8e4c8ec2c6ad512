"""NVIDIA's published mig-parted configs, unchanged, on a DGX A100-40GB node.

The GPU Operator's default ConfigMap and mig-parted's systemd default config
name profiles of every GPU NVIDIA makes (``1g.24gb+gfx``, ``+me.all``,
``-me``). Both must parse; every config an A100-40GB can take must apply, and
every other config must fail on this node alone, naming the missing profile.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dgxnode.node import SimNode
from gpumodel.errors import GpuModelError
from gpumodel.migexport import asserts, export_spec, render_yaml
from gpumodel.migparted import MigPartedConfig, parse_mig_parted_config

GOLDEN = Path(__file__).parent / "nvidia"
A100_40GB = {"1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"}


def operator_configmap() -> MigPartedConfig:
    cm = yaml.safe_load((GOLDEN / "gpu-operator-0400_configmap.yaml").read_text())
    return parse_mig_parted_config(cm["data"]["config.yaml"], "default-mig-parted-config")


def systemd_default() -> MigPartedConfig:
    text = (GOLDEN / "mig-parted-config-default.yaml").read_bytes()
    return parse_mig_parted_config(text, "config-default.yaml")


def fits_a100_40gb(config: MigPartedConfig, name: str) -> bool:
    entries = config.targets(name, [(0, "0x20B010DE")]).values()
    return all(set(t.devices) <= A100_40GB for t in entries)


@pytest.mark.parametrize("load", [operator_configmap, systemd_default])
def test_every_config_applies_or_fails_alone(load: object) -> None:
    config = load()  # type: ignore[operator]
    node = SimNode.create("dgx-0")
    applied, refused = [], []
    for name in config.names():
        if fits_a100_40gb(config, name):
            node.apply(name, config)
            assert node.state.mig_config_state == "success", name
            assert asserts(config, name, node.current_gpus()), name
            applied.append(name)
            continue
        with pytest.raises(GpuModelError) as err:
            node.apply(name, config)
        missing = next(p for t in config.targets(name, [(0, "0x20B010DE")]).values()
                       for p in t.devices if p not in A100_40GB)
        assert missing in str(err.value) and "GPU 0" in str(err.value), name
        refused.append(name)
    assert {"all-disabled", "all-enabled", "all-1g.5gb", "all-1g.5gb.me", "all-2g.10gb",
            "all-3g.20gb", "all-4g.20gb", "all-7g.40gb", "all-1g.10gb",
            "all-balanced"} <= set(applied)
    assert {"all-1g.24gb.gfx", "all-1g.24gb.me.all", "all-1g.24gb-me"} <= set(refused)


def test_plus_me_is_advertised_under_nvidias_resource_name() -> None:
    node = SimNode.create("dgx-0")
    node.apply("all-1g.5gb.me", operator_configmap())
    assert node.inventory().resources() == {"nvidia.com/mig-1g.5gb.me": 8}


def test_export_round_trips_through_apply() -> None:
    node = SimNode.create("dgx-0")
    node.apply("all-balanced", operator_configmap())
    node.set_mig_mode(7, False)
    node.reset_gpu(7)
    exported = render_yaml(export_spec(node.current_gpus()))
    assert exported == (
        "version: v1\nmig-configs:\n  current:\n"
        "  - devices: [0, 1, 2, 3, 4, 5, 6]\n    mig-enabled: true\n    mig-devices:\n"
        "      1g.5gb: 2\n      2g.10gb: 1\n      3g.20gb: 1\n"
        "  - devices: [7]\n    mig-enabled: false\n    mig-devices: {}\n")
    fresh = SimNode.create("dgx-1")
    config = parse_mig_parted_config(exported, "export")
    fresh.apply("current", config)
    assert fresh.current_gpus() == node.current_gpus()
    assert asserts(config, "current", fresh.current_gpus())
    assert not asserts(operator_configmap(), "all-balanced", fresh.current_gpus())
