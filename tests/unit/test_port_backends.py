"""Port backends without root: the TPACKET_V2 ring reader and the memory port."""

from __future__ import annotations

import mmap
import os
import select
import struct
import threading
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from vspan.ports import constants as c
from vspan.ports.afpacket import DEFAULT_FRAME_SIZE, AfPacketPort, RingGeometry, RxRing
from vspan.ports.base import Frame, PortCounters, PortError
from vspan.ports.memory import MemoryPort
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT

# ------------------------------------------------------------------ ring geometry


def test_default_geometry_holds_gso_frames_in_whole_blocks() -> None:
    g = RingGeometry(256, DEFAULT_FRAME_SIZE)
    assert g.block_size == 1 << 20
    assert g.frames_per_block == 15
    assert g.frame_nr >= 256 and g.frame_nr % 15 == 0
    assert g.frame_size % c.TPACKET_ALIGNMENT == 0
    # tpacket2 header + sockaddr_ll + vnet + Ethernet + VLAN + 64 KiB IP packet fit
    assert g.frame_size >= 128 + 18 + 65535
    offs = g.offsets()
    assert len(offs) == g.frame_nr == len(set(offs))
    assert all(o % 4 == 0 and o + g.frame_size <= g.size for o in offs)
    bs, bn, fs, fn = c.TPACKET_REQ.unpack(g.request())
    assert (bs, bn, fs, fn) == (g.block_size, g.block_nr, g.frame_size, g.frame_nr)


@pytest.mark.parametrize(("frames", "size"), [(1, 256), (7, 2048), (100, 9000), (3, 70000)])
def test_geometry_is_what_the_kernel_accepts(frames: int, size: int) -> None:
    g = RingGeometry(frames, size)
    assert g.block_size % 4096 == 0 and g.block_size & (g.block_size - 1) == 0
    assert g.frame_size >= size and g.frame_size % 16 == 0
    assert g.frames_per_block * g.block_nr == g.frame_nr >= frames
    assert g.frame_size * g.frames_per_block <= g.block_size


@pytest.mark.parametrize(("frames", "size"), [(0, 2048), (8, 16), (8, 64 << 20)])
def test_geometry_rejects_nonsense(frames: int, size: int) -> None:
    with pytest.raises(PortError):
        RingGeometry(frames, size)


def test_missing_interface_is_a_clear_port_error() -> None:
    port = AfPacketPort("p", "vp2-nonexist0")
    with pytest.raises(PortError, match="does not exist"):
        port.open()
    port.close()  # harmless
    with pytest.raises(PortError, match="valid interface name"):
        AfPacketPort("p", "x" * 16).open()


# ------------------------------------------------------------------ ring reader

MAC_OFF = 82  # any tp_mac past the tpacket2 header + sockaddr_ll + vnet header (>= 42)


def put(
    buf: mmap.mmap,
    off: int,
    data: bytes,
    *,
    status: int = c.TP_STATUS_USER,
    vnet: bytes = b"",
    tci: int = 0,
    tpid: int = 0,
    tp_len: int | None = None,
    mac: int = MAC_OFF,
    sec: int = 5,
    nsec: int = 7,
) -> None:
    """Write one slot the way the kernel does."""
    c.TPACKET2_HDR.pack_into(
        buf,
        off,
        status,
        len(data) if tp_len is None else tp_len,
        len(data),
        mac,
        mac + 14,
        sec,
        nsec,
        tci,
        tpid,
    )
    buf[off + mac - 10 : off + mac] = vnet or bytes(10)
    buf[off + mac : off + mac + len(data)] = data


def status_of(buf: mmap.mmap, off: int) -> int:
    value: int = struct.unpack_from("=I", buf, off)[0]
    return value


Ring = tuple[mmap.mmap, RingGeometry, RxRing]


@pytest.fixture
def ring() -> Iterator[Ring]:
    """An 8-slot ring in an anonymous mapping (the kernel's side is played by put())."""
    g = RingGeometry(8, 4096)
    assert (g.block_size, g.frames_per_block, g.frame_nr) == (4096, 1, 8)
    buf = mmap.mmap(-1, g.size)
    rx = RxRing(buf, g)
    yield buf, g, rx
    rx.release()
    buf.close()


ETH_HDR = bytes.fromhex("0200000000020200000000010800")


