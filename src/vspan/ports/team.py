"""Team port: several member interfaces that the switch sees as ONE port.

Because the switch learns MACs on and floods to the team as a whole, a frame
that came in by one member is never sent back out of another (split horizon),
and a flooded frame leaves by exactly one member. The backend decides which:

* ``switch-independent``: every usable member sends; the member of a frame is
  ``usable[hash % len(usable)]`` with Linux bonding's ``layer2``, ``layer2+3``
  or ``layer3+4`` hash (:mod:`vspan.ports.teamhash`), ``hyperv-port`` (the
  switch port the frame came from, :attr:`Frame.port`), or ``dynamic``
  (flowlets: a flow stays on its member while it keeps sending; after an idle
  gap of ``dynamic_idle_ms`` it goes to the least-loaded member);
* ``active-standby``: one member sends and receives; frames arriving on a
  standby member are dropped (counted, as Linux bonding's active-backup does),
  so a far side that floods to every link does not deliver them twice. The
  ``primary`` member is taken back as soon as it is usable again.

A member is usable while it is administratively up with carrier — learnt at
once from rtnetlink notifications (:mod:`vspan.ports.linkwatch`) and re-read
every ``miimon_ms`` — and, with an ARP monitor, while one of its targets
answered its probes within ``missed_max`` intervals. Frames are received from
every member (switch-independent).

The engine sees one fd: an epoll of its own holding the members' sockets, the
netlink socket and the monitor timer (an epoll fd is readable while any of its
fds is). Each member is an ordinary backend (AF_PACKET by default).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vspan.config.team import LoadBalancing, TeamConfig, TeamMode
from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.linkwatch import IntervalTimer, LinkEvent, LinkWatch
from vspan.ports.teamhash import l2_header, layer2, layer2_3, layer3_4

log = logging.getLogger(__name__)

MemberFactory = Callable[[str, str], Port]
#: a capture tap: (member interface, received?, frame) for every frame a member moves
MemberTap = Callable[[str, bool, Frame], None]

ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6
#: flowlet table entries kept before idle ones are swept out
MAX_FLOWLETS = 65536
#: half-life of the per-member load estimate used by ``dynamic`` (seconds)
LOAD_HALF_LIFE = 0.1


def _afpacket_member(team: str, ifname: str) -> Port:
    from vspan.ports.afpacket import AfPacketPort

    return AfPacketPort(f"{team}:{ifname}", ifname)


@dataclass(eq=False, slots=True)
class Member:
    """One member interface of a team and what the team knows about it."""

    name: str
    port: Port
    position: int
    ifindex: int = 0
    mac: bytes = b""
    carrier: bool = False  # administratively up with carrier (and not deleted)
    arp_ok: bool = True  # the ARP monitor's verdict (always True without one)
    usable: bool = False  # carrier and arp_ok: may carry traffic
    gone: bool = False  # its interface was deleted (until one of its name appears again)
    last_reply: float = 0.0  # when a target last answered its probes (monotonic)
    failovers: int = 0  # times traffic had to leave it because it failed
    rx_inactive: int = 0  # frames dropped because they came in while it was standby
    arp_probes: int = 0
    arp_replies: int = 0
    load: float = 0.0  # decayed bytes sent (dynamic load balancing)
    probes: list[bytes] = field(default_factory=list)


class _Flowlet:
    """A flow's member and when it last sent (dynamic load balancing)."""

    __slots__ = ("last", "member")

    def __init__(self, member: Member, last: float) -> None:
        self.member = member
        self.last = last


class TeamCounters(PortCounters):
    """The team's own counts plus every member's (what crossed the wires)."""

    __slots__ = ("_members",)

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self._members = members

    def as_dict(self) -> dict[str, int]:
        """Team-level counts (e.g. frames no member could take) plus the members'."""
        total = PortCounters.as_dict(self)
        for m in self._members:
            for k, v in m.port.counters.as_dict().items():
                total[k] += v
        return total


