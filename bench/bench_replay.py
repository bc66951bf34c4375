#!/usr/bin/env python3
"""The replay loop in-process: native (``vspan.datapath._native``) against Python.

Memory ports, no root, batches of 64 frames of 64 cached UDP flows (the cache is warm);
the number is frames per CPU-second of this process (``time.process_time``: a busy
machine's other load counts less than in wall-clock rates), median of ``--runs``.
Setups: plain forwarding, a VLAN push (access -> trunk), a local mirror of both
directions, a filtered/sampled/truncated mirror, an RSPAN session, and a per-port
ERSPAN III session to 127.0.0.1 (a raw GRE socket: needs root; loopback only), a
per-port firewall (two checks per frame, stepped natively for established connections)
with 64 established UDP flows, and with 64 established TCP connections (handshake
first, then data segments from ``a``: window tracking per frame), and a stateful
extended ACL on ``a`` (one session refresh per frame).

    .venv/bin/python bench/bench_replay.py [--runs 3] [--frames 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.control.assemble import build_engine
from vspan.datapath.engine import Engine
from vspan.packet.build import tcp_frame, udp_frame
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort

BASE = """
ports:
  a: {type: memory%s}
  b: {type: memory%s}
  s: {type: memory}
  t: {type: memory, vlan: {mode: trunk, allowed: [10, 20, 30]}}
"""
SETUPS: dict[str, tuple[str, str, str]] = {
    # name: (extra config of a, of b / destination port, rest of the config)
    "plain": ("", "", ""),
    "vlan push": (", vlan: {mode: access, id: 20}", ", vlan: {mode: access, id: 20}", ""),
    "local mirror": ("", "", """
mirrors:
  m: {sources: [{port: a, direction: both}], destinations: [s]}
"""),
    "mirror filter+sample+truncate": ("", "", """
mirrors:
  m: {sources: [{port: a, direction: both}], destinations: [s], filter: "udp",
      sampling_rate: 2, mirrored_packet_length: 64}
"""),
    "rspan": ("", "", """
mirrors:
  r: {sources: [{port: a, direction: both}], rspan: {port: t, vlan: 30}}
"""),
    "erspan": ("", "", """
mirrors:
  e: {sources: [{port: a, direction: both}],
      erspan: {type: erspan3, remote_ip: 127.0.0.1, session_id: 1}}
"""),
    "firewall": ("", "", """
firewall:
  default_action: drop
  sections:
    - name: s
      rules:
        - {id: u, services: ["udp/9"], action: allow}
"""),
    "ext acl": (", policy: {extended_acls: [{id: x, action: allow, direction: out, weight: 1, "
                "protocol: udp, remote_port: 9, stateful: true, idle_timeout: 30}]}", "", ""),
    "firewall tcp": ("", "", """
firewall:
  default_action: drop
  sections:
    - name: s
      rules:
        - {id: t, services: ["tcp/80"], action: allow}
"""),
}
BATCH = 64


def _engine(setup: str) -> tuple[Engine, dict[str, MemoryPort]]:
    a, b, rest = SETUPS[setup]
    dest = "t" if setup == "vlan push" else "b"
    cfg = load_text(BASE % (a, b) + rest)
    ports: dict[str, MemoryPort] = {}

    def factory(name: str, pc: PortConfig) -> Port:
        ports[name] = MemoryPort(name)
        return ports[name]

    eng = build_engine(cfg, factory, clock=time.monotonic)
    eng.open()
    # teach the switch where the destination (…:02) lives: untagged on b, VLAN 20 on the trunk
    learn = udp_frame("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.2", "10.0.0.1", 9, 9,
                      b"")
    if dest == "t":
        learn = learn[:12] + b"\x81\x00\x00\x14" + learn[12:]
    eng.process(eng.state.by_name[dest], [Frame(learn)])
    for p in ports.values():
        p.take()
    return eng, ports


def _tcp_established(eng: Engine, ports: dict[str, MemoryPort]) -> list[bytes]:
    """Open :data:`BATCH` TCP connections a -> b:80 (SYN, SYN-ACK, ACK) and return one data
    segment of each (sent again and again: an in-window retransmission each time)."""
    a, b = eng.state.by_name["a"], eng.state.by_name["b"]
    ma, mb, ia, ib = "02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2"
    data = []
    for i in range(BATCH):
        sport = 20000 + i
        eng.process(a, [Frame(tcp_frame(ma, mb, ia, ib, sport, 80, "S", 1000))])
        eng.process(b, [Frame(tcp_frame(mb, ma, ib, ia, 80, sport, "SA", 5000, 1001))])
        eng.process(a, [Frame(tcp_frame(ma, mb, ia, ib, sport, 80, "A", 1001, 5001))])
        data.append(tcp_frame(ma, mb, ia, ib, sport, 80, "PA", 1001, 5001, b"x" * 6))
    for p in ports.values():
        p.take()
    return data


def rate(setup: str, frames: int) -> tuple[float, float]:
    """Frames per CPU-second through the switch, and the share the native table replayed."""
    eng, ports = _engine(setup)
    a = eng.state.by_name["a"]
    if setup == "firewall tcp":
        flows = _tcp_established(eng, ports)
    else:
        flows = [udp_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2",
                           1000 + i, 9, b"x" * 18) for i in range(BATCH)]
    eng.process(a, [Frame(f) for f in flows])  # warm the cache
    eng.process(a, [Frame(f) for f in flows])
    batches = max(1, frames // BATCH)
    nat = eng.fastpath.native
    before = nat.replayed if nat is not None else 0
    flooded = sum(rt.counters.flooded for rt in eng.state.ports.values())
    total = 0.0
    for _ in range(batches):
        batch = [Frame(f) for f in flows]
        t0 = time.process_time()
        eng.process(a, batch)
        total += time.process_time() - t0
        for p in ports.values():
            p.take()
    share = ((nat.replayed - before) / (batches * BATCH)) if nat is not None else 0.0
    assert sum(rt.counters.flooded for rt in eng.state.ports.values()) == flooded, "flooding"
    eng.close()
    return batches * BATCH / total, share


def main() -> None:
    """Measure every setup in both modes; print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated subset of: " + ", ".join(SETUPS))
    args = ap.parse_args()
    chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETUPS]
    if unknown:
        ap.error(f"unknown setups: {', '.join(unknown)}")
    print("| setup | Python kpps/CPU-s | native kpps/CPU-s | native/Python | frames native |")
    print("|---|---|---|---|---|")
    for setup in chosen:
        res: dict[str, list[float]] = {"python": [], "native": []}
        share = 0.0
        for _ in range(args.runs):
            for mode in ("python", "native"):
                os.environ["VSPAN_FASTPATH"] = mode
                r, s = rate(setup, args.frames)
                res[mode].append(r)
                if mode == "native":
                    share = s
        py, na = statistics.median(res["python"]), statistics.median(res["native"])
        print(f"| {setup} | {py / 1000:.0f} | {na / 1000:.0f} | {na / py:.1f}x | "
              f"{share:.0%} |")


if __name__ == "__main__":
    main()
