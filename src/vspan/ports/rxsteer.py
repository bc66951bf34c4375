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

The cost: a frame the switch's own send produces (an echo reply made inside
that send, an ACK-clocked segment) no longer reaches the ring inside the send
but after a hop to another CPU: a ping through the switch takes longer. So the
default mode ``auto`` steers only while the port receives in bulk (at least
:data:`ON_RATE` bytes/s, checked once a second; off again below
:data:`OFF_RATE`); ``always`` steers while the port is open; ``never`` leaves
the queues alone.

Rules (:func:`plan`): only veth interfaces (a NIC's queues keep order); only
when every queue's mask is empty (a mask someone set is left as found); not on a
one-CPU machine; not when the kernel has no RPS. :class:`RxSteering` writes the
masks and puts the old ones back when steering stops or the port closes (where
they still hold what it wrote). Control path only.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vspan.ports import ethtool
from vspan.ports.netdev import SYS_CLASS_NET

VETH = "veth"
MODES = ("auto", "always", "never")
#: ``auto`` steers from this receive rate (bytes/s: ~270 Mbit/s) ...
ON_RATE = 32 << 20
#: ... until the rate falls below this one
OFF_RATE = 8 << 20


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


def wanted(active: bool, rate: float, on_rate: float = ON_RATE,
           off_rate: float = OFF_RATE) -> bool:
    """``auto``: whether to steer at ``rate`` bytes/s (hysteresis: on from ``on_rate``,
    off below ``off_rate``)."""
    return rate >= off_rate if active else rate >= on_rate


def plan(*, enabled: bool, driver: str | None, masks: Sequence[str], cpu_count: int,
         switch_cpus: Iterable[int]) -> SteeringPlan:
    """Decide the steering of one interface.

    ``driver`` is the interface's driver (None: unknown), ``masks`` the current
    ``rps_cpus`` of each receive queue (empty: the kernel has no RPS),
    ``switch_cpus`` the CPUs the switch process may run on.
    """
    if not enabled:
        return SteeringPlan(frozenset(), "off (rx_steering: never)")
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

    ``RxSteering(mode)``; :meth:`attach` when the port binds to the interface
    (again after it was re-created), :meth:`update` once a second with the port's
    received bytes (mode ``auto``), :meth:`restore` when the port closes.
    :attr:`reason` says what is done and why (``vspan show ports --json``).
    """

    def __init__(self, mode: str = "auto", sysfs: str = SYS_CLASS_NET,
                 on_rate: float = ON_RATE, off_rate: float = OFF_RATE) -> None:
        if mode not in MODES:
            raise ValueError(f"rx_steering must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self._sysfs = sysfs
        self._on_rate = on_rate
        self._off_rate = off_rate
        self._plan = SteeringPlan(frozenset(), "not attached")
        self._paths: list[str] = []
        self._found: list[str] = []
        self._written: dict[str, tuple[str, str]] = {}  # path -> (old mask, written mask)
        self._last: tuple[int, float] | None = None  # (rx bytes, time) at the last update
        self.reason = "not attached"

    @property
    def active(self) -> bool:
        """Whether masks written by this object are in place."""
        return bool(self._written)

    def _queues(self, ifname: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self._sysfs, glob.escape(ifname), "queues",
                                             "rx-*", "rps_cpus")))

    def attach(self, ifname: str, switch_cpus: Iterable[int] | None = None,
               driver: str | None = None) -> SteeringPlan:
        """Decide for ``ifname`` (its driver asked when not given); steer now with ``always``."""
        self.restore()
        self._written.clear()  # a re-created device starts with fresh (empty) masks
        self._last = None
        if self.mode == "never":
            return self._decided(plan(enabled=False, driver=None, masks=(), cpu_count=0,
                                      switch_cpus=()), "")
        if driver is None:
            try:
                driver = ethtool.driver(ifname)
            except OSError:
                driver = None
        self._paths = self._queues(ifname) if driver == VETH else []
        self._found = [_read(p) or "?" for p in self._paths]
        cpus = set(switch_cpus) if switch_cpus is not None else os.sched_getaffinity(0)
        decided = plan(enabled=True, driver=driver, masks=self._found,
                       cpu_count=os.cpu_count() or 1, switch_cpus=cpus)
        self._decided(decided, "auto, idle: " if self.mode == "auto" else "")
        if decided.steer and self.mode == "always":
            self._engage()
        return decided

    def _decided(self, decided: SteeringPlan, prefix: str) -> SteeringPlan:
        self._plan = decided
        self.reason = prefix + decided.reason if decided.steer else decided.reason
        return decided

    def update(self, rx_bytes: int, now: float) -> None:
        """Mode ``auto``: steer while the port receives in bulk (see :func:`wanted`)."""
        last, self._last = self._last, (rx_bytes, now)
        if self.mode != "auto" or not self._plan.steer or last is None or now <= last[1]:
            return
        rate = (rx_bytes - last[0]) / (now - last[1])
        want = wanted(self.active, rate, self._on_rate, self._off_rate)
        if want and not self.active:
            self._engage()
            if self.active:
                self.reason = f"auto, bulk: {self._plan.reason}"
        elif not want and self.active:
            self.restore()
            self.reason = f"auto, idle: {self._plan.reason}"

    def _engage(self) -> None:
        text = format_mask(self._plan.cpus)
        for path, old in zip(self._paths, self._found, strict=True):
            if not _write(path, text):
                self.restore()
                self._plan = SteeringPlan(frozenset(), "rps_cpus not writable: left alone")
                self.reason = self._plan.reason
                return
            self._written[path] = (old, _read(path) or text)

    def restore(self) -> None:
        """Put back the masks found, where they still hold what this object wrote."""
        written, self._written = self._written, {}
        for path, (old, mine) in written.items():
            now = _read(path)
            try:
                if now is not None and parse_mask(now) == parse_mask(mine):
                    _write(path, old)
            except ValueError:
                continue
