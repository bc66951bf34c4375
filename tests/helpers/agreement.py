"""Trace against datapath: for one frame, what ``trace`` predicted just before, and what the
switch then did — compared aspect by aspect.

A switch on memory ports with VLANs (access, trunk), private VLAN ports (promiscuous,
isolated, community; the trunk carries their VIDs), MAC limits, port ACLs with a meter,
a storm limit, a stateful extended ACL, a default-drop stateful firewall (strict and
non-strict sections, a reject rule), a local mirror with a filter, sampling and
truncation, an RSPAN session and an ERSPAN session (its sender records instead of
sending). :func:`random_case` makes frames from any ``pick``/``integer`` source (the
hypothesis test draws them, the bench uses a seeded ``random.Random``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.pipeline.harness import Switch, make_switch
from vspan.datapath.fdb import LearnResult
from vspan.datapath.mirrorout import TO_SENDER
from vspan.datapath.predict import Outcome
from vspan.mirror.encap import SenderCounters
from vspan.policy.build import SwitchPolicy
from vspan.policy.layer import PolicyLayer
from vspan.ports.base import Frame

T = TypeVar("T")

CONFIG = """
switch: {fdb_max_entries: 12}
ports:
  a:
    type: memory
    vlan: {mode: access, id: 10}
    mac_limit: 3
    policy:
      acls:
        - {id: meter-a, action: meter, direction: both, remote_ip: any}
        - {id: deny-smtp-net, action: deny, direction: out, remote_ip: 10.9.0.0/16}
      guards:
        storm: {broadcast: 2, multicast: 2, unknown_unicast: 5, burst: 1}
  b:
    type: memory
    vlan: {mode: access, id: 10}
    policy:
      extended_acls:
        - {id: x-out, action: allow, direction: out, weight: 100, protocol: udp,
           stateful: true, idle_timeout: 30}
        - {id: x-in, action: deny, direction: in, weight: 10, protocol: udp}
  c: {type: memory, vlan: {mode: access, id: 20}, mtu: 300}
  t: {type: memory, vlan: {mode: trunk, allowed: [10, 20, 200-203], native: 30}}
  pp: {type: memory, pvlan: {primary: 200, mode: promiscuous}}
  pi1: {type: memory, pvlan: {primary: 200, mode: isolated, secondary: 201}}
  pi2: {type: memory, pvlan: {primary: 200, mode: isolated, secondary: 201}}
  pc: {type: memory, pvlan: {primary: 200, mode: community, secondary: 202}}
  pd: {type: memory, pvlan: {primary: 200, mode: community, secondary: 203}}
  s: {type: memory}
mirrors:
  m:
    sources: [{port: a, direction: both}, {port: t, direction: ingress}]
    destinations: [s]
    filter: "tcp or greater 200"
    sampling_rate: 3
    mirrored_packet_length: 96
  rs: {sources: [{port: c, direction: both}], rspan: {port: t, vlan: 20}}
  er:
    sources: [{port: b, direction: egress}]
    erspan: {type: erspan3, remote_ip: 127.0.0.1, session_id: 7}
firewall:
  default_action: drop
  sections:
    - name: web
      tcp_strict: true
      rules:
        - {id: web, services: ["tcp/80"], action: allow}
    - name: other
      rules:
        - {id: mail, services: ["tcp/25"], action: reject}
        - {id: ssh, services: ["tcp/22"], action: allow}
        - {id: dns, services: ["udp/53"], action: allow}
        - {id: ping, services: ["icmp"], action: allow}
