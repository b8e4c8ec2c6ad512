"""The mig-parted config format: strict decoding, the default named configs, targets."""

from __future__ import annotations

import pytest

from gpumodel.errors import MigConfigError
from gpumodel.migparted import default_mig_configs, parse_mig_parted_config

A100_40 = [(i, "0x20B010DE") for i in range(8)]
A100_80 = [(i, "0x20B210DE") for i in range(8)]

DESIGN_NAMES = {"all-disabled", "all-enabled", "all-1g.5gb", "all-1g.5gb.me", "all-1g.10gb",
                "all-2g.10gb", "all-3g.20gb", "all-4g.20gb", "all-7g.40gb", "all-balanced",
                "custom-config"}


def test_defaults_hold_every_named_config_of_the_design() -> None:
    assert set(default_mig_configs().names()) >= DESIGN_NAMES


def test_balanced_per_gpu_family() -> None:
    config = default_mig_configs()
    assert config.targets("all-balanced", A100_40)[5].devices == {
        "1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert config.targets("all-balanced", A100_80)[5].devices == {
        "1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}


def test_device_filter_leaves_other_gpus_alone() -> None:
    assert default_mig_configs().targets("all-1g.5gb", A100_80) == {}
    mixed = [(0, "0x20B010DE"), (1, "0x20b210de")]
    assert set(default_mig_configs().targets("all-balanced", mixed)) == {0, 1}


def test_custom_config_indices() -> None:
    targets = default_mig_configs().targets("custom-config", A100_40)
    assert [targets[i].mig_enabled for i in range(8)] == [False] * 4 + [True] * 4
    assert targets[6].devices == {"3g.20gb": 2}


GOOD = """
version: v1
mig-configs:
  mine:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices: {"3g.20gb": 2, "1g.5gb": 0}
    - device-filter: "0x20B010DE"
      devices: [2]
      mig-enabled: false
"""


def test_parse_and_zero_counts_dropped() -> None:
    config = parse_mig_parted_config(GOOD)
    targets = config.targets("mine", A100_40)
    assert targets[0].devices == {"3g.20gb": 2}
    assert not targets[2].mig_enabled
    assert 3 not in targets


@pytest.mark.parametrize(("text", "message"), [
    ("mig-configs: {a: [{devices: all, mig-enabled: false}]}", "missing 'version'"),
    ("version: v2\nmig-configs: {a: [{devices: all, mig-enabled: false}]}", "unknown version"),
    ("version: v1\nmig-configs: {}", "at least one entry"),
    ("version: v1\nmig-configs: {a: []}", "at least one entry"),
    ("version: v1\nextra: 1\nmig-configs: {a: [{devices: all, mig-enabled: false}]}",
     "extra"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: false, x: 1}]}",
     r"line 2: mig-configs\.a\[0\]\.x: Extra"),
    ("version: v1\nmig-configs: {a: [{devices: some, mig-enabled: false}]}", "devices"),
    ("version: v1\nmig-configs: {a: [{mig-enabled: false}]}", "devices"),
    ("version: v1\nmig-configs: {a: [{devices: all}]}", "mig-enabled"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true}]}",
     "missing required field 'mig-devices'"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: false, "
     "mig-devices: {1g.5gb: 1}}]}", "MIG devices included"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, "
     "mig-devices: {3g.2x: 1}}]}", "3g.2x"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, "
     "mig-devices: {1g.5gb: -1}}]}", "negative"),
    ("version: [", "not valid YAML"),
    ("- 1\n- 2", "expected a mapping"),
])
def test_strict_rejections(text: str, message: str) -> None:
    with pytest.raises(MigConfigError, match=message.replace("(", r"\(")):
        parse_mig_parted_config(text, "f.yaml")


def test_target_errors() -> None:
    config = parse_mig_parted_config(GOOD)
    with pytest.raises(MigConfigError, match="no MIG config named 'nope'"):
        config.targets("nope", A100_40)
    with pytest.raises(MigConfigError, match="no GPU with index 1"):
        config.targets("mine", [(0, "0x20B010DE")])
    twice = parse_mig_parted_config(
        "version: v1\nmig-configs: {a: [{devices: all, mig-enabled: false}, "
        "{devices: [3], mig-enabled: false}]}")
    with pytest.raises(MigConfigError, match="GPU 3 is selected by entries 1 and 2"):
        twice.targets("a", A100_40)
