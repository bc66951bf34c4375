#!/usr/bin/env python3
"""Benchmark: how long traffic stops when a team member loses its link (not a test).

Two vspan switches in the root namespace, each with a VM port and a two-member
team, the teams joined member to member by two veth pairs (``tb-a1 ══ tb-b1``,
``tb-a2 ══ tb-b2``)::

    tb-snd (10.78.0.1) ── A: [vm, team0 = tb-a1, tb-a2] ══ B: [team0 = tb-b1, tb-b2, vm] ── tb-rcv

A sender in ``tb-snd`` sends one UDP flow to ``tb-rcv``: a datagram every
INTERVAL (default 1 ms) carrying its sequence number and send time
(CLOCK_MONOTONIC, which both namespaces share). After WARMUP seconds the benchmark
takes down the member that carries the flow, with one SIOCSIFFLAGS ioctl from
this process, and notes the moment just before it. Two ways of failing:

* ``local-down``: switch A's member is set down (A sees its own link go down);
* ``peer-down``: switch B's end of the flow's wire is set down, so A's member
  loses carrier (veth) and A learns of it only from the kernel's link
  notification (the carrier-loss case of a cable pull).

Measured at the receiver: **interruption** = send time of the first datagram sent
after the failure that arrived, minus the failure moment (so it includes at most
one INTERVAL of sending granularity); **lost** datagrams; the longest gap between
arrivals. Modes: switch-independent (layer3+4) and active-standby. Medians and
maxima over RUNS runs; every run builds the topology and switches anew.

Run as root from the repository root: ``.venv/bin/python bench/bench_team.py``
(``--quick`` for one run of each).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    BenchError,
    Host,
    MeasureError,
    Switch,
    Topology,
    apply_plan_options,
    bench_arguments,
    busy_processes,
    fmt,
    guarded_measure,
    in_ns,
    kill_stale_switch,
    loadavg,
    machine_description,
    median,
    publish,
    sh,
    stop_process,
)

from vspan.ports.teamhash import layer3_4

PREFIX = "tb-"
SECTION = "bench_team.py"
SND = ("10.78.0.1/24", "02:78:00:00:00:01")
RCV = ("10.78.0.2/24", "02:78:00:00:00:02")
SPORT, DPORT = 40001, 9999
SWITCH_CPU, GEN_CPU = 1, 0
PIDFILE = Path(tempfile.gettempdir()) / "vspan-bench-team.pid"
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

SENDER = r"""
import socket, struct, sys, time
dst, port, sport, interval, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", sport))
t0 = time.monotonic()
seq = 0
while True:
    now = time.monotonic()
    if now - t0 > seconds:
        break
    s.sendto(struct.pack("!Qd", seq, now) + bytes(32), (dst, port))
    seq += 1
    nxt = t0 + seq * interval
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
print(seq)
"""

RECEIVER = r"""
import json, socket, struct, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("", port))
s.settimeout(0.2)
out = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        data = s.recv(2048)
    except TimeoutError:
        continue
    seq, sent = struct.unpack("!Qd", data[:16])
    out.append((seq, sent, time.monotonic()))
json.dump(out, sys.stdout)
"""


@dataclass
class Plan:
    """What to measure."""

    runs: int = 3
    seconds: float = 5.0  # length of the UDP stream
    warmup: float = 2.0  # seconds of stream before the failure
    interval: float = 0.001
    load_before: str = ""
    load_after: str = ""
    busy: list[str] = field(default_factory=list)


@dataclass
class Sample:
    """One failover."""

    mode: str
    how: str
    member: str
    interruption_ms: float
    lost: int  # over the whole stream
    lost_at_failure: int  # sent from 50 ms before to 500 ms after the failure
    max_gap_ms: float
    sent: int
    received: int


def log(msg: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"bench_team: {msg}\n")
    sys.stderr.flush()


def set_down(ifname: str) -> float:
    """Take ``ifname`` (root namespace) down with one ioctl; return the moment before it."""
    name = ifname.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS,
                                                  struct.pack("16sH", name, 0)))[1]
        req = struct.pack("16sH", name, flags & ~IFF_UP & 0xFFFF)
        t = time.monotonic()
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, req)
    return t


def flow_member(names: list[str]) -> str:
    """The member A's layer3+4 hash gives the flow (checked against counters later)."""
    frame = (bytes.fromhex(RCV[1].replace(":", "")) + bytes.fromhex(SND[1].replace(":", ""))
             + b"\x08\x00" + b"\x45\x00\x00\x3c\x00\x00\x40\x00\x40\x11\x00\x00"
             + socket.inet_aton(SND[0].split("/")[0]) + socket.inet_aton(RCV[0].split("/")[0])
             + struct.pack("!HHHH", SPORT, DPORT, 40, 0) + bytes(32))
    return names[layer3_4(frame) % len(names)]


