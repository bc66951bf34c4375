"""ERSPAN copies of GSO super-frames (a VM's TCP with offloads) sent by the native replay:
each wire segment is written straight into the run's send buffer, and a run whose copies
pass 64 KiB sends them before the run ends (while their bytes are in the cache). What
reaches the wire must be what the Python replay sends — every segment, in order, with
its GRE sequence number, IPv4 id, T bit (cut to the mirror's length or the path MTU) and
the same counters."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.helpers.differential import build_wired, observe
from vspan.datapath import native
from vspan.ports.base import Frame
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="vspan.datapath._native was not built (no C compiler?)")

CONFIG = """
ports:
  a: {{type: memory}}
  b: {{type: memory}}
mirrors:
  er:
    sources: [{{port: a, direction: ingress}}]
{extra}    erspan: {{type: erspan3, remote_ip: 127.0.0.1, session_id: 7{erspan}}}
"""
MSS = 1448


def super_frame(rng: random.Random, seq: int, size: int) -> Frame:
    """A TCP super-frame a -> b of ``size`` payload bytes asking for segmentation."""
    data = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.0.0.1", dst="10.0.0.2", id=rng.randrange(65536))
                 / TCP(sport=40000, dport=5201, seq=seq, flags="PA")
                 / Raw(rng.randbytes(size)))
    return Frame(data, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 14 + 40, MSS, 14 + 20, 16))


@pytest.mark.parametrize("extra,erspan", [
    ("", ""),
    ("    mirrored_packet_length: 200\n", ""),  # every segment cut to the mirror's length
    ("", ", mtu: 1000"),  # every segment cut to the path MTU
], ids=["whole", "mirror-cut", "mtu-cut"])
def test_segmented_copies_are_the_python_ones(extra: str, erspan: str) -> None:
    config = CONFIG.format(extra=extra, erspan=erspan)
    rng = random.Random(5)
    # two warm-up frames (the second is replayed in Python and caches the flow), then
    # runs of super-frames whose copies pass 64 KiB within one run, and an odd-sized
    # last segment
    batches = [[super_frame(rng, 1000, 3000)], [super_frame(rng, 4000, 3000)],
               [super_frame(rng, 10_000 + 30_000 * i, 30_000) for i in range(4)],
               [super_frame(rng, 200_000, 20_001), super_frame(rng, 220_001, 7)]]
    pair = [build_wired(config, mode) for mode in ("native", "python")]
    (nsw, nrec), (psw, prec) = pair
    try:
        nat = nsw.engine.fastpath.native
        assert nat is not None and psw.engine.fastpath.native is None
        for batch in batches:
            for sw in (nsw, psw):
                idx = sw.engine.state.by_name["a"]
                sw.engine.process(idx, [Frame(f.data, f.vnet) for f in batch])
            a, b = observe(nsw, nrec), observe(psw, prec)
            assert a == b, [k for k in a if a[k] != b.get(k)]
            segments = sum(-(-(len(f.data) - 54) // MSS) for f in batch)
            assert [how for how, _ in a["erspan"]] == ["link"] * segments
        assert nat.replayed >= 6, "the super-frames were not replayed natively"
    finally:
        for sw in (nsw, psw):
            sw.engine.close()
        nrec.close()
        prec.close()
