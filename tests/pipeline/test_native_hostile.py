"""Hostile input through the native replay: frames cut at every length, garbage, and
offload headers with nonsense offsets never crash the switch, and the native key has
the fast key's equivalence classes (two frames share a native key exactly when they
share a Python fast key)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tests.helpers.differential import PLAIN, build, observe
from vspan.datapath import native
from vspan.datapath.flowkey import fast_key
from vspan.ports.base import Frame

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="vspan.datapath._native was not built (no C compiler?)")

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _flows() -> list[bytes]:
    eth = Ether(src=A, dst=B)
    return [bytes(p) for p in (
        eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=80) / Raw(b"x" * 300),
        eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / Raw(b"y" * 50),
        eth / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / Raw(b"z" * 10),
        eth / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22),
    )]


def test_truncated_and_garbage_frames_through_native_entries() -> None:
    """Every flow is cached (and installed natively) first; then its frame cut at every
    length, with garbage bytes, and with random virtio-net headers, through both paths:
    nothing crashes and both do the same."""
    (nsw, nrec), (psw, prec) = build(PLAIN, "native"), build(PLAIN, "python")
    rng = random.Random(7)
    try:
        flows = _flows()
        for sw in (nsw, psw):
            sw.send("b", bytes(Ether(src=B, dst=A) / IP() / UDP()))  # b learned
            for f in flows:
                for _ in range(3):
                    sw.send("a", f)
        nat = nsw.engine.fastpath.native
        assert nat is not None and len(nat) > 0 and nat.replayed > 0
        batches: list[list[Frame]] = []
        for f in flows:
            batches.append([Frame(f[:n]) for n in range(len(f) + 1)])
            junk = bytearray(f)
            for _ in range(200):
                g = bytearray(junk)
                for _ in range(rng.randint(1, 6)):
                    g[rng.randrange(len(g))] = rng.randrange(256)
                batches.append([Frame(bytes(g)), Frame(f)])
            batches.append([Frame(f, bytes(rng.randrange(256) for _ in range(10)))
                            for _ in range(100)])
        batches.append([Frame(bytes(rng.randrange(256) for _ in range(rng.randint(0, 120))))
                        for _ in range(300)])
        for batch in batches:
            for sw in (nsw, psw):
                sw.engine.process(sw.engine.state.by_name["a"],
                                  [Frame(fr.data, fr.vnet) for fr in batch])
            assert observe(nsw, nrec) == observe(psw, prec)
        assert nat.replayed > 150  # cut frames still carrying a cached key among them
    finally:
        nsw.engine.close()
        psw.engine.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.binary(min_size=0, max_size=80),
       st.integers(0, 2**31 - 1))
def test_native_key_has_the_fast_keys_classes(a: bytes, b: bytes, port: int) -> None:
    base = bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    for data in (a, base[: len(a)] + a, base + a, base[:14] + a, a + base):
        fk = fast_key(data, port)
        nk = native.frame_key(data, port)
        assert (nk is None) == (fk is None)
        if fk is not None:
            assert nk == native.key_bytes(fk)
    fa, fb = fast_key(base + a, port), fast_key(base[:30] + b, port)
    if fa is not None and fb is not None:
        assert (fa == fb) == (native.key_bytes(fa) == native.key_bytes(fb))