def team_config(vm: str, members: list[str], mode: str) -> str:
    extra = "mode: active-standby, primary: " + members[0] if mode == "active-standby" \
        else "load_balancing: layer3+4"
    return (f"switch: {{name: {vm}, control_socket: '{{socket}}'}}\n"
            f"ports:\n  vm: {{interface: {vm}}}\n"
            f"  team0: {{type: team, team: {{members: [{', '.join(members)}], {extra}}}}}\n")


def one_run(plan: Plan, mode: str, how: str, wd: str) -> Sample:
    """Build, stream, fail the flow's member, measure, tear down."""
    topo = Topology(PREFIX)
    try:
        snd_ns, rcv_ns = topo.netns("snd"), topo.netns("rcv")
        snd = topo.veth_to_root("va", snd_ns, SND[1], SND[0])
        rcv = topo.veth_to_root("vb", rcv_ns, RCV[1], RCV[0])
        for i in (1, 2):
            a, b = topo.name(f"a{i}"), topo.name(f"b{i}")
            for leftover in (a, b):
                sh("ip", "link", "del", leftover, check=False)
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            topo.links.append(a)
            for end in (a, b):
                sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1", check=False)
                sh("ip", "link", "set", end, "up")
        a_members = [topo.name("a1"), topo.name("a2")]
        b_members = [topo.name("b1"), topo.name("b2")]
        for host, peer in ((snd, rcv), (rcv, snd)):  # no ARP in the measurement
            assert peer.ip is not None
            sh("ip", "-n", host.ns, "neigh", "replace", peer.ip, "lladdr", peer.mac, "dev",
               host.ifname)
        kill_stale_switch(PIDFILE)
        sw_a = Switch(team_config(topo.name("va"), a_members, mode), wd, SWITCH_CPU,
                      PIDFILE, "a")
        sw_b = Switch(team_config(topo.name("vb"), b_members, mode), wd, SWITCH_CPU,
                      Path(str(PIDFILE) + ".b"), "b")
        with sw_a, sw_b:
            return stream_and_fail(plan, mode, how, snd, rcv, sw_a, a_members, b_members)
    finally:
        topo.cleanup()


def _tx(sw: Switch) -> dict[str, int]:
    rows = sw.json("show", "ports")
    team = next(r for r in rows if r["name"] == "team0")["team"]
    return {m["name"]: int(m["counters"]["tx_frames"]) for m in team["members"]}


