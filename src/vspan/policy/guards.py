"""Port guards: checks on frames a port's VM sends into the switch.

* **MAC address spoofing off** — only the port's assigned MACs may appear as
  source (``mac-spoof``).
* **DHCP guard** — DHCP server messages from the VM are dropped: UDP
  67 -> 68 (DHCPv4 OFFER/ACK/NAK) and UDP 547 -> 546 (DHCPv6 server to
  client) (``dhcp-guard``).
* **Router guard** — ICMPv6 router advertisements (134) and redirects (137),
  ICMPv4 redirects (5) are dropped (``router-guard``). A first fragment that
  does not carry the ICMPv6 header cannot be parsed and is already dropped as
  malformed by the flow-key parser; later fragments are useless without it.
* **Storm limit** — a token bucket per traffic class (broadcast, multicast,
  unknown unicast) in frames per second (``storm-limit``).

Guards apply to direction ``out`` only (frames the port sends).
:meth:`PortGuards.check` depends only on FlowKey fields (cacheable); the
storm limiter is the per-frame part (:meth:`StormLimiter.allow`), with an
injected ``now``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from vspan.datapath.flowkey import (
    ETH_P_IPV4,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_UDP,
    FlowKey,
)
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import NULL_TRACER, Tracer
from vspan.policy.common import mac_str

BROADCAST = b"\xff" * 6
ICMPV6_RA = 134
ICMPV6_REDIRECT = 137
ICMP_REDIRECT = 5
_ONE = 1.0 - 1e-9  # a token, tolerant of float drift in clock differences


class GuardVerdict(NamedTuple):
    """Outcome of the static guards."""

    ok: bool
    reason: DropReason | None = None
    detail: str = ""


GUARD_OK = GuardVerdict(True)


class StormClass(enum.StrEnum):
    """Traffic classes the storm limit counts."""

    BROADCAST = "broadcast"
    MULTICAST = "multicast"
    UNKNOWN_UNICAST = "unknown-unicast"


def storm_class(key: FlowKey, known_unicast: bool) -> StormClass | None:
    """The class of a frame, or ``None`` for unicast to a known destination."""
    if key.dst == BROADCAST:
        return StormClass.BROADCAST
    if key.dst[0] & 1:
        return StormClass.MULTICAST
    return None if known_unicast else StormClass.UNKNOWN_UNICAST


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored."""

    __slots__ = ("burst", "dropped", "last", "passed", "rate", "tokens")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("a storm limit rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.tokens = self.burst
        self.last: float | None = None
        self.passed = 0
        self.dropped = 0

    def take(self, now: float, commit: bool = True) -> bool:
        """Spend one token if there is one; ``commit`` False only says whether there is
        (a peek: the same arithmetic, the bucket unchanged)."""
        tokens = self.tokens
        if self.last is not None and now > self.last:
            tokens = min(self.burst, tokens + (now - self.last) * self.rate)
        ok = tokens >= _ONE
        if commit:
            if self.last is None or now > self.last:
                self.last = now
            if ok:
                self.tokens = tokens - 1.0
                self.passed += 1
            else:
                self.tokens = tokens
                self.dropped += 1
        return ok


class StormLimiter:
    """Per-class token buckets of one port."""

    __slots__ = ("buckets",)

    def __init__(self, limits: dict[StormClass, float], burst: dict[StormClass, float] | None
                 = None) -> None:
        b = burst or {}
        self.buckets = {cls: TokenBucket(rate, b.get(cls)) for cls, rate in limits.items()}

    def allow(self, cls: StormClass | None, now: float, commit: bool = True) -> bool:
        """Per-frame: whether a frame of ``cls`` may pass now (unlimited classes always may);
        ``commit`` False peeks without spending a token."""
        if cls is None:
            return True
        bucket = self.buckets.get(cls)
        return True if bucket is None else bucket.take(now, commit)

    def counters(self) -> dict[str, dict[str, int]]:
        """Passed/dropped per limited class."""
        return {str(c): {"passed": b.passed, "dropped": b.dropped}
                for c, b in self.buckets.items()}


@dataclass(frozen=True, slots=True)
class PortGuards:
    """Static guards of one port."""

    allowed_macs: frozenset[bytes] | None = None  # None = MAC spoofing allowed
    dhcp_guard: bool = False
    router_guard: bool = False

    @classmethod
    def build(cls, mac_spoofing: bool = True, macs: Iterable[bytes] = (),
              dhcp_guard: bool = False, router_guard: bool = False) -> PortGuards:
        """From the Hyper-V style switches (``mac_spoofing`` True = allowed)."""
        allowed = None if mac_spoofing else frozenset(macs)
        return cls(allowed, dhcp_guard, router_guard)

    @property
    def active(self) -> bool:
        """Whether any static guard is on."""
        return self.allowed_macs is not None or self.dhcp_guard or self.router_guard

    def check(self, key: FlowKey, tracer: Tracer = NULL_TRACER) -> GuardVerdict:
        """Judge a frame the port sent (cacheable per FlowKey)."""
        v = self._check(key)
        if tracer.enabled:
            if v.ok:
                on = [n for n, f in (("mac-spoofing", self.allowed_macs is not None),
                                     ("dhcp", self.dhcp_guard), ("router", self.router_guard))
                      if f]
                tracer.report("guards", f"passes guards ({', '.join(on) or 'none active'})")
            else:
                tracer.report("guards", f"{v.detail} -> drop ({v.reason})",
                              reason=str(v.reason))
        return v

    def _check(self, key: FlowKey) -> GuardVerdict:
        if self.allowed_macs is not None and key.src not in self.allowed_macs:
            allowed = ", ".join(sorted(mac_str(m) for m in self.allowed_macs)) or "none"
            return GuardVerdict(False, DropReason.MAC_SPOOF,
                                f"source MAC {mac_str(key.src)} is not assigned to the port "
                                f"(allowed: {allowed})")
        if not key.l4_off:
            return GUARD_OK
        et, proto = key.eth_type, key.proto
        if self.dhcp_guard and proto == IPPROTO_UDP:
            if et == ETH_P_IPV4 and key.sport == 67 and key.dport == 68:
                return GuardVerdict(False, DropReason.DHCP_GUARD,
                                    "DHCPv4 server message (UDP 67 -> 68) from a VM")
            if et == ETH_P_IPV6 and key.sport == 547 and key.dport == 546:
                return GuardVerdict(False, DropReason.DHCP_GUARD,
                                    "DHCPv6 server message (UDP 547 -> 546) from a VM")
        if self.router_guard:
            if et == ETH_P_IPV6 and proto == IPPROTO_ICMPV6:
                if key.sport == ICMPV6_RA:
                    return GuardVerdict(False, DropReason.ROUTER_GUARD,
                                        "ICMPv6 router advertisement from a VM")
                if key.sport == ICMPV6_REDIRECT:
                    return GuardVerdict(False, DropReason.ROUTER_GUARD,
                                        "ICMPv6 redirect from a VM")
            if et == ETH_P_IPV4 and proto == IPPROTO_ICMP and key.sport == ICMP_REDIRECT:
                return GuardVerdict(False, DropReason.ROUTER_GUARD, "ICMP redirect from a VM")
        return GUARD_OK