"""

IN_PORTS = ["a", "a", "a", "b", "b", "b", "c", "t", "t", "s", "pp", "pi1", "pi2", "pc", "pd"]
MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 7)]
SPECIAL_DST = ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "01:80:c2:00:00:0e"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.9.0.9"]
FLAGS = ["S", "S", "SA", "A", "A", "PA", "FA", "R", "RA", "F", ""]
SEQS = [1000, 1001, 1100, 5000, 5001, 70000, 2**32 - 10]


class RecordingSender:
    """An ERSPAN sender that keeps what it is given."""

    def __init__(self) -> None:
        self.counters = SenderCounters()
        self.sent: list[tuple[bytes, bool, bool]] = []

    def send(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
             ts_ns: int | None = None, vlan: int | None = None, cos: int = 0) -> bool:
        """Record one copy."""
        self.sent.append((frame, egress, truncated))
        self.counters.sent += 1
        return True

    def take(self) -> list[Any]:
        """The copies recorded since the last call."""
        out: list[Any] = list(self.sent)
        self.sent.clear()
        return out

    def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class Case:
    """One frame into one port, after ``dt`` seconds."""

    port: str
    frame: bytes
    dt: float
    what: str


class Conversations:
    """TCP conversations between two VMs of VLAN 10 (``a`` and ``b``), step by step: a
    handshake, data both ways, a close — with slips (a segment out of the window, a
    stale acknowledgement, a reset) so the firewall's window tracking is exercised on
    connections that are really established."""

    STEPS = ("S", "SA<", "A", "PA", "A<", "PA<", "A", "FA", "FA<", "A")

    def __init__(self) -> None:
        self.step = len(self.STEPS)
        self.nxt = [0, 0]  # next sequence number of the client, of the server
        self.port = 40100

    def next(self, pick: Callable[[Sequence[Any]], Any]) -> Case:
        """The next segment of the current conversation (a new one after the last)."""
        if self.step >= len(self.STEPS):
            self.step, self.nxt, self.port = 0, [1000, 90000], self.port + 1
        flags = self.STEPS[self.step]
        self.step += 1
        back = flags.endswith("<")
        flags = flags.rstrip("<")
        me, peer = (1, 0) if back else (0, 1)
        size = 100 if "P" in flags else 0
        seq, ack = self.nxt[me], 0 if flags == "S" else self.nxt[peer]
        slip = pick(["none"] * 12 + ["seq", "ack", "rst"])
        if slip == "seq":
            seq += 70000
        elif slip == "ack" and flags != "S":
            ack -= 100000
        elif slip == "rst":
            flags, size = "R", 0
            self.step = len(self.STEPS)  # the conversation ends here
        if slip == "none":
            self.nxt[me] += size + ("S" in flags) + ("F" in flags)
        src, dst = (MACS[1], MACS[0]) if back else (MACS[0], MACS[1])
        sip, dip = ("10.0.0.2", "10.0.0.1") if back else ("10.0.0.1", "10.0.0.2")
        sport, dport = (80, self.port) if back else (self.port, 80)
        frame = bytes(Ether(src=src, dst=dst) / IP(src=sip, dst=dip)
                      / TCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
                            ack=ack & 0xFFFFFFFF, window=8192) / Raw(b"d" * size))
        return Case("b" if back else "a", frame, 0.0, f"conversation {flags} slip={slip}")


def random_case(pick: Callable[[Sequence[Any]], Any], integer: Callable[[int, int], int],
                conversations: Conversations | None = None) -> Case:
    """A frame from the choices ``pick`` and ``integer`` make (a step of one of the
    ``conversations`` now and then)."""
    if conversations is not None and integer(0, 3) == 0:
        return conversations.next(pick)
    port = pick(IN_PORTS)
    src = pick(MACS) if integer(0, 9) else f"02:00:00:aa:{integer(0, 255):02x}:01"
    dst = pick(MACS + SPECIAL_DST)
    eth: Packet = Ether(src=src, dst=dst)
    tags = pick(["none"] * 12 + ["10", "20", "30", "5", "200", "201", "202", "prio", "qinq",
                                 "ad"])
    if tags == "prio":
        eth = eth / Dot1Q(vlan=0, prio=3)
    elif tags == "qinq":
        eth = eth / Dot1Q(vlan=10) / Dot1Q(vlan=20)
    elif tags == "ad":
        eth = eth / Dot1AD(vlan=10)
    elif tags != "none":
        eth = eth / Dot1Q(vlan=int(tags))
    kind = pick(["tcp"] * 6 + ["udp"] * 3 + ["icmp", "arp", "ip6", "frag", "cut"])
    sip, dip = pick(IPS), pick(IPS)
    size = pick([0, 10, 150, 400])
    pay = Raw(b"p" * size) if size else Raw(b"")
    what = f"{port} {tags} {kind}"
    if kind == "tcp":
        flags = pick(FLAGS)
        sport, dport = pick([40000, 40001, 80, 25]), pick([80, 80, 25, 22, 40000])
        pkt = eth / IP(src=sip, dst=dip) / TCP(sport=sport, dport=dport, flags=flags,
                                               seq=pick(SEQS), ack=pick(SEQS),
                                               window=pick([0, 512, 65535])) / pay
        what += f" {flags} {sport}->{dport}"
    elif kind == "udp":
        pkt = eth / IP(src=sip, dst=dip) / UDP(sport=pick([53, 5353, 40000]),
                                               dport=pick([53, 40000, 9])) / pay
    elif kind == "icmp":
        pkt = eth / IP(src=sip, dst=dip) / ICMP(type=pick([8, 0, 3]), id=pick([1, 2])) / pay
    elif kind == "arp":
        pkt = eth / ARP(psrc=sip, pdst=dip, hwsrc=src)
    elif kind == "ip6":
        pkt = eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=53, dport=53) / pay
    elif kind == "frag":
        pkt = eth / IP(src=sip, dst=dip, proto=6, flags=pick([0, 1]),
                       frag=pick([0, 10])) / Raw(b"f" * 40)
    else:
        full = bytes(eth / IP(src=sip, dst=dip) / TCP(dport=80) / pay)
        return Case(port, full[:integer(1, 40)], float(integer(0, 3)), what)
    return Case(port, bytes(pkt), float(pick([0, 0, 0, 0, 0, 0.1, 1, 5, 40])), what)


def make(config: str = CONFIG) -> tuple[Switch, RecordingSender]:
    """The switch of ``config`` (default :data:`CONFIG`) with a recording ERSPAN sender."""
    sw = make_switch(config)
    rec = RecordingSender()
    for m in sw.engine.state.mirrors.values():
        if m.config.erspan is not None:
            m.sender = rec
            m.dest_error = ""
    return sw, rec


def _policy(sw: Switch) -> SwitchPolicy:
    layer = sw.engine.policy
    assert isinstance(layer, PolicyLayer)
    return layer.policy


def snapshot(sw: Switch) -> dict[str, Any]:
    """Everything a frame may change, as comparable data."""
    eng = sw.engine
    st = eng.state
    now = sw.clock.now
    pol = _policy(sw)
    names = st.by_name
    conns: dict[tuple[int, object], object] = {}
    if pol.firewall is not None:
        for name, pf in pol.firewall.ports().items():
            for ck, c in pf.conntrack.entries().items():
                if c.expires > now:
                    conns[(names[name], ck)] = c.fingerprint()
    sessions: dict[tuple[int, object], object] = {}
    storms: dict[tuple[int, str], tuple[int, int]] = {}
    meters: dict[tuple[int, str], tuple[int, int]] = {}
    for name, p in pol.ports.items():
        for sk, s in p.sessions.live(now).items():
            sessions[(names[name], sk)] = s
        if p.storm is not None:
            for cls, b in p.storm.buckets.items():
                storms[(names[name], str(cls))] = (b.passed, b.dropped)
        for m in p.acl.meters():
            meters[(names[name], f"{m.rule_id}/{m.direction}")] = (m.packets, m.bytes)
    return {
        "fdb": {k: e.port for k, e in st.fdb.entries.items()},
        "conns": conns, "sessions": sessions, "storms": storms, "meters": meters,
        "drops": dict(st.drops.by_key),
        "flooded": {i: rt.counters.flooded for i, rt in st.ports.items()},
        "mirrors": {i: m.counters() for i, m in st.mirrors.items()},
    }


def _delta(before: dict[Any, Any], after: dict[Any, Any]) -> dict[Any, Any]:
    """Keys whose values changed (value: the new one, or None when gone)."""
    keys = set(before) | set(after)
    return {k: after.get(k) for k in keys if before.get(k) != after.get(k)}


def _all(o: Outcome) -> list[Outcome]:
    out = [o]
    for r in o.replies:
        out.extend(_all(r))
    return out


@dataclass
class Verdict:
    """How one frame went: the aspects where prediction and reality differ."""

    case: Case
    outcome: Outcome
    differences: list[str] = field(default_factory=list)


def run_case(sw: Switch, rec: RecordingSender, case: Case) -> Verdict:
    """Trace ``case`` (peek), then send it; compare."""
    eng = sw.engine
    sw.clock.now += case.dt
    idx = eng.state.by_name[case.port]
    before = snapshot(sw)
    _d, outcome, _tr = eng.trace(case.port, case.frame)
    v = Verdict(case, outcome)
    if snapshot(sw) != before:
        v.differences.append("the trace changed the switch's state")
    sent_before = len(rec.sent)
    eng.process(idx, [Frame(case.frame)])
    after = snapshot(sw)
    got: Counter[tuple[str, bytes]] = Counter()
    for name, port in sw.ports.items():
        for f in port.take():
            got[(name, f.data)] += 1
    names = eng.state.port_names
    parts = _all(outcome)
    want: Counter[tuple[str, bytes]] = Counter()
    want_erspan: list[tuple[bytes, bool, bool]] = []
    want_drops: Counter[tuple[int, str, str]] = Counter()
    for o in parts:
        for p, data in o.outputs:
            want[(names[p], data)] += 1
        for c in o.copies:
            if not c.ok:
                continue
            if c.port == TO_SENDER:
                want_erspan.append((c.data, c.egress, c.truncated))
            else:
                want[(names[c.port], c.data)] += 1
        for dr in o.drops:
            want_drops[(dr.port, dr.reason.value, dr.rule)] += 1
    if got != want:
        v.differences.append(f"outputs: predicted {sorted(want.items())[:4]} "
                             f"got {sorted(got.items())[:4]}")
    if rec.sent[sent_before:] != want_erspan:
        v.differences.append("ERSPAN copies differ")
    drops = {k: n - before["drops"].get(k, 0) for k, n in after["drops"].items()
             if n != before["drops"].get(k, 0)}
    if drops != dict(want_drops):
        v.differences.append(f"drops: predicted {dict(want_drops)} got {drops}")
    fdb = dict(before["fdb"])
    for ln, res in outcome.learned:
        if res in (LearnResult.NEW, LearnResult.MOVED):
            fdb[(ln.vlan, ln.mac)] = ln.port
    if after["fdb"] != fdb:
        v.differences.append(f"MAC table: predicted {_delta(before['fdb'], fdb)} got "
                             f"{_delta(before['fdb'], after['fdb'])}")
    _compare_effects(v, outcome, before, after, names)
    flooded = {i: 1 for i in [idx] if any(o.flooded for o in parts[:1])}
    got_flood = {i: n - before["flooded"].get(i, 0) for i, n in after["flooded"].items()
                 if n != before["flooded"].get(i, 0)}
    if got_flood != flooded:
        v.differences.append(f"flooded: predicted {flooded} got {got_flood}")
    return v


def _compare_effects(v: Verdict, outcome: Outcome, before: dict[str, Any],
                     after: dict[str, Any], names: dict[int, str]) -> None:
    conns = dict(before["conns"])
    sessions = dict(before["sessions"])
    storms = dict(before["storms"])
    meters = dict(before["meters"])
    for o in _all(outcome):
        for fx in o.effects:
            table, port, key, value = fx
            assert isinstance(port, int)
            if table == "conn":
                if value is None:
                    conns.pop((port, key), None)
                else:
                    conns[(port, key)] = value
            elif table == "session":
                sessions[(port, key)] = value
            elif table == "storm":
                p, d = storms[(port, str(key))]
                storms[(port, str(key))] = (p + 1, d) if value else (p, d + 1)
            elif table == "meter":
                pk, by = meters[(port, str(key))]
                assert isinstance(value, int)
                meters[(port, str(key))] = (pk + 1, by + value)
    for label, want, got in (("connections", conns, after["conns"]),
                             ("ext ACL sessions", sessions, after["sessions"]),
                             ("storm buckets", storms, after["storms"]),
                             ("meters", meters, after["meters"])):
        if want != got:
            v.differences.append(f"{label}: predicted {_delta(got, want)} got "
                                 f"{_delta(want, got)}")


def pick_from(rng: Any) -> tuple[Callable[[Sequence[T]], T], Callable[[int, int], int]]:
    """``pick``/``integer`` from a ``random.Random``."""
    return rng.choice, rng.randint
