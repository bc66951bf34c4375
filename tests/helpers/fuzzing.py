"""Fuzzing the whole engine on memory ports (issue 11, item 4; ``docs/accounting.md``).

A switch with a rich configuration — access, trunk (with and without a native
VLAN) and untagged ports, MAC limits, port ACLs with a meter, extended ACLs
with stateful rules, guards (storm, DHCP, router, MAC spoofing), a default-drop
stateful firewall on some ports (a strict section, a reject rule), an MTU, a
disabled port, local/RSPAN/ERSPAN mirrors with filters, sampling and
truncation, a remote-mirroring destination session, ports that take virtio-net
headers (GSO) — is fed frames built with scapy and then mutated (cut short,
bits flipped, lengths made up, tags stacked, odd TPIDs, made-up virtio-net
headers). After every batch: no exception, and every frame each port received
is accounted for (:mod:`vspan.datapath.accounting`); for a batch of one frame
the counted fate is also compared with what came out of the ports.

Choices come from a :class:`Source` so the same generator serves hypothesis
(``tests/pipeline/test_fuzz_pipeline.py``), a seeded ``random.Random``
(``bench/fuzz_long.py``) and atheris (``bench/fuzz_atheris.py``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_RA,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, LLC, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.helpers.agreement import Conversations, RecordingSender
from vspan.capture.filter import compile_filter
from vspan.capture.porttap import PortCapture
from vspan.config.load import load_text
from vspan.config.model import MirrorSession, PortConfig
from vspan.control.assemble import build_engine
from vspan.datapath import accounting
from vspan.datapath.counters import SwitchPortCounters
from vspan.datapath.engine import Engine
from vspan.mirror.senders import ErspanSenders
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort
from vspan.ports.tx import GsoSupport
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4

T = TypeVar("T")

CONFIG = """
switch: {fdb_max_entries: 16, flow_cache_size: 48}
ports:
  a:
    type: memory
    vlan: {mode: access, id: 10}
    mac_limit: 3
    policy:
      addresses: [10.0.0.1]
      acls:
        - {id: meter-a, action: meter, direction: both, remote_ip: any}
        - {id: deny-net, action: deny, direction: out, remote_ip: 10.9.0.0/16}
        - {id: deny-mac, action: deny, direction: in, remote_mac: "02:00:00:00:00:06"}
      guards:
        dhcp_guard: true
        router_guard: true
        storm: {broadcast: 2, multicast: 2, unknown_unicast: 5, burst: 1}
  b:
    type: memory
    vlan: {mode: access, id: 10}
    policy:
      addresses: [10.0.0.2, "2001:db8::2"]
      extended_acls:
        - {id: x-out, action: allow, direction: out, weight: 100, protocol: udp,
           stateful: true, idle_timeout: 30}
        - {id: x-in, action: deny, direction: in, weight: 10, protocol: udp}
        - {id: x-tcp, action: allow, direction: both, weight: 50, protocol: tcp,
           remote_port: "80", stateful: true, idle_timeout: 5}
  c: {type: memory, vlan: {mode: access, id: 20}, mtu: 300}
  t: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 30}}
  t2: {type: memory, vlan: {mode: trunk, allowed: [10, 20, 30]}}
  u: {type: memory}
  spoof:
    type: memory
    vlan: {mode: access, id: 20}
    policy: {guards: {mac_spoofing: false, macs: ["02:00:00:00:00:05"]}}
  v1: {type: memory, vlan: {mode: access, id: 10}, mtu: 1400}
  v2: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 10}}
  dis: {type: memory, enabled: false, vlan: {mode: access, id: 10}}
  up: {type: memory, vlan: {mode: trunk, allowed: [10, 20, 998, 999]}}
  s: {type: memory}
  sniff: {type: memory}