class TeamPort(Port):
    """A switch port made of the member interfaces named in a :class:`TeamConfig`."""

    def __init__(self, name: str, config: TeamConfig,
                 member_factory: MemberFactory = _afpacket_member,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.config = config
        self._factory = member_factory
        self._clock = clock
        self.members: list[Member] = []
        self.counters = TeamCounters(self.members)
        self.active_standby = config.mode is TeamMode.ACTIVE_STANDBY
        self.policy = config.load_balancing
        #: the engine stamps Frame.port (ingress switch port) only when this is True
        self.wants_source_port = (not self.active_standby
                                  and self.policy is LoadBalancing.HYPERV_PORT)
        self.tap: MemberTap | None = None  # set by captures at member points
        self.failovers = 0
        self.no_member_drops = 0  # frames to send while no member was usable
        self.flowlet_moves = 0
        self._usable: list[Member] = []
        self._active: Member | None = None
        self._by_fd: dict[int, Member] = {}
        self._by_ifindex: dict[int, Member] = {}
        self._by_mac: dict[bytes, Member] = {}
        self._epoll: select.epoll | None = None
        self._watch: LinkWatch | None = None
        self._watch_fd = -1
        self._timer: IntervalTimer | None = None
        self._timer_fd = -1
        self._next_poll = 0.0
        self._next_probe = 0.0
        self._flowlets: dict[int, _Flowlet] = {}
        self._load_at = 0.0
        arp = config.arp_monitor
        self._arp_targets = frozenset(socket.inet_aton(t) for t in arp.targets) if arp else None

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open every member (all or nothing), the link watch and the monitor timer."""
        if self._epoll is not None:
            return
        opened: list[Member] = []
        try:
            for pos, ifname in enumerate(self.config.members):
                port = self._factory(self.name, ifname)
                port.open()
                opened.append(self._member(pos, ifname, port))
        except Exception as err:
            for m in opened:
                m.port.close()
            if isinstance(err, PortError):
                raise PortError(f"team {self.name}: {err}") from err
            raise
        self.members[:] = opened
        self._epoll = ep = select.epoll()
        try:
            for m in opened:
                fd = m.port.fileno()
                self._by_fd[fd] = m
                ep.register(fd, select.EPOLLIN)
            self._open_monitors(ep)
        except BaseException:
            self.close()
            raise
        now = self._clock()
        for m in opened:
            m.last_reply = now  # the ARP monitor gives every member missed_max intervals
            m.carrier = self._read_carrier(m)
        self._recompute("opened")

    def _member(self, pos: int, ifname: str, port: Port) -> Member:
        info = port.info()
        m = Member(ifname, port, pos)
        self._remap(m, _ifindex(info), info.mac)
        return m

    def _open_monitors(self, ep: select.epoll) -> None:
        if self._by_ifindex:
            watch = LinkWatch()
            try:
                watch.open()
            except OSError as err:
                log.warning("team %s: no link notifications (%s); polling every %d ms",
                            self.name, err, self.config.miimon_ms)
            else:
                self._watch, self._watch_fd = watch, watch.fileno()
                ep.register(self._watch_fd, select.EPOLLIN)
        periods = [self.config.miimon_ms] if self.config.miimon_ms else []
        if self.config.arp_monitor is not None:
            periods.append(self.config.arp_monitor.interval_ms)
        if periods:
            timer = IntervalTimer(min(periods) / 1000)
            try:
                timer.open()
            except OSError as err:
                log.warning("team %s: no monitor timer (%s)", self.name, err)
            else:
                self._timer, self._timer_fd = timer, timer.fileno()
                ep.register(self._timer_fd, select.EPOLLIN)

    def close(self) -> None:
        """Close members, monitors and the epoll; safe to call twice."""
        for m in self.members:
            m.port.close()
        for closer in (self._watch, self._timer):
            if closer is not None:
                closer.close()
        self._watch = self._timer = None
        self._watch_fd = self._timer_fd = -1
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for table in (self._by_fd, self._by_ifindex, self._by_mac):
            table.clear()

    # -- member state --------------------------------------------------------

    def _read_carrier(self, m: Member) -> bool:
        """Poll one member through its backend (which follows a re-created device)."""
        up = m.port.link_up()
        info = m.port.info()
        index = _ifindex(info)
        if index != m.ifindex:  # the backend bound to a new device of the member's name
            self._remap(m, index, info.mac)
        return up and not m.gone

    def _remap(self, m: Member, index: int, mac: bytes) -> None:
        if self._by_ifindex.get(m.ifindex) is m:
            del self._by_ifindex[m.ifindex]
        if self._by_mac.get(m.mac) is m:
            del self._by_mac[m.mac]
        m.ifindex, m.mac, m.gone = index, mac, False
        if index:
            self._by_ifindex[index] = m
        if mac:
            self._by_mac[mac] = m
        arp = self.config.arp_monitor
        if arp is not None:
            m.probes = [arp_probe(mac, arp.source_ip, t, arp.vlan) for t in arp.targets]

    def poll_links(self) -> bool:
        """Re-read every member's link (the ``miimon`` poll); True when something changed."""
        changed = False
        for m in self.members:
            carrier = self._read_carrier(m)
            if carrier != m.carrier:
                m.carrier = carrier
                changed = True
        if changed:
            self._recompute("link poll")
        return changed

    def link_event(self, ev: LinkEvent) -> None:
        """Apply one rtnetlink notification about a member."""
        m = self._by_ifindex.get(ev.index)
        if m is None:
            return
        if ev.deleted:
            m.gone = True
        carrier = ev.usable and not m.gone
        if carrier != m.carrier:
            m.carrier = carrier
            self._recompute("carrier " + ("up" if carrier else "lost") + f" on {m.name}")

    def _recompute(self, why: str) -> None:
        was = {m.name for m in self.members if m.usable}
        carrying = set(was) if not self.active_standby else (
            {self._active.name} if self._active is not None else set())
        for m in self.members:
            m.usable = m.carrier and m.arp_ok
        usable = [m for m in self.members if m.usable]
        self._usable = usable
        if self.active_standby:
            cur = self._active
            primary = self.config.primary
            pick = next((m for m in usable if m.name == primary), None)
            if pick is None:
                pick = cur if cur is not None and cur.usable else (usable[0] if usable else None)
            if pick is not None and pick is not cur:  # the ARP monitor's grace starts now
                pick.last_reply = max(pick.last_reply, self._clock())
            self._active = pick
        for m in self.members:
            if m.name in carrying and not m.usable:
                m.failovers += 1
                self.failovers += 1
        now = {m.name for m in usable}
        if now != was:
            log.info("team %s: %s; usable members: %s%s", self.name, why,
                     ", ".join(m.name for m in usable) or "none",
                     f" (active {self._active.name})" if self._active else "")

    # -- monitor work (wakes through the epoll) -----------------------------

    def _on_watch(self) -> None:
        if self._watch is None:
            return
        events, lost = self._watch.read()
        for ev in events:
            self.link_event(ev)
        if lost:
            self.poll_links()

    def _on_timer(self) -> None:
        if self._timer is not None:
            self._timer.ack()
        self.tick(self._clock())

    def tick(self, now: float) -> None:
        """Periodic work: poll carrier every ``miimon_ms``; ARP probes and verdicts."""
        miimon = self.config.miimon_ms
        if miimon and now >= self._next_poll:
            self._next_poll = now + miimon / 1000
            self.poll_links()
        arp = self.config.arp_monitor
        if arp is None or now < self._next_probe:
            return
        self._next_probe = now + arp.interval_ms / 1000
        deadline = arp.missed_max * arp.interval_ms / 1000
        changed = False
        for m in self.members:
            # active-standby: a standby member is judged when it becomes active (a far
            # side in active-standby drops what comes in on its own standby link)
            if self.active_standby and m is not self._active:
                continue
            ok = now - m.last_reply <= deadline
            if ok != m.arp_ok:
                m.arp_ok = ok
                changed = True
            if m.carrier:
                self._send_member(m, [Frame(p) for p in m.probes])
                m.arp_probes += len(m.probes)
        if changed:
            self._recompute("ARP monitor")

    def _arp_reply_owner(self, data: bytes) -> Member | None:
        """The member whose probe ``data`` answers (an ARP reply from a target), or None."""
        owner = self._by_mac.get(data[:6])
        if owner is None:
            return None
        etype, off = l2_header(data)
        targets = self._arp_targets
        if etype != ETH_P_ARP or targets is None or len(data) < off + 28:
            return None
        if data[off + 6:off + 8] != b"\x00\x02" or data[off + 14:off + 18] not in targets:
            return None
        return owner if data[off + 18:off + 24] == owner.mac else None

    # -- datapath ------------------------------------------------------------

    def fileno(self) -> int:
        """The team's epoll: readable when a member has frames or a monitor has work."""
        if self._epoll is None:
            raise PortError(f"port {self.name} is not open")
        return self._epoll.fileno()

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Frames from every member (at most ``max_frames``); monitor work on the way."""
        ep = self._epoll
        if ep is None:
            return []
        out: list[Frame] = []
        tap = self.tap
        for fd, _ev in ep.poll(0):
            m = self._by_fd.get(fd)
            if m is None:
                if fd == self._watch_fd:
                    self._on_watch()
                elif fd == self._timer_fd:
                    self._on_timer()
                continue
            room = max_frames - len(out)
            if room <= 0:
                continue  # level-triggered: the member is reported again next time
            frames = m.port.recv_batch(room)
            if not frames:
                continue
            if self._arp_targets is not None:
                frames = self._take_arp_replies(m, frames)
            if tap is not None:
                for f in frames:
                    tap(m.name, True, f)
            if self.active_standby and m is not self._active:
                m.rx_inactive += len(frames)
                continue
            out += frames
        return out

    def _take_arp_replies(self, via: Member, frames: list[Frame]) -> list[Frame]:
        kept: list[Frame] = []
        now = self._clock()
        for f in frames:
            owner = self._arp_reply_owner(f.data) if f.data[:6] in self._by_mac else None
            if owner is None:
                kept.append(f)
                continue
            owner.arp_replies += 1
            owner.last_reply = now
            if not owner.arp_ok:
                owner.arp_ok = True
                self._recompute(f"ARP reply on {owner.name}")
            if self.tap is not None:  # still seen at the member, never switched
                self.tap(via.name, True, f)
        return kept

    def _send_member(self, m: Member, frames: list[Frame]) -> int:
        tap = self.tap
        if tap is not None:
            for f in frames:
                tap(m.name, False, f)
        return m.port.send_batch(frames)

    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Send each frame out of the member the mode and hash choose."""
        usable = self._usable
        if self.active_standby or len(usable) <= 1:
            m = self._active if self.active_standby else (usable[0] if usable else None)
            if m is None:
                self.no_member_drops += len(frames)
                self.counters.tx_errors += len(frames)
                return 0
            return self._send_member(m, list(frames))
        n = len(usable)
        buckets: list[list[Frame]] = [[] for _ in range(n)]
        policy = self.policy
        if policy is LoadBalancing.DYNAMIC:
            self._dynamic(frames, usable, buckets)
        elif policy is LoadBalancing.HYPERV_PORT:
            for f in frames:
                buckets[f.port % n].append(f)
        else:
            fn = layer3_4 if policy is LoadBalancing.LAYER3_4 else (
                layer2_3 if policy is LoadBalancing.LAYER2_3 else layer2)
            for f in frames:
                buckets[fn(f.data) % n].append(f)
        sent = 0
        for m, bucket in zip(usable, buckets, strict=True):
            if bucket:
                sent += self._send_member(m, bucket)
        return sent

    def _dynamic(self, frames: Sequence[Frame], usable: list[Member],
                 buckets: list[list[Frame]]) -> None:
        """Flowlets: keep a flow on its member until it pauses, then take the least loaded."""
        now = self._clock()
        decay = 0.5 ** ((now - self._load_at) / LOAD_HALF_LIFE)
        self._load_at = now
        slot = {id(m): i for i, m in enumerate(usable)}
        for m in usable:
            m.load *= decay
        idle = self.config.dynamic_idle_ms / 1000
        table = self._flowlets
        if len(table) > MAX_FLOWLETS:
            self._sweep(now - idle)
        for f in frames:
            h = layer3_4(f.data)
            entry = table.get(h)
            if entry is not None and entry.member.usable and now - entry.last < idle:
                m = entry.member
            else:
                m = min(usable, key=_load)
                if entry is None:
                    entry = table[h] = _Flowlet(m, now)
                elif entry.member is not m:
                    self.flowlet_moves += 1
                    entry.member = m
            entry.last = now
            m.load += len(f.data)
            buckets[slot[id(m)]].append(f)

    def _sweep(self, older_than: float) -> None:
        table = self._flowlets
        for h in [h for h, e in table.items() if e.last < older_than]:
            del table[h]

    # -- state ---------------------------------------------------------------

    def link_up(self) -> bool:
        """Whether any member may carry traffic (polled once more here)."""
        if self._epoll is None:
            return False
        self.poll_links()
        return bool(self._usable)

    def info(self) -> PortInfo:
        """Kind ``team``; the members as the interface; the first member's MAC."""
        first = self.members[0] if self.members else None
        return PortInfo(kind="team", interface=",".join(self.config.members),
                         mac=first.mac if first else b"", vnet_hdr=True,
                         extra={"members": ",".join(self.config.members),
                                "mode": self.config.mode.value})

    def member_state(self, m: Member) -> str:
        """``active``, ``standby`` or ``down`` (why, when down)."""
        if not m.usable:
            if m.gone:
                return "down (deleted)"
            return "down (no carrier)" if not m.carrier else "down (ARP targets silent)"
        if self.active_standby and m is not self._active:
            return "standby"
        return "active"

    def status(self) -> dict[str, Any]:
        """Mode, active members, failovers and per-member state and counters."""
        members = []
        for m in self.members:
            row: dict[str, Any] = {
                "name": m.name,
                "link": "up" if m.carrier else "down",
                "state": self.member_state(m),
                "active": self.member_state(m) == "active",
                "failovers": m.failovers,
                "rx_inactive": m.rx_inactive,
                "counters": m.port.counters.as_dict(),
            }
            if self.config.arp_monitor is not None:
                row["arp"] = {"ok": m.arp_ok, "probes": m.arp_probes, "replies": m.arp_replies}
            members.append(row)
        return {
            "mode": self.config.mode.value,
            "load_balancing": None if self.active_standby else self.policy.value,
            "primary": self.config.primary,
            "active": [m.name for m in self.members if self.member_state(m) == "active"],
            "failovers": self.failovers,
            "no_member_drops": self.no_member_drops,
            "flowlet_moves": self.flowlet_moves,
            "members": members,
        }


def _load(m: Member) -> float:
    return m.load


def _ifindex(info: PortInfo) -> int:
    """The interface index a backend reports (0: none, e.g. a memory port)."""
    try:
        return int(info.extra.get("ifindex", "0"))
    except ValueError:
        return 0


def arp_probe(mac: bytes, source_ip: str, target_ip: str, vlan: int | None = None) -> bytes:
    """A broadcast ARP request for ``target_ip`` from ``mac`` (sender IP ``source_ip``)."""
    tag = b"" if vlan is None else b"\x81\x00" + vlan.to_bytes(2, "big")
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + socket.inet_aton(source_ip)
           + b"\x00" * 6 + socket.inet_aton(target_ip))
    frame = _BROADCAST + mac + tag + ETH_P_ARP.to_bytes(2, "big") + arp
    return frame + b"\x00" * max(0, 60 - len(frame))

