"""Keep a veth port's received frames in the order they were sent (RPS steering).

Why: a veth hands each frame to the receiving side on the CPU that sent it
(``netif_rx``: that CPU's backlog queue). A TCP sender behind a switch port
transmits from two CPUs: from its application's CPU, and from the CPU where the
switch delivered the ACKs (the ACK-clocked sends run in that softirq). Two CPUs'
backlogs reach the switch's AF_PACKET ring in parallel, so a segment sent
earlier can arrive after a later one; the receiver sees it out of order, the
sender fast-retransmits (spuriously) and shrinks its window. GRO on the switch
end does not help: veth takes the ordered NAPI path only for frames of a
sender without TSO. Measured and explained in docs/datapath.md ("TCP order on
veth ports").

What: Receive Packet Steering on the switch end's receive queues
(``/sys/class/net/<if>/queues/rx-*/rps_cpus``) puts every frame of one flow
into ONE CPU's backlog, whoever sent it: the flow stays in order. The CPUs
chosen are the ones the switch process may not run on (so the copies into the
ring do not take the switch's CPU); when the switch may run everywhere, all
CPUs (the flow hash still keeps each flow on one of them).

Rules (:func:`plan`): only veth interfaces (a NIC's queues keep order); only
when every queue's mask is empty (a mask someone set is left as found); not on a
one-CPU machine; not when the kernel has no RPS; not when the port is
configured with ``rx_steering: false``. :class:`RxSteering` writes the masks
and puts the old ones back when the port closes (where they still hold what it
wrote). Control path only.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vspan.ports import ethtool
from vspan.ports.netdev import SYS_CLASS_NET

VETH = "veth"


@dataclass(frozen=True)
class SteeringPlan:
    """What to do with one interface's receive queues."""

    cpus: frozenset[int]  # steer to these CPUs; empty: leave the queues alone
    reason: str  # why, in words (``vspan show ports``: ``rx_steering``)

    @property
    def steer(self) -> bool:
        """Whether masks are to be written."""
        return bool(self.cpus)


def parse_mask(text: str) -> int:
    """A sysfs CPU mask (``"3"``, ``"00000000,00000001"``) as an integer; ValueError if bad."""
    digits = text.strip().replace(",", "")
    if not digits:
        raise ValueError("empty CPU mask")
    return int(digits, 16)


def format_mask(cpus: Iterable[int]) -> str:
    """CPUs as a sysfs CPU mask: 32-bit hex groups joined by commas, highest first."""
    bits = 0
    for cpu in cpus:
        if cpu < 0:
            raise ValueError(f"bad CPU number {cpu}")
        bits |= 1 << cpu
    groups = []
    while True:
        groups.append(f"{bits & 0xFFFFFFFF:08x}")
        bits >>= 32
        if not bits:
            break
    return ",".join(reversed(groups))


def plan(*, enabled: bool, driver: str | None, masks: Sequence[str], cpu_count: int,
         switch_cpus: Iterable[int]) -> SteeringPlan:
    """Decide the steering of one interface.

    ``driver`` is the interface's driver (None: unknown), ``masks`` the current
    ``rps_cpus`` of each receive queue (empty: the kernel has no RPS),
    ``switch_cpus`` the CPUs the switch process may run on.
    """
    if not enabled:
        return SteeringPlan(frozenset(), "off (rx_steering: false)")
    if driver != VETH:
        return SteeringPlan(frozenset(), f"not a veth ({driver or 'driver unknown'}): "
                                         "its queues keep order")
    if not masks:
        return SteeringPlan(frozenset(), "kernel without RPS (no rps_cpus)")
    try:
        if any(parse_mask(m) for m in masks):
            return SteeringPlan(frozenset(), "rps_cpus already set: left as found")
    except ValueError:
        return SteeringPlan(frozenset(), "rps_cpus unreadable: left as found")
    if cpu_count < 2:
        return SteeringPlan(frozenset(), "one CPU: frames cannot be reordered")
    every = frozenset(range(cpu_count))
    others = every - frozenset(switch_cpus)
    if others:
        return SteeringPlan(others, "rps to CPUs " + _cpu_list(others) + " (not the switch's)")
    return SteeringPlan(every, "rps to all CPUs (one CPU per flow)")


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(text + "\n")
    except OSError:
        return False
    return True


class RxSteering:
    """Steers one interface's receive queues as :func:`plan` says and undoes it.

    ``RxSteering(enabled)``; :meth:`apply` on attach (again after the interface
    was re-created), :meth:`restore` when the port closes. :attr:`reason` says
    what was done and why (shown in the port's info).
    """

    def __init__(self, enabled: bool = True, sysfs: str = SYS_CLASS_NET) -> None:
        self.enabled = enabled
        self._sysfs = sysfs
        self._written: dict[str, tuple[str, str]] = {}  # path -> (old mask, written mask)
        self.reason = "not applied yet"

    def _queues(self, ifname: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self._sysfs, glob.escape(ifname), "queues",
                                             "rx-*", "rps_cpus")))

    def apply(self, ifname: str, switch_cpus: Iterable[int] | None = None) -> SteeringPlan:
        """Plan for ``ifname`` and write the masks; returns the plan (also in :attr:`reason`)."""
        self._written.clear()  # a re-created device starts with fresh (empty) masks
        if not self.enabled:
            return self._plan(plan(enabled=False, driver=None, masks=(), cpu_count=0,
                                   switch_cpus=()))
        try:
            drv: str | None = ethtool.driver(ifname)
        except OSError:
            drv = None
        paths = self._queues(ifname) if drv == VETH else []
        masks = [_read(p) for p in paths]
        cpus = set(switch_cpus) if switch_cpus is not None else os.sched_getaffinity(0)
        decided = plan(enabled=True, driver=drv,
                       masks=[m if m is not None else "?" for m in masks],
                       cpu_count=os.cpu_count() or 1, switch_cpus=cpus)
        if not decided.steer:
            return self._plan(decided)
        text = format_mask(decided.cpus)
        for path, old in zip(paths, masks, strict=True):
            if not _write(path, text):
                self.restore()
                return self._plan(SteeringPlan(frozenset(), "rps_cpus not writable: left alone"))
            self._written[path] = (old or "0", _read(path) or text)
        return self._plan(decided)

    def _plan(self, decided: SteeringPlan) -> SteeringPlan:
        self.reason = decided.reason
        return decided

    def restore(self) -> None:
        """Put back the masks found, where they still hold what :meth:`apply` wrote."""
        written, self._written = self._written, {}
        for path, (old, mine) in written.items():
            now = _read(path)
            try:
                if now is not None and parse_mask(now) == parse_mask(mine):
                    _write(path, old)
            except ValueError:
                continue