mirrors:
  m:
    sources: [{port: a, direction: both}, {port: t, direction: ingress}]
    destinations: [s]
    filter: "tcp or greater 200"
    sampling_rate: 3
    mirrored_packet_length: 96
  rs: {sources: [{port: c, direction: both}, {port: v1, direction: egress}],
       rspan: {port: up, vlan: 999}, mirrored_packet_length: 128}
  er:
    sources: [{port: b, direction: egress}, {port: v2, direction: both}]
    erspan: {type: erspan3, remote_ip: 127.0.0.1, session_id: 7}
  er2:
    sources: [{port: v1, direction: ingress}]
    erspan: {type: erspan2, remote_ip: 127.0.0.1, session_id: 8}
    filter: "udp or icmp"
    mirrored_packet_length: 64
    sampling_rate: 2
  rx: {rspan_source: {port: up, vlan: 998}, destinations: [sniff]}
firewall:
  default_action: drop
  exclude: [t, t2, u, up, s, sniff, c, spoof, v2]
  sections:
    - name: web
      tcp_strict: true
      rules:
        - {id: web, services: ["tcp/80"], action: allow}
    - name: other
      rules:
        - {id: mail, services: ["tcp/25"], action: reject}
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
        - {id: ssh, services: ["tcp/22"], action: allow}
        - {id: dns, services: ["udp/53"], action: allow}
        - {id: ping, services: ["icmp", "icmpv6"], action: allow}
    - name: only-v1
      applied_to: [v1]
      stateful: false
      rules:
        - {id: v1-udp, services: ["udp/9"], action: allow}
"""

#: ports frames are received on (weighted by repetition)
IN_PORTS = ("a", "a", "a", "b", "b", "b", "c", "t", "t", "t2", "u", "spoof", "v1", "v1",
            "v1", "v2", "v2", "v2", "dis", "up", "up", "s")
#: ports that take virtio-net headers (GSO super-frames, partial checksums)
VNET_PORTS = frozenset({"v1", "v2"})
#: ports only mirror copies reach (never normal traffic)
MIRROR_ONLY = frozenset({"s", "sniff"})
RSPAN_VLANS = (998, 999)
MACS = tuple(f"02:00:00:00:00:{i:02x}" for i in range(1, 8))
SPECIAL_DST = ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01",
               "01:80:c2:00:00:00", "01:80:c2:00:00:0e", "01:80:c2:00:00:10")
IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.9.0.9", "0.0.0.0", "255.255.255.255")
IP6S = ("2001:db8::1", "2001:db8::2", "fe80::1", "ff02::1")
TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200, 0x8100)
VIDS = (0, 1, 10, 20, 30, 998, 999, 4095, 5)


class Source(Protocol):
    """Where the fuzzer's choices come from."""

    def pick(self, seq: Sequence[T]) -> T:
        """One element of ``seq``."""
        ...

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        ...


