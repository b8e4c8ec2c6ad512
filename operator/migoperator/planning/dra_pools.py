"""What a DRA node still has free, from its ResourceSlices and the allocated ResourceClaims.

A node that publishes its GPUs through DRA (driver ``gpu.nvidia.com``, one pool
per node) has no ``nvidia.com/*`` allocatable: kube-scheduler allocates devices
from the node's ResourceSlices to ResourceClaims. The job placer counts the
same way, from the same objects:

- a device is *taken* when a claim's ``status.allocation.devices.results``
  names it (driver, pool, device); it is *usable* when it is not taken and
  carries no ``NoSchedule``/``NoExecute`` taint;
- in dynamic mode (partitionable devices) each device consumes counters of its
  GPU's counter set; what taken devices consume is gone, and a usable device
  is free only while its consumption still fits. The published counters are
  the MIG placement rules (``gpumodel.dra``, proven exact against the MIG
  engine), so no rule is repeated here: a ``1g.5gb`` is free exactly when
  some 1g.5gb slot's memory slices and engines are all unclaimed, and a whole
  GPU only while nothing on it is claimed.

How many devices of one kind a node can still give is found greedily, in the
published order (per GPU, slots by start). For one kind that is the most: the
starts of one MIG profile are aligned, so its slots never overlap each other
and each taken slot costs exactly one; whole GPUs have a counter set each.

Kinds are the keys of :func:`dra_key`: whole GPUs (the ``gpu.nvidia.com``
class) or one MIG profile (``mig.nvidia.com/<profile>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpumodel.vocabulary import DRA_DRIVER, GPU_DEVICE_CLASS, MIG_DEVICE_CLASS

JSON = dict[str, Any]
Counters = tuple[tuple[str, int], ...]
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def dra_key(profile: str | None) -> str:
    """The placer's name for a replica's DRA device: a whole GPU or one MIG profile."""
    return GPU_DEVICE_CLASS if profile is None else f"{MIG_DEVICE_CLASS}/{profile}"


@dataclass(frozen=True, slots=True)
class DraDevice:
    name: str
    key: str
    """:func:`dra_key` of the device."""
    consumes: Counters = ()
    """``(<counter set>/<counter>, amount)`` it takes while allocated."""


@dataclass(frozen=True, slots=True)
class DraPool:
    """One node's pool: its usable devices and the counters left to them."""

    node: str
    devices: tuple[DraDevice, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)

    def _fits(self, device: DraDevice, left: Mapping[str, int]) -> bool:
        return all(left.get(c, 0) >= n for c, n in device.consumes)

    def _pick(self, key: str, limit: int | None) -> tuple[list[DraDevice], dict[str, int]]:
        left, picked = dict(self.counters), list[DraDevice]()
        for device in self.devices:
            if limit is not None and len(picked) >= limit:
                break
            if device.key == key and self._fits(device, left):
                for counter, amount in device.consumes:
                    left[counter] -= amount
                picked.append(device)
        return picked, left

    def available(self, key: str) -> int:
        """How many devices of ``key`` the node can still give (module doc)."""
        return len(self._pick(key, None)[0])

    def take(self, key: str, count: int) -> DraPool:
        """The pool after ``count`` devices of ``key`` went to a replica (all that are
        free, where fewer are: a promise made before a device failed)."""
        picked, left = self._pick(key, count)
        names = {d.name for d in picked}
        return DraPool(self.node, tuple(d for d in self.devices if d.name not in names), left)

    def free(self) -> dict[str, int]:
        """Every kind among the usable devices, with how many are free."""
        return {key: self.available(key) for key in dict.fromkeys(d.key for d in self.devices)}


def _amount(quantity: object) -> int | None:
    """A counter value as our driver publishes it (a plain integer); None otherwise."""
    value = quantity.get("value") if isinstance(quantity, dict) else quantity
    try:
        return int(str(value))
    except ValueError:
        return None


def _attribute(device: JSON, name: str) -> str | None:
    value = (device.get("attributes") or {}).get(name) or {}
    text = value.get("string") if isinstance(value, dict) else None
    return str(text) if text is not None else None


def _key(device: JSON) -> str | None:
    kind = _attribute(device, "type")
    if kind == "gpu":
        return dra_key(None)
    profile = _attribute(device, "profile")
    return dra_key(profile) if kind == "mig" and profile else None


def _consumption(device: JSON) -> Counters | None:
    used: list[tuple[str, int]] = []
    for entry in device.get("consumesCounters") or []:
        for counter, quantity in (entry.get("counters") or {}).items():
            amount = _amount(quantity)
            if amount is None:
                return None
            used.append((f"{entry.get('counterSet')}/{counter}", amount))
    return tuple(used)


def allocated_devices(claims: Iterable[JSON]) -> set[tuple[str, str]]:
    """``(pool, device)`` of every ``gpu.nvidia.com`` device some claim holds."""
    taken: set[tuple[str, str]] = set()
    for claim in claims:
        allocation = (claim.get("status") or {}).get("allocation") or {}
        for result in (allocation.get("devices") or {}).get("results") or []:
            if result.get("driver") == DRA_DRIVER:
                taken.add((str(result.get("pool")), str(result.get("device"))))
    return taken


def _current(slices: Iterable[JSON]) -> dict[str, list[JSON]]:
    """The slices of each node's pool at its newest generation (older ones are being
    replaced), by node."""
    newest: dict[str, int] = {}
    ours = []
    for item in slices:
        spec = item.get("spec") or {}
        if spec.get("driver") != DRA_DRIVER or not spec.get("nodeName"):
            continue
        generation = int((spec.get("pool") or {}).get("generation") or 0)
        ours.append((str(spec["nodeName"]), generation, spec))
        newest[ours[-1][0]] = max(newest.get(ours[-1][0], 0), generation)
    by_node: dict[str, list[JSON]] = {}
    for node, generation, spec in ours:
        if generation == newest[node]:
            by_node.setdefault(node, []).append(spec)
    return by_node


def _pool(node: str, specs: list[JSON], taken: set[tuple[str, str]]) -> DraPool:
    counters: dict[str, int] = {}
    for spec in specs:
        for counter_set in spec.get("sharedCounters") or []:
            for counter, quantity in (counter_set.get("counters") or {}).items():
                counters[f"{counter_set.get('name')}/{counter}"] = _amount(quantity) or 0
    devices: list[DraDevice] = []
    for spec in specs:
        pool = str((spec.get("pool") or {}).get("name") or node)
        for device in spec.get("devices") or []:
            consumes = _consumption(device)
            if consumes is None:
                continue
            if (pool, device.get("name")) in taken:
                for counter, amount in consumes:
                    counters[counter] = counters.get(counter, 0) - amount
                continue
            key = _key(device)
            blocked = any(t.get("effect") in BLOCKING_EFFECTS for t in device.get("taints") or [])
            if key is not None and not blocked:
                devices.append(DraDevice(str(device["name"]), key, consumes))
    return DraPool(node, tuple(devices), counters)


def dra_pools(slices: Iterable[JSON], claims: Iterable[JSON]) -> dict[str, DraPool]:
    """Each DRA node's pool (module doc), by node name."""
    taken = allocated_devices(claims)
    return {node: _pool(node, specs, taken) for node, specs in _current(slices).items()}
