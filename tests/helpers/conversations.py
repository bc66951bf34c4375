"""Scapy-built TCP/UDP/ICMP conversations with correct sequence numbers, and files of them.

A :class:`TcpConv` keeps each side's next sequence number and IP ID, so a
test writes the conversation it means (``c.syn(); c.synack(); c.ack()``)
and gets frames a real stack could have sent, 1 ms apart by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import EDecimal

from vspan.capture.pcapng import Interface, PcapngWriter

T0 = 1_763_700_000_000_000_000  # ns
MS = 1_000_000


@dataclass
class Side:
    """One end: address, port, MAC, next sequence number, next IP ID."""

    addr: str
    port: int
    mac: str
    seq: int
    ip_id: int
    window: int = 64240


class TcpConv:
    """Frames of one TCP connection, client = originator."""

    def __init__(self, client: tuple[str, int] = ("10.0.0.1", 40000),
                 server: tuple[str, int] = ("10.0.0.2", 80), *, t0: int = T0,
                 step: int = MS, vlan: int | None = None, isn: tuple[int, int] = (1000, 5000),
                 wscale: int | None = 7) -> None:
        self.c = Side(client[0], client[1], "02:00:00:00:00:01", isn[0], 100)
        self.s = Side(server[0], server[1], "02:00:00:00:00:02", isn[1], 900)
        self.t = t0
        self.step = step
        self.vlan = vlan
        self.wscale = wscale
        self.frames: list[tuple[int, bytes]] = []  # (ts ns, frame)

    def side(self, who: str) -> tuple[Side, Side]:
        return (self.c, self.s) if who == "c" else (self.s, self.c)

    def emit(self, who: str, flags: str, payload: bytes = b"", *, seq: int | None = None,
             ack: int | None = None, window: int | None = None, ip_id: int | None = None,
             advance: bool = True) -> bytes:
        """One segment from ``who`` (``c``/``s``); sequence numbers advance unless given."""
        me, peer = self.side(who)
        opts: list[tuple[str, int]] = []
        if "S" in flags:
            opts = [("MSS", 1460)] + ([("WScale", self.wscale)] if self.wscale is not None
                                      else [])
        s = me.seq if seq is None else seq
        a = peer.seq if ack is None else ack
        is_v6 = ":" in me.addr
        ip: Packet = (IPv6(src=me.addr, dst=peer.addr) if is_v6 else
                      IP(src=me.addr, dst=peer.addr, id=me.ip_id if ip_id is None else ip_id,
                         flags="DF"))
        tcp = TCP(sport=me.port, dport=peer.port, flags=flags, seq=s,
                  ack=a if "A" in flags else 0,
                  window=me.window if window is None else window, options=opts)
        l2: Packet = Ether(src=me.mac, dst=peer.mac)
        if self.vlan is not None:
            l2 = l2 / Dot1Q(vlan=self.vlan)
        frame = bytes(l2 / ip / tcp / Raw(payload)) if payload else bytes(l2 / ip / tcp)
        if ip_id is None:
            me.ip_id += 1
        if seq is None and advance:
            me.seq += len(payload) + ("S" in flags) + ("F" in flags)
        self.frames.append((self.t, frame))
        self.t += self.step
        return frame

    # the usual segments
    def syn(self) -> bytes:
        return self.emit("c", "S")

    def synack(self) -> bytes:
        return self.emit("s", "SA")

    def ack(self, who: str = "c") -> bytes:
        return self.emit(who, "A")

    def data(self, who: str, n: int, fill: bytes = b"x") -> bytes:
        return self.emit(who, "PA", (fill * n)[:n])

    def fin(self, who: str) -> bytes:
        return self.emit(who, "FA")

    def rst(self, who: str, with_ack: bool = True) -> bytes:
        return self.emit(who, "RA" if with_ack else "R")

    def handshake(self) -> None:
        self.syn()
        self.synack()
        self.ack()

    def close(self) -> None:
        """FIN from the client, FIN from the server, last ACK."""
        self.fin("c")
        self.fin("s")
        self.ack("c")


def udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ip_id: int = 1) -> bytes:
    """One UDP frame."""
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src=src[0], dst=dst[0], id=ip_id) / UDP(sport=src[1], dport=dst[1])
                 / Raw(payload))


def icmp_echo(src: str, dst: str, reply: bool = False, seq: int = 1) -> bytes:
    """An ICMP echo request (or reply)."""
    return bytes(Ether() / IP(src=src, dst=dst, id=seq)
                 / ICMP(type=0 if reply else 8, id=7, seq=seq) / Raw(b"ping" * 8))


def write_pcapng(path: Path, packets: Iterable[tuple[int, str, bytes]],
                 interfaces: Sequence[str] = ("eth0",), comments: dict[int, str] | None = None,
                 packet_ids: dict[int, int] | None = None) -> None:
    """(ts ns, interface name, frame) into a pcapng with one interface block per name."""
    with PcapngWriter(str(path), comment="test input") as w:
        ids = {name: w.add_interface(Interface(name)) for name in interfaces}
        for i, (ts, name, frame) in enumerate(packets):
            w.write_packet(ids[name], frame, ts,
                           comments=[comments[i]] if comments and i in comments else (),
                           packet_id=packet_ids.get(i) if packet_ids else None)


def scapy_packets(frames: Iterable[tuple[int, bytes]]) -> list[Packet]:
    """Frames with their times as scapy packets (for ``wrpcap``)."""
    out: list[Packet] = []
    for ts, frame in frames:
        p = Ether(frame)
        p.time = EDecimal(ts) / EDecimal(1_000_000_000)
        out.append(p)
    return out