class RandomSource:
    """A :class:`Source` from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, seq: Sequence[T]) -> T:
        """One element of ``seq``."""
        return self.rng.choice(seq)

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.rng.randint(lo, hi)


@dataclass(frozen=True)
class Input:
    """One frame received on one port (with a virtio-net header, or none)."""

    port: str
    data: bytes
    vnet: bytes = b""

    def __repr__(self) -> str:
        return f"Input({self.port!r}, {self.data.hex()!r}, vnet={self.vnet.hex()!r})"


def _mac(src: Source, group_ok: bool) -> str:
    r = src.integer(0, 19)
    if r < 14:
        return src.pick(MACS)
    if r < 17 and group_ok:
        return src.pick(SPECIAL_DST)
    return ":".join(f"{src.integer(0, 255):02x}" for _ in range(6))


def _l4(src: Source, v6: bool) -> Packet:
    kind = src.pick(("tcp", "tcp", "udp", "udp", "icmp", "dhcp", "raw"))
    if kind == "tcp":
        return TCP(sport=src.pick((40000, 40001, 80, 25, 23)),
                   dport=src.pick((80, 25, 22, 23, 40000)),
                   flags=src.pick(("S", "SA", "A", "PA", "FA", "R", "", "FSRPAUEC")),
                   seq=src.integer(0, 2**32 - 1), ack=src.integer(0, 2**32 - 1),
                   window=src.pick((0, 512, 65535)),
                   options=src.pick(([], [("MSS", 1460)], [("WScale", 14), ("NOP", None)])))
    if kind == "udp":
        return UDP(sport=src.pick((53, 40000, 9, 67)), dport=src.pick((53, 40000, 9, 68)))
    if kind == "icmp":
        if v6:
            return src.pick((ICMPv6EchoRequest(), ICMPv6ND_RA()))
        return ICMP(type=src.pick((8, 0, 3, 11, 5)), code=src.pick((0, 1, 4)),
                    id=src.integer(0, 3))
    if kind == "dhcp":
        return UDP(sport=67, dport=68) / BOOTP(op=2) / DHCP(options=[("message-type", 2),
                                                                     "end"])
    return Raw(b"r" * src.integer(0, 8))


def _l3(src: Source) -> Packet:
    kind = src.pick(("ip", "ip", "ip", "ip6", "ip6", "arp", "frag", "llc", "other"))
    if kind == "ip":
        return IP(src=src.pick(IPS), dst=src.pick(IPS), ttl=src.integer(0, 3) or 64,
                  options=src.pick(([], [], b"\x01\x01\x01\x00"))) / _l4(src, False)
    if kind == "ip6":
        ext: Packet = src.pick((Raw(b""), Raw(b""), IPv6ExtHdrHopByHop(),
                                IPv6ExtHdrFragment(offset=src.integer(0, 2), m=1)))
        hdr = IPv6(src=src.pick(IP6S), dst=src.pick(IP6S))
        inner = _l4(src, True)
        return hdr / inner if isinstance(ext, Raw) else hdr / ext / inner
    if kind == "arp":
        return ARP(op=src.pick((1, 2)), psrc=src.pick(IPS), pdst=src.pick(IPS),
                   hwsrc=src.pick(MACS))
    if kind == "frag":
        return IP(src=src.pick(IPS), dst=src.pick(IPS), proto=src.pick((6, 17, 1)),
                  flags=src.pick((0, 1)), frag=src.pick((0, 1, 10))) / Raw(b"f" * 24)
    if kind == "llc":
        return LLC() / Raw(b"stp")
    return Raw(b"\x88\xcc" + b"o" * 20)


def _tags(src: Source, eth: Packet) -> Packet:
    kind = src.pick(("none",) * 8 + ("one", "one", "one", "qinq", "ad", "triple", "prio"))
    if kind == "one":
        return eth / Dot1Q(vlan=src.pick(VIDS), prio=src.integer(0, 7))
    if kind == "qinq":
        return eth / Dot1Q(vlan=src.pick(VIDS)) / Dot1Q(vlan=src.pick(VIDS))
    if kind == "ad":
        return eth / Dot1AD(vlan=src.pick(VIDS)) / Dot1Q(vlan=src.pick(VIDS))
    if kind == "triple":
        return eth / Dot1Q(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30)
    if kind == "prio":
        return eth / Dot1Q(vlan=0, prio=5)
    return eth


def valid_frame(src: Source) -> bytes:
    """A well-formed frame (scapy) with tags, L3, L4 and a payload."""
    eth = _tags(src, Ether(src=_mac(src, src.integer(0, 15) == 0), dst=_mac(src, True)))
    size = src.pick((0, 0, 10, 100, 250, 600, 1500, 3000, 9000, 60000))
    pkt = eth / _l3(src)
    if size:
        pkt = pkt / Raw(b"p" * size)
    return bytes(pkt)


def _l3_offset(data: bytes) -> tuple[int, int]:
    """(ethertype, offset of what follows it), walking any tag stack."""
    off = 12
    while off + 4 <= len(data):
        et = int.from_bytes(data[off:off + 2], "big")
        if et not in (0x8100, 0x88A8, 0x9100, 0x9200):
            return et, off + 2
        off += 4
    return 0, len(data)


def mutate(src: Source, data: bytes) -> bytes:
    """Up to four mutations of ``data``: cut, bit flips, made-up lengths, tags."""
    buf = bytearray(data)
    for _ in range(src.integer(0, 4)):
        what = src.pick(("cut", "flip", "flip", "byte", "iplen", "ihl", "ip6len", "udplen",
                         "tcpoff", "tag", "tpid", "junk", "ethertype"))
        et, l3 = _l3_offset(bytes(buf))
        if what == "cut" and buf:
            del buf[src.integer(0, len(buf) - 1):]
        elif what == "flip" and buf:
            i = src.integer(0, len(buf) - 1)
            buf[i] ^= 1 << src.integer(0, 7)
        elif what == "byte" and buf:
            buf[src.integer(0, len(buf) - 1)] = src.integer(0, 255)
        elif what == "iplen" and et == 0x0800 and len(buf) >= l3 + 4:
            buf[l3 + 2:l3 + 4] = src.pick((0, 19, 20, 21, 0xFFFF, len(buf))).to_bytes(2, "big")
        elif what == "ihl" and et == 0x0800 and len(buf) > l3:
            buf[l3] = 0x40 | src.pick((0, 4, 5, 6, 15))
        elif what == "ip6len" and et == 0x86DD and len(buf) >= l3 + 6:
            buf[l3 + 4:l3 + 6] = src.pick((0, 1, 8, 0xFFFF)).to_bytes(2, "big")
        elif what == "udplen" and et == 0x0800 and len(buf) >= l3 + 28:
            ihl = (buf[l3] & 0xF) * 4
            if buf[l3 + 9] == 17 and len(buf) >= l3 + ihl + 6:
                buf[l3 + ihl + 4:l3 + ihl + 6] = src.pick((0, 7, 8, 9, 0xFFFF)).to_bytes(2, "big")
        elif what == "tcpoff" and et == 0x0800 and len(buf) >= l3 + 20:
            ihl = (buf[l3] & 0xF) * 4
            if buf[l3 + 9] == 6 and len(buf) >= l3 + ihl + 13:
                buf[l3 + ihl + 12] = src.pick((0, 0x10, 0x40, 0x50, 0xF0)) | (
                    buf[l3 + ihl + 12] & 0x0F)
        elif what == "tag" and len(buf) >= 12:
            tpid = src.pick(TPIDS)
            tag = struct.pack("!HH", tpid, src.pick(VIDS) | (src.integer(0, 7) << 13))
            buf[12:12] = tag
        elif what == "tpid" and len(buf) >= 14:
            buf[12:14] = src.pick((*TPIDS, 0x0800, 0x86DD, 0x0806, 0x0000, 0x05DC)).to_bytes(
                2, "big")
        elif what == "junk":
            buf += bytes(src.integer(0, 255) for _ in range(src.integer(1, 16)))
        elif what == "ethertype" and len(buf) > l3 >= 2:
            buf[l3 - 2:l3] = src.pick((0x0800, 0x86DD, 0x0806, 0x8100)).to_bytes(2, "big")
    return bytes(buf)


def vnet_header(src: Source, data: bytes) -> bytes:
    """A virtio-net header for ``data``: plain, a plausible one (checksum or GSO), or
    made up."""
    kind = src.pick(("none", "none", "csum", "gso", "gso", "bogus"))
    if kind == "none":
        return b""
    if kind == "bogus":
        return bytes(src.integer(0, 255) for _ in range(10))
    et, l3 = _l3_offset(data)
    v6 = et == 0x86DD
    proto = data[l3 + (6 if v6 else 9)] if len(data) > l3 + 9 else 6
    ihl = 40 if v6 else ((data[l3] & 0xF) * 4 if len(data) > l3 else 20)
    l4 = l3 + ihl
    udp = proto == 17
    csum_offset = 6 if udp else 16
    thlen = 8 if udp else ((data[l4 + 12] >> 4) * 4 if len(data) > l4 + 12 else 20)
    if kind == "csum":
        return struct.pack("<BBHHHH", F_NEEDS_CSUM, 0, 0, 0, l4, csum_offset)
    if udp:
        gso = src.pick((GSO_UDP_L4, GSO_UDP_L4, GSO_UDP))
    else:
        gso = GSO_TCPV6 if v6 else GSO_TCPV4
        gso |= src.pick((0, 0, GSO_ECN))
    return struct.pack("<BBHHHH", F_NEEDS_CSUM, gso, l4 + thlen,
                       src.pick((1, 8, 100, 536, 1400, 1448, 9000)), l4, csum_offset)


def make_input(src: Source) -> Input:
    """One fuzzed frame on one port."""
    port = src.pick(IN_PORTS)
    data = valid_frame(src)
    if src.integer(0, 2):
        data = mutate(src, data)
    elif src.integer(0, 9) == 0:  # now and then: bytes with no structure at all
        data = bytes(src.integer(0, 255) for _ in range(src.integer(0, 80)))
    vnet = vnet_header(src, data) if port in VNET_PORTS else b""
    return Input(port, data, vnet)


@dataclass
class FuzzSwitch:
    """The engine of :data:`CONFIG` on memory ports, with a recording ERSPAN sender."""

    engine: Engine
    ports: dict[str, MemoryPort]
    sender: RecordingSender
    clock: list[float] = field(default_factory=lambda: [1000.0])
    frames: int = 0

    def now(self) -> float:
        """The injected clock."""
        return self.clock[0]

    def close(self) -> None:
        """Close the engine."""
        self.engine.close()


class RecordingSenders(ErspanSenders):
    """Remote mirrors whose every session sends into one :class:`RecordingSender`
    (nothing leaves the process, also after a reload)."""

    def __init__(self, rec: RecordingSender) -> None:
        super().__init__()
        self.rec = rec

    def open(self, session: MirrorSession) -> RecordingSender:  # type: ignore[override]
        """The recorder."""
        return self.rec


def alternate_config() -> str:
    """:data:`CONFIG` with changes a live reload applies: the disabled port enabled,
    tighter MAC limit and storm control, a mirror without sampling, an ACL gone."""
    return (CONFIG.replace("dis: {type: memory, enabled: false", "dis: {type: memory")
            .replace("mac_limit: 3", "mac_limit: 1")
            .replace("broadcast: 2, multicast: 2", "broadcast: 1, multicast: 1")
            .replace("    sampling_rate: 3\n", "")
            .replace('        - {id: deny-mac, action: deny, direction: in, '
                     'remote_mac: "02:00:00:00:00:06"}\n', ""))


def make_switch(capture: str | None = None) -> FuzzSwitch:
    """Build and open the fuzzing switch; with ``capture`` (a file path) a capture with
    a filter and dropped frames runs on several ports."""
    cfg = load_text(CONFIG)
    ports: dict[str, MemoryPort] = {}
    gso = GsoSupport(frozenset({GSO_TCPV4, GSO_TCPV6}))

    def factory(name: str, pc: PortConfig) -> Port:
        if name in VNET_PORTS:  # v1 a device with TSO, v2 one without any GSO
            ports[name] = MemoryPort(name, vnet_hdr=True,
                                     gso=gso if name == "v1" else GsoSupport(frozenset()))
        else:
            ports[name] = MemoryPort(name)
        return ports[name]

    clock = [1000.0]
    rec = RecordingSender()
    engine = build_engine(cfg, factory, clock=lambda: clock[0], remote=RecordingSenders(rec))
    engine.open()
    if capture is not None:
        st = engine.state
        engine.add_capture(PortCapture(
            1, capture, {st.by_name[p]: p for p in ("a", "b", "t", "v1", "v2", "up")},
            "both", True, compile_filter("tcp or udp port 53 or vlan 10 or greater 200 or "
                                         "ip6 or arp"), 0, 200))
    return FuzzSwitch(engine, ports, rec, clock)


def reload(sw: FuzzSwitch, alternate: bool) -> None:
    """Apply :data:`CONFIG` or :func:`alternate_config` live."""
    sw.engine.reload(load_text(alternate_config() if alternate else CONFIG))


def _fate_delta(before: SwitchPortCounters, after: SwitchPortCounters) -> str:
    if after.forwarded != before.forwarded:
        return "forwarded"
    if after.consumed != before.consumed:
        return "consumed"
    for reason, n in after.rx_dropped.items():
        if n != before.rx_dropped.get(reason, 0):
            return reason
    return "nothing"


def _normal_outputs(sw: FuzzSwitch) -> int:
    """Frames that left ports as normal traffic (not mirror copies) since the last call."""
    n = 0
    for name, port in sw.ports.items():
        for f in port.take():
            if name in MIRROR_ONLY:
                continue
            d = f.data
            if (name == "up" and len(d) >= 16 and d[12:14] == b"\x81\x00"
                    and int.from_bytes(d[14:16], "big") & 0xFFF in RSPAN_VLANS):
                continue  # an RSPAN copy
            n += 1
    return n


def run_batch(sw: FuzzSwitch, batch: Sequence[Input], dt: float = 0.0,
              trace: bool = False) -> list[str]:
    """Send ``batch`` (frames of one port) through the engine; return what is wrong: the
    accounting invariant, and for a single frame its counted fate against the ports."""
    eng = sw.engine
    sw.clock[0] += dt
    port = batch[0].port
    rt = eng.state.port(port)
    if trace:
        for inp in batch:
            eng.trace(port, inp.data)  # must not raise either (and changes nothing)
    before = SwitchPortCounters(forwarded=rt.counters.forwarded,
                                consumed=rt.counters.consumed,
                                rx_dropped=dict(rt.counters.rx_dropped))
    replies_before = _replies(sw)
    tx_errors = eng.state.drops.total("tx-error")
    _normal_outputs(sw)  # (nothing pending: run_batch takes everything each time)
    eng.process(eng.state.by_name[port], [Frame(i.data, i.vnet) for i in batch])
    sw.frames += len(batch)
    problems = [a.describe() for a in accounting.check(eng.state)]
    out = _normal_outputs(sw)
    if len(batch) == 1 and _replies(sw) == replies_before:
        fate = _fate_delta(before, rt.counters)
        if fate == "nothing":
            problems.append(f"{batch[0]!r}: no fate counted")
        elif fate == "forwarded":
            if not out and eng.state.drops.total("tx-error") == tx_errors:
                problems.append(f"{batch[0]!r}: counted forwarded, nothing left a port")
        elif out:
            problems.append(f"{batch[0]!r}: counted {fate}, {out} frames left ports")
    return problems


def _replies(sw: FuzzSwitch) -> int:
    """Reject answers made so far: one per firewall-reject drop (their frames leave ports
    without having been received)."""
    return sw.engine.state.drops.total("firewall-reject")


def run_inputs(sw: FuzzSwitch, src: Source, steps: int,
               history: list[Input] | None = None,
               conversations: Conversations | None = None) -> list[str]:
    """``steps`` batches of fuzzed frames (1-6 frames of one port each): new ones, repeats
    of earlier ones (flows the cache now answers), steps of TCP conversations through the
    firewall; time passing, traces and housekeeping now and then. Stops at the first
    problem. Pass ``history``/``conversations`` to carry them across calls."""
    seen = [] if history is None else history
    conv = Conversations() if conversations is None else conversations

    def one() -> Input:
        r = src.integer(0, 11)
        if r < 3 and seen:
            old = src.pick(seen)
            return Input(old.port, mutate(src, old.data) if r == 0 else old.data, old.vnet)
        if r == 3:
            case = conv.next(src.pick)
            return Input(case.port, case.frame)
        new = make_input(src)
        seen.append(new)
        if len(seen) > 48:
            del seen[0]
        return new

    for _ in range(steps):
        first = one()
        batch = [first]
        if src.integer(0, 3) == 0:
            for _ in range(src.integer(1, 5)):
                more = one()
                batch.append(Input(first.port, more.data,
                                   more.vnet if first.port in VNET_PORTS else b""))
        dt = float(src.pick((0, 0, 0, 0, 0.01, 0.5, 1, 7, 40)))
        problems = run_batch(sw, batch, dt, trace=src.integer(0, 4) == 0)
        if problems:
            return problems
        if src.integer(0, 15) == 0:
            sw.engine.housekeeping(sw.now())
        if src.integer(0, 40) == 0:
            reload(sw, bool(src.integer(0, 1)))
        if src.integer(0, 40) == 0:  # a link goes down or comes back (seen by housekeeping)
            port = sw.ports[src.pick(("a", "t", "v2", "up"))]
            port.set_link(not port.link_up())
            sw.engine.housekeeping(sw.now())
    return []
