"""Which GSO frames a port sends whole, and what happens to the rest (issue 7 item 10).

The decision comes from the device's active offload features (``ethtool -k``
names); here the feature sets are written out by hand and the "device" is a
memory port (``vnet_hdr=True`` plus ``gso``) or a recording write function.
scapy checks every segment that was cut in software.
"""

from __future__ import annotations

import errno
import os

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from vspan.ports.base import Frame, PortCounters
from vspan.ports.memory import MemoryPort
from vspan.ports.tx import ALL_GSO, NO_GSO, GsoSupport, send_frames
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_STRUCT

#: What ``ethtool -k`` shows as on for a veth with default offloads (the parts that matter).
VETH = frozenset({
    "tx-checksum-ip-generic", "tx-scatter-gather", "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation",
    "tx-udp-segmentation", "tx-generic-segmentation",
})
#: ``ethtool -K veth tso off``: the TCP segmentation features go, the rest stay.
VETH_TSO_OFF = VETH - {"tx-tcp-segmentation", "tx-tcp-ecn-segmentation",
                       "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation"}
#: A TAP whose reader (QEMU 7.2) negotiated checksum and TSO but no USO.
TAP_QEMU = frozenset({"tx-checksum-ip-generic", "tx-scatter-gather", "tx-tcp-segmentation",
                      "tx-tcp-ecn-segmentation", "tx-tcp6-segmentation"})


def super_frame(ipv6: bool = False, size: int = 6000, mss: int = 1448,
                gso_extra: int = 0) -> tuple[Frame, bytes]:
    """A TCP GSO super-frame as a vnet-header port receives it; and its payload."""
    payload = os.urandom(size)
    l3: Packet = IPv6(src="fd00::1", dst="fd00::2") if ipv6 else IP(src="10.0.0.1",
                                                                   dst="10.0.0.2")
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / TCP(
        sport=40000, dport=5201, seq=1000, flags="PA") / Raw(payload)
    raw = bytearray(bytes(pkt))
    start = 14 + (40 if ipv6 else 20)
    # the kernel leaves the pseudo-header sum (not complemented) in the checksum field
    src_dst = raw[22:54] if ipv6 else raw[26:34]
    length = len(raw) - start
    pseudo = src_dst + (length.to_bytes(4, "big") + bytes((0, 0, 0, 6)) if ipv6 else
                        bytes((0, 6)) + length.to_bytes(2, "big"))
    raw[start + 16 : start + 18] = (int.from_bytes(pseudo, "big") % 0xFFFF).to_bytes(2, "big")
    gso = (GSO_TCPV6 if ipv6 else GSO_TCPV4) | gso_extra
    vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, gso, start + 20, mss, start, 16)
    return Frame(bytes(raw), vnet), payload


def check_segments(frames: list[Frame], payload: bytes, mss: int = 1448) -> None:
    """Plain wire frames whose checksums scapy recomputes to the same value."""
    assert frames and all(f.vnet == b"" for f in frames)
    got = b""
    for f in frames:
        pkt = Ether(f.data)
        assert len(pkt[Raw].load) <= mss
        chk = pkt[TCP].chksum
        del pkt[TCP].chksum
        assert Ether(bytes(pkt))[TCP].chksum == chk
        got += pkt[Raw].load
    assert got == payload


# ------------------------------------------------------------------ decision


@pytest.mark.parametrize(("features", "summary"), [
    (VETH, "tcp4,tcp6,ecn,udp"),
    (VETH_TSO_OFF, "udp"),
    (TAP_QEMU, "tcp4,tcp6,ecn"),
    (frozenset({"tx-tcp-segmentation"}), "tcp4"),
    (frozenset(), "none"),
])
def test_gso_support_from_features(features: frozenset[str], summary: str) -> None:
    gso = GsoSupport.from_features(features)
    assert gso.describe() == summary
    assert gso.takes_tcp() == ("tcp4" in summary and "tcp6" in summary)


def test_takes_follows_type_ecn_and_size() -> None:
    tcp4, _ = super_frame()
    ecn, _ = super_frame(gso_extra=GSO_ECN)
    no_ecn = GsoSupport.from_features(VETH - {"tx-tcp-ecn-segmentation"}, max_size=65536)
    assert no_ecn.takes(tcp4.vnet, len(tcp4.data))
    assert not no_ecn.takes(ecn.vnet, len(ecn.data))  # CWR handling needs the ECN feature
    assert not no_ecn.takes(tcp4.vnet, 65536)  # gso_max_size reached: the kernel would cut
    assert NO_GSO.takes(b"", 9000) and NO_GSO.takes(VNET_STRUCT.pack(F_NEEDS_CSUM, 0, 0, 0,
                                                                      34, 16), 1500)
    assert not NO_GSO.takes(tcp4.vnet, len(tcp4.data))
    udp = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_UDP_L4, 42, 1400, 34, 6)
    assert GsoSupport.from_features(VETH).takes(udp, 3000)
    assert not GsoSupport.from_features(TAP_QEMU).takes(udp, 3000)


