"""Native replay against Python replay: the same frames through two switches that differ
only in ``switch.fastpath``, compared after every batch (every output byte, every
counter, every table).

Two configurations: the agreement harness's (:data:`tests.helpers.agreement.CONFIG`:
ACLs, meters, storm limits, a stateful extended ACL and a default-drop firewall, so
most flows carry checks and go through Python, frame by frame interleaved with the
native ones) and :data:`PLAIN` (the same ports, VLANs, MTU and mirrors without policy:
almost every flow is replayed natively).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from tests.helpers.agreement import (
    CONFIG,
    Case,
    Conversations,
    RecordingSender,
    make,
    random_case,
    snapshot,
)
from tests.helpers.wiresender import WireRecorder
from tests.pipeline.harness import Switch
from vspan.datapath.accounting import check
from vspan.mirror.senders import erspan_config
from vspan.ports.base import Frame
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT

PLAIN = CONFIG.split("firewall:")[0].replace("""    policy:
      acls:
        - {id: meter-a, action: meter, direction: both, remote_ip: any}
        - {id: deny-smtp-net, action: deny, direction: out, remote_ip: 10.9.0.0/16}
      guards:
        storm: {broadcast: 2, multicast: 2, unknown_unicast: 5, burst: 1}
""", "").replace("""    policy:
      extended_acls:
        - {id: x-out, action: allow, direction: out, weight: 100, protocol: udp,
           stateful: true, idle_timeout: 30}
        - {id: x-in, action: deny, direction: in, weight: 10, protocol: udp}
""", "")


@contextmanager
def fastpath(mode: str) -> Iterator[None]:
    """``VSPAN_FASTPATH=mode`` while a switch is built."""
    old = os.environ.get("VSPAN_FASTPATH")
    os.environ["VSPAN_FASTPATH"] = mode
    try:
        yield
    finally:
        if old is None:
            del os.environ["VSPAN_FASTPATH"]
        else:
            os.environ["VSPAN_FASTPATH"] = old


class Recorder(Protocol):
    """Where a switch's ERSPAN copies are recorded."""

    def take(self) -> list[Any]:
        """The copies since the last call."""
        ...


def build(config: str, mode: str) -> tuple[Switch, RecordingSender]:
    """The switch of ``config`` with the given fast path and a recording ERSPAN sender."""
    with fastpath(mode):
        return make(config)


def build_wired(config: str, mode: str) -> tuple[Switch, WireRecorder]:
    """The switch of ``config`` with the given fast path and its one ERSPAN session sent
    by a real RawGreSender on socket pairs, with the link-layer path."""
    sw, _ = build(config, mode)
    wired: WireRecorder | None = None
    for m in sw.engine.state.mirrors.values():
        e = m.config.erspan
        if e is not None:
            assert wired is None, "one ERSPAN session"
            wired = WireRecorder(erspan_config(m.config))
            m.sender = wired.sender
    assert wired is not None
    return sw, wired


def offloaded(case: Case, gso_size: int) -> Frame:
    """The case's frame with a virtio-net header asking for a TCP checksum and, when
    ``gso_size``, segmentation (what a VM with offloads sends)."""
    data = case.frame
    l3 = 18 if data[12:14] == b"\x81\x00" else 14
    vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4 if gso_size else 0,
                            l3 + 40 if gso_size else 0, gso_size, l3 + 20, 16)
    return Frame(data, vnet)


def frames_of(cases: Sequence[Case], pick: Callable[[Sequence[Any]], Any]) -> list[Frame]:
    """Frames for the cases: some TCP ones with offload headers."""
    out = []
    for c in cases:
        d = c.frame
        l3 = 18 if d[12:14] == b"\x81\x00" else 14
        tcp = len(d) >= l3 + 40 and d[l3 + 9] == 6 and d[l3 - 2:l3] == b"\x08\x00"
        how = pick(["plain"] * 6 + ["csum", "gso"]) if tcp else "plain"
        out.append(Frame(d) if how == "plain" else offloaded(c, 0 if how == "csum" else 64))
    return out