def test_ring_restores_vlan_tag_and_shifts_vnet(
    ring: Ring,
) -> None:
    buf, g, rx = ring
    offs = g.offsets()
    plain = ETH_HDR + b"p" * 50
    put(buf, offs[0], plain)
    vn = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    put(
        buf,
        offs[1],
        ETH_HDR + b"t" * 60,
        vnet=vn,
        tci=0x2042,
        status=c.TP_STATUS_USER | c.TP_STATUS_VLAN_VALID,
    )
    put(
        buf,
        offs[2],
        ETH_HDR + b"q" * 10,
        tci=7,
        tpid=0x88A8,
        status=c.TP_STATUS_USER | c.TP_STATUS_VLAN_VALID | c.TP_STATUS_VLAN_TPID_VALID,
    )
    put(buf, offs[3], ETH_HDR, tci=0, status=c.TP_STATUS_USER | c.TP_STATUS_VLAN_VALID)
    big = ETH_HDR + os.urandom(3000)  # long frames take the one-copy join path
    put(buf, offs[4], big, vnet=vn, tci=100, status=c.TP_STATUS_USER | c.TP_STATUS_VLAN_VALID)
    counters = PortCounters()
    frames = rx.drain(64, counters)
    assert len(frames) == 5
    assert frames[4].data == big[:12] + b"\x81\x00\x00\x64" + big[12:]
    assert frames[4].vnet == frames[1].vnet
    assert frames[0].data == plain and frames[0].vnet == b""
    assert frames[0].ts_ns == 5_000_000_007
    assert frames[1].data == ETH_HDR[:12] + b"\x81\x00\x20\x42" + ETH_HDR[12:] + b"t" * 60
    assert VNET_STRUCT.unpack(frames[1].vnet) == (F_NEEDS_CSUM, GSO_TCPV4, 58, 1448, 38, 16)
    assert frames[2].data[12:16] == b"\x88\xa8\x00\x07"
    assert frames[3].data[12:16] == b"\x81\x00\x00\x00"  # priority tag (VID 0) kept
    assert all(status_of(buf, o) == c.TP_STATUS_KERNEL for o in offs[:5])
    assert counters.rx_frames == 5
    assert counters.rx_bytes == sum(len(f.data) for f in frames)
    assert rx.drain(64, counters) == []


def test_ring_release_touches_only_the_status_word(
    ring: Ring,
) -> None:
    buf, g, rx = ring
    off = g.offsets()[0]
    put(buf, off, ETH_HDR + b"x" * 20)
    before = bytes(buf)
    rx.drain(1, PortCounters())
    after = bytes(buf)
    diff = [i for i in range(len(buf)) if before[i] != after[i]]
    assert diff == [off]  # only the low byte of tp_status (USER -> KERNEL)


def test_ring_drops_truncated_and_corrupt_slots(
    ring: Ring,
) -> None:
    buf, g, rx = ring
    offs = g.offsets()
    put(buf, offs[0], ETH_HDR + b"a" * 40, tp_len=9000)  # cut to fit the slot
    put(buf, offs[1], ETH_HDR + b"b" * 4, mac=20)  # tp_mac inside the header: corrupt
    c.TPACKET2_HDR.pack_into(buf, offs[2], c.TP_STATUS_USER, 4050, 4050, 82, 96, 0, 0, 0, 0)
    put(buf, offs[3], b"\x01\x02\x03")  # runt: passed on for the pipeline to judge
    put(buf, offs[4], b"", status=c.TP_STATUS_USER | c.TP_STATUS_VLAN_VALID, tci=5)
    counters = PortCounters()
    frames = rx.drain(64, counters)
    assert [f.data for f in frames] == [b"\x01\x02\x03", b""]
    assert counters.rx_errors == 3
    assert all(status_of(buf, o) == 0 for o in offs[:5])


def test_ring_wraps_and_respects_max_frames(ring: Ring) -> None:
    buf, g, rx = ring
    offs = g.offsets()
    counters = PortCounters()
    seen: list[bytes] = []
    for round_ in range(3):
        for i, off in enumerate(offs):
            put(buf, off, ETH_HDR + bytes([round_, i]))
        first = rx.drain(5, counters)
        assert len(first) == 5
        seen += [f.data[-2:] for f in first + rx.drain(64, counters)]
    assert seen == [bytes([r, i]) for r in range(3) for i in range(8)]
    assert counters.rx_frames == 24


def test_ring_stops_at_kernel_owned_slot(ring: Ring) -> None:
    buf, g, rx = ring
    offs = g.offsets()
    put(buf, offs[0], ETH_HDR + b"1")
    put(buf, offs[2], ETH_HDR + b"3")  # slot 1 still the kernel's: order is kept
    assert [f.data[-1:] for f in rx.drain(64, PortCounters())] == [b"1"]
    put(buf, offs[1], ETH_HDR + b"2", status=c.TP_STATUS_USER | c.TP_STATUS_LOSING)
    assert [f.data[-1:] for f in rx.drain(64, PortCounters())] == [b"2", b"3"]
    assert rx.losing


