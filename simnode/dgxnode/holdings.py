"""Devices a real kubelet has handed out, held on the node (kind mode).

Under a real kubelet the node never sees ``Allocate`` decided: the kubelet
picks the devices and runs the containers. It says which devices each pod
holds through its PodResources API, which NVIDIA's dcgm-exporter reads to put
pod names on metrics. :class:`KubeletHoldings` asks it (through any
:class:`AssignedDevices`, wired by ``dgxsim``) periodically and before every
MIG change, and records the answer in the node's own allocation records
(:meth:`dgxnode.node.SimNode.hold_for_kubelet`). From there on nothing is
special: a MIG change that would destroy a held device is blocked and names
the pod, as for a pod of the kubelet-less node agent, and ``nvidia-smi`` in a
container refuses to destroy another pod's instance.

A kubelet that cannot be reached (no socket: no kubelet on this machine, or
its directory is not mounted) is said once, and again only after it was seen;
what the kubelet said last stays recorded, since not knowing is not a release.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dgxnode.node import SimNode

log = logging.getLogger(__name__)
POLL_S = 5.0
"""How often the kubelet is asked between MIG changes (``List`` is answered from
the kubelet's memory, so this is cheap; dcgm-exporter asks on every scrape)."""


class AssignedDevices(Protocol):
    """A kubelet's answer: which of this node's GPU devices it assigned to whom."""

    @property
    def where(self) -> str:
        """Where the kubelet is asked (for messages)."""
        ...

    async def assigned(self) -> Mapping[str, str]:
        """Device ID -> ``namespace/pod/container`` for every GPU and MIG device the
        kubelet has assigned; raises :class:`ConnectionError` when it cannot be asked."""
        ...


@dataclass
class KubeletHoldings:
    """Keeps the node's allocation records in step with a real kubelet's assignments."""

    sim: SimNode
    source: AssignedDevices
    interval_s: float = POLL_S
    seen: bool | None = None
    """Whether the kubelet answered the last question (None: not asked yet)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _foreign: tuple[str, ...] = ()
    """Devices last reported as listed by the kubelet but allocated to another owner."""

    async def refresh(self) -> bool:
        """Ask the kubelet now and record its answer; False if it could not be asked."""
        async with self._lock:
            try:
                assigned = await self.source.assigned()
            except ConnectionError as err:
                if self.seen is not False:
                    log.warning("%s: cannot see the kubelet's pod resources (%s); devices the "
                                "kubelet assigns are unknown to the node until it answers",
                                self.sim.name, err)
                self.seen = False
                return False
            if self.seen is not True:
                log.info("%s: reading the kubelet's pod resources from %s", self.sim.name,
                         self.source.where)
            self.seen = True
            change = await asyncio.to_thread(self.sim.hold_for_kubelet, assigned)
        if change.added or change.released:
            log.info("%s: %s", self.sim.name, change.describe())
        if change.foreign and change.foreign != self._foreign:
            log.warning("%s: the kubelet lists %s, which the node records as allocated to "
                        "another owner", self.sim.name, ", ".join(change.foreign))
        self._foreign = change.foreign
        return True

    async def run(self) -> None:
        """Ask every :attr:`interval_s` until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("%s: recording the kubelet's pod resources failed; retrying",
                              self.sim.name)
            await asyncio.sleep(self.interval_s)