def observe(sw: Switch, rec: Recorder) -> dict[str, Any]:
    """Everything observable: frames out of every port (bytes and offload headers, in
    order), ERSPAN copies, and every counter and table."""
    eng = sw.engine
    st = eng.state
    out: dict[str, Any] = {
        name: [(f.data, f.vnet) for f in port.take()] for name, port in sw.ports.items()}
    out["erspan"] = rec.take()
    # every counter, the accounting terms (forwarded, dropped by first reason, consumed) too
    out["ports"] = {i: rt.counters.as_dict() | {"rx_dropped": rt.counters.rx_dropped_by_reason()}
                    for i, rt in st.ports.items()}
    out["accounting"] = [a.describe() for a in check(st)]
    out["drops"] = dict(st.drops.by_key)
    out["mirrors"] = {i: m.counters() | {"seen": m.seen} for i, m in st.mirrors.items()}
    out["fdb"] = {k: (e.port, e.last_seen) for k, e in st.fdb.entries.items()}
    stats = eng.cache.stats()
    out["cache"] = {k: stats[k] for k in ("entries", "hits", "misses", "invalidations",
                                          "invalidated", "evictions")}
    out["policy"] = eng.policy.counters()
    out["tables"] = snapshot(sw)
    return out


def run_pair(config: str, pick: Callable[[Sequence[Any]], Any],
             integer: Callable[[int, int], int], n: int,
             wire: bool = False,
             recorders: list[Recorder] | None = None) -> tuple[int, list[str]]:
    """``n`` random frames in random batches through a native and a Python switch; returns
    the frames the native table replayed and the first difference (empty: none)."""
    pair: list[tuple[Switch, Recorder]] = [
        (build_wired if wire else build)(config, mode) for mode in ("native", "python")]
    (nsw, nrec), (psw, prec) = pair
    if recorders is not None:
        recorders += [nrec, prec]
    assert nsw.engine.fastpath.native is not None, "native fast path not built"
    assert psw.engine.fastpath.native is None
    conv = Conversations()
    seen: list[Case] = []
    try:
        done = 0
        while done < n:
            cases = []
            for _ in range(integer(1, 8)):
                # half the frames repeat an earlier one (flows, so the cache is hit)
                if seen and integer(0, 1):
                    cases.append(seen[integer(max(0, len(seen) - 50), len(seen) - 1)])
                else:
                    cases.append(random_case(pick, integer, conv))
                    seen.append(cases[-1])
            done += len(cases)
            frames = frames_of(cases, pick)
            dt = cases[0].dt
            for sw in (nsw, psw):
                sw.clock.now += dt
            # consecutive frames of one port make one batch
            i = 0
            while i < len(cases):
                j = i
                while j < len(cases) and cases[j].port == cases[i].port:
                    j += 1
                for sw in (nsw, psw):
                    idx = sw.engine.state.by_name[cases[i].port]
                    sw.engine.process(idx, [Frame(f.data, f.vnet) for f in frames[i:j]])
                i = j
            a, b = observe(nsw, nrec), observe(psw, prec)
            if a != b:
                diff = [k for k in a if a[k] != b.get(k)]
                return 0, [f"after {done} frames ({[c.what for c in cases]}): {k}: "
                           f"native {a[k]!r:.600} python {b[k]!r:.600}" for k in diff]
            if done % 300 < 8:
                for sw in (nsw, psw):
                    sw.engine.housekeeping(sw.clock.now)
        nat = nsw.engine.fastpath.native
        assert nat is not None
        return nat.replayed, []
    finally:
        nsw.engine.close()
        psw.engine.close()
        for rec in (nrec, prec):
            if isinstance(rec, WireRecorder):
                rec.close()