# ------------------------------------------------------------------ memory port


def readable(fd: int, timeout: float = 0.0) -> bool:
    r, _, _ = select.select([fd], [], [], timeout)
    return bool(r)


def test_memory_port_inject_recv_and_eventfd() -> None:
    with MemoryPort("m") as port:
        fd = port.fileno()
        assert not readable(fd)
        assert port.inject(b"a" * 60, Frame(b"b" * 60), bytearray(b"c" * 60)) == 3
        assert readable(fd)
        assert [f.data[:1] for f in port.recv_batch(2)] == [b"a", b"b"]
        assert readable(fd)  # one still waiting
        assert [f.data[:1] for f in port.recv_batch(2)] == [b"c"]
        assert not readable(fd)
        assert port.recv_batch() == []
        assert port.counters.rx_frames == 3 and port.counters.rx_bytes == 180
    with pytest.raises(PortError):
        port.fileno()
    port.close()


def test_memory_port_wakes_an_epoll_from_another_thread() -> None:
    port = MemoryPort("m")
    port.open()
    ep = select.epoll()
    try:
        ep.register(port.fileno(), select.EPOLLIN)
        t = threading.Timer(0.05, port.inject, args=(b"x" * 60,))
        t.start()
        events = ep.poll(5)
        t.join()
        assert events and events[0][0] == port.fileno()
        assert len(port.recv_batch()) == 1
    finally:
        ep.close()
        port.close()


def gso_frame() -> tuple[bytes, bytes, bytes]:
    pkt = Ether(
        bytes(
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / Dot1Q(vlan=9)
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(flags="PA")
            / Raw(os.urandom(4000))
        )
    )
    start = 14 + 4 + 20
    raw = bytearray(bytes(pkt))
    raw[start + 16 : start + 18] = b"\x12\x34"  # not the real checksum: must be redone
    # the pseudo-header sum the kernel would leave in the field
    ip = raw[18:38]
    pseudo = ip[12:20] + bytes((0, 6)) + (len(raw) - start).to_bytes(2, "big")
    s = int.from_bytes(pseudo, "big") % 0xFFFF
    raw[start + 16 : start + 18] = s.to_bytes(2, "big")
    vn = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, start + 20, 1000, start, 16)
    return bytes(raw), vn, bytes(pkt[Raw])


def test_memory_port_finalizes_offloads_by_default() -> None:
    data, vn, payload = gso_frame()
    port = MemoryPort("m")
    assert port.send_batch([Frame(data, vn), Frame(b"plain" * 20)]) == 2
    out = port.take()
    assert len(out) == 5  # 4000 bytes in 1000-byte segments + the plain frame
    assert all(f.vnet == b"" for f in out)
    segs = [Ether(f.data) for f in out[:4]]
    assert b"".join(bytes(s[Raw]) for s in segs) == payload
    for s in segs:
        chk = s[TCP].chksum
        del s[TCP].chksum
        assert Ether(bytes(s))[TCP].chksum == chk
    assert out[4].data == b"plain" * 20
    assert port.take() == []
    assert port.counters.tx_frames == 5


def test_memory_port_with_vnet_keeps_frames_and_counts_bad_ones() -> None:
    data, vn, _ = gso_frame()
    keep = MemoryPort("k", vnet_hdr=True)
    assert keep.send_batch([Frame(data, vn)]) == 1
    assert keep.take_bytes() == [data]
    assert keep.info().vnet_hdr
    plain = MemoryPort("p")
    bad = Frame(data, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 0, 0, 38, 16))  # gso_size 0
    assert plain.send_batch([bad, Frame(b"ok" * 30)]) == 1
    assert plain.counters.tx_errors == 1
    assert plain.take_bytes() == [b"ok" * 30]


def test_memory_port_link_down() -> None:
    port = MemoryPort("m", mac=b"\x02" * 6, mtu=9000)
    port.open()
    assert port.link_up()
    port.set_link(False)
    assert not port.link_up()
    assert port.inject(b"x" * 60) == 0
    assert port.send_batch([Frame(b"y" * 60)]) == 0
    assert port.counters.rx_dropped == 1 and port.counters.tx_errors == 1
    port.set_link(True)
    assert port.inject(b"z" * 60) == 1 and port.pending == 1
    info = port.info()
    assert (info.kind, info.mac, info.mtu) == ("memory", b"\x02" * 6, 9000)
    port.close()
    port.close()