# ------------------------------------------------------- memory port as device


def test_device_without_tcp4_tso_gets_segments_and_keeps_the_rest() -> None:
    port = MemoryPort("m", vnet_hdr=True, gso=GsoSupport.from_features({"tx-tcp6-segmentation"}))
    v4, payload4 = super_frame()
    v6, _ = super_frame(ipv6=True)
    plain = Frame(b"\xff" * 12 + b"\x88\xb5" + b"x" * 50)
    assert port.send_batch([v4, v6, plain]) == 3
    out = port.take()
    check_segments(out[:5], payload4)  # 6000 bytes: 4 x 1448 + 208
    assert out[5].data == v6.data and out[5].vnet == v6.vnet  # the device segments this one
    assert out[6].data == plain.data
    c = port.counters
    assert (c.tx_segmented, c.tx_segments, c.tx_frames, c.tx_errors) == (1, 5, 7, 0)


def test_device_with_every_offload_takes_everything_whole() -> None:
    port = MemoryPort("m", vnet_hdr=True, gso=GsoSupport.from_features(VETH))
    frames = [super_frame()[0], super_frame(ipv6=True)[0], super_frame(gso_extra=GSO_ECN)[0]]
    assert port.send_batch(frames) == 3
    assert [(f.data, f.vnet) for f in port.take()] == [(f.data, f.vnet) for f in frames]
    assert port.counters.tx_segmented == 0


def test_hostile_super_frame_is_counted_not_raised() -> None:
    port = MemoryPort("m", vnet_hdr=True, gso=NO_GSO)
    good, payload = super_frame()
    bad_size = Frame(good.data, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16))
    not_tcp = Frame(b"\xff" * 12 + b"\x08\x00" + b"\x45" + b"\x00" * 60, good.vnet)
    runt = Frame(b"\x00" * 10, good.vnet)
    assert port.send_batch([bad_size, not_tcp, runt, good]) == 1
    check_segments(port.take(), payload)
    assert port.counters.tx_errors == 3 and port.counters.tx_segmented == 1


# --------------------------------------------------------- the send loop itself


class Recorder:
    """write/gather functions that record buffers and fail on demand."""

    def __init__(self, fail_gso_with: int | None = None) -> None:
        self.bufs: list[bytes] = []
        self.fail = fail_gso_with
        self.errors: list[int] = []

    def write(self, buf: bytes) -> None:
        if self.fail is not None and buf[1]:
            raise OSError(self.fail, os.strerror(self.fail))
        self.bufs.append(buf)

    def gather(self, parts: tuple[bytes, bytes]) -> None:
        self.write(parts[0] + parts[1])

    def on_error(self, exc: OSError) -> None:
        self.errors.append(exc.errno or 0)


def test_kernel_gso_sends_whole_and_counts() -> None:
    rec, counters = Recorder(), PortCounters()
    frame, _ = super_frame()
    sent = send_frames([frame], rec.write, rec.gather, counters, rec.on_error, NO_GSO,
                       kernel_gso=True)
    assert sent == 1 and rec.bufs == [frame.vnet + frame.data]
    assert (counters.tx_segmented, counters.tx_segments, counters.tx_frames) == (1, 0, 1)


def test_enobufs_on_bypass_is_retried_in_software() -> None:
    """The bypass path refuses a frame the device cannot segment: cut it and send again."""
    rec, counters = Recorder(fail_gso_with=errno.ENOBUFS), PortCounters()
    frame, payload = super_frame()
    sent = send_frames([frame], rec.write, rec.gather, counters, rec.on_error, ALL_GSO,
                       retry_in_software=True)
    assert sent == 1 and rec.errors == []
    check_segments([Frame(b[10:]) for b in rec.bufs], payload)
    assert counters.tx_segmented == 1 and counters.tx_errors == 0
    # without the retry (or for another errno) it is an error, as before
    for retry, err in ((False, errno.ENOBUFS), (True, errno.EMSGSIZE)):
        rec, counters = Recorder(fail_gso_with=err), PortCounters()
        assert send_frames([frame], rec.write, rec.gather, counters, rec.on_error, ALL_GSO,
                           retry_in_software=retry) == 0
        assert rec.errors == [err] and counters.tx_errors == 1 and rec.bufs == []