def stream_and_fail(plan: Plan, mode: str, how: str, snd: Host, rcv: Host, sw_a: Switch,
                    a_members: list[str], b_members: list[str]) -> Sample:
    """Run the UDP stream, take the flow's member down after the warm-up, analyse."""
    assert rcv.ip is not None
    recv = subprocess.Popen(in_ns(rcv.ns, sys.executable, "-c", RECEIVER, str(DPORT),
                                  str(plan.seconds + 2), cpu=GEN_CPU),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(0.5)
    send = subprocess.Popen(in_ns(snd.ns, sys.executable, "-c", SENDER, rcv.ip, str(DPORT),
                                  str(SPORT), str(plan.interval), str(plan.seconds),
                                  cpu=GEN_CPU),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        member = a_members[0] if mode == "active-standby" else flow_member(a_members)
        victim = member if how == "local-down" else b_members[a_members.index(member)]
        time.sleep(plan.warmup)
        t_fail = set_down(victim)
        out, err = send.communicate(timeout=plan.seconds + 30)
        rout, rerr = recv.communicate(timeout=plan.seconds + 30)
    finally:
        stop_process(send)
        stop_process(recv)
    if send.returncode != 0 or recv.returncode != 0:
        raise MeasureError(f"sender/receiver failed: {err.strip()} {rerr.strip()}")
    after = _tx(sw_a)  # nothing but this flow crosses the team (static neighbours, no IPv6)
    other = next(m for m in a_members if m != member)
    if not after[other] or not after[member]:
        raise MeasureError(f"the flow was not on {member} and then on {other}: {after}")
    records = json.loads(rout)
    sent = int(out.strip() or 0)
    return analyse(records, t_fail, sent, mode, how, member, plan.interval)


def analyse(records: list[list[float]], t_fail: float, sent: int, mode: str, how: str,
            member: str, interval: float) -> Sample:
    """Interruption, losses and the longest arrival gap from the receiver's log."""
    if not records:
        raise MeasureError("the receiver got nothing")
    after = [r for r in records if r[1] >= t_fail]
    if not after:
        raise MeasureError("nothing sent after the failure arrived")
    first = min(after, key=lambda r: r[1])
    sent_at = {int(r[0]): r[1] for r in records}
    # a datagram that never arrived was sent between its neighbours that did
    known = sorted(sent_at)
    near = 0
    for prev, nxt in itertools.pairwise(known):
        if nxt - prev > 1 and sent_at[prev] < t_fail + 0.5 and sent_at[nxt] > t_fail - 0.05:
            near += nxt - prev - 1
    lost = sent - len(sent_at)
    arrivals = sorted(r[2] for r in records)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Sample(mode, how, member, (first[1] - t_fail) * 1000, lost, near,
                  max(gaps) * 1000 if gaps else 0.0, sent, len(records))


def run_all(plan: Plan) -> list[Sample]:
    """Every (mode, how) RUNS times."""
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as wd:
        for run in range(plan.runs):
            for mode in ("switch-independent", "active-standby"):
                for how in ("local-down", "peer-down"):
                    log(f"run {run + 1}/{plan.runs}: {mode}, {how}")
                    try:
                        s = one_run(plan, mode, how, wd)
                    except MeasureError as err:
                        log(f"  failed: {err}")
                        continue
                    log(f"  {s.interruption_ms:.1f} ms, {s.lost_at_failure} lost at the "
                        f"failure, {s.lost} in all, max gap {s.max_gap_ms:.1f} ms")
                    samples.append(s)
    return samples


def render(samples: list[Sample], plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = ["## Team failover: how long a flow stops when its member loses the link", "",
             "Written by `bench/bench_team.py` (run as root: "
             "`.venv/bin/python bench/bench_team.py`).", "", "### Machine", ""]
    lines += [f"* {k}: {v}" for k, v in machine_description()]
    lines += [f"* load average (1/5/15 min) before / after: {plan.load_before} / "
              f"{plan.load_after} (the machine is shared)",
              f"* other work seen running: {', '.join(plan.busy) or 'none'}", "",
              "### Method", "",
              "Two vspan switches (root namespace, both pinned to CPU1), each with a VM port "
              "and a two-member team; the teams are joined member to member by two veth "
              f"pairs. One UDP flow, a datagram every {plan.interval * 1000:g} ms carrying its "
              "sequence number and send time (sender and receiver on CPU0, one clock). After "
              f"{plan.warmup:g} s the member carrying the flow is set down with one ioctl: "
              "*local-down* = switch A's member, *peer-down* = switch B's end of that wire (A's "
              "member loses carrier and learns it from the kernel's link notification). "
              "*Interruption* = send time of the first datagram sent after the failure that "
              "arrived, minus the moment of the failure (includes up to one sending interval). "
              "*Lost at failure* = datagrams sent from 50 ms before to 500 ms after the "
              "failure that never arrived; *lost in all* = over the whole stream (on a busy "
              "machine the sender, receiver and switches lose datagrams to scheduling "
              "delays that have nothing to do with the failure; so does the longest gap "
              "between arrivals). Every run rebuilds topology and "
              f"switches; {plan.runs} run(s).", "",
              "### Results", "",
              "| mode | failure | runs | interruption ms (median) | interruption ms (max) "
              "| lost at failure (median) | lost in all (median) "
              "| longest arrival gap ms (median) |",
              "|---|---|---|---|---|---|---|---|"]
    for mode in ("switch-independent", "active-standby"):
        for how in ("local-down", "peer-down"):
            ss = [s for s in samples if s.mode == mode and s.how == how]
            ints = [s.interruption_ms for s in ss]
            lines.append(f"| {mode} | {how} | {len(ss)} | {fmt(median(ints), 1)} | "
                         f"{fmt(max(ints) if ints else None, 1)} | "
                         f"{fmt(median([float(s.lost_at_failure) for s in ss]), 0)} | "
                         f"{fmt(median([float(s.lost) for s in ss]), 0)} | "
                         f"{fmt(median([s.max_gap_ms for s in ss]), 1)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = bench_arguments(__doc__.splitlines()[0] if __doc__ else None,
                           "1 run of each case; RESULTS.md is not written unless --write"
                           ).parse_args(argv)
    plan = Plan(runs=1 if args.quick else 3)
    write = apply_plan_options(plan, args)

    def measure() -> list[Sample]:
        plan.load_before = loadavg()
        plan.busy = busy_processes()
        samples = run_all(plan)
        plan.load_after = loadavg()
        if not samples:
            raise BenchError("no run succeeded")
        return samples

    samples, rc = guarded_measure(__file__, measure)
    if samples is None:
        return rc
    publish(render(samples, plan), args, write, SECTION,
            {"plan": asdict(plan), "samples": [asdict(s) for s in samples]}, log)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
