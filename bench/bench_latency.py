#!/usr/bin/env python3
"""Benchmark: ping latency through vspan per poll mode, beside the Linux bridge (not a test).

One run measures, in one topology (sender, receiver and sniffer namespaces behind a
switch namespace, as ``bench_switch.py``): the **Linux bridge**, and **vspan** with
``switch.poll.mode`` ``off``, ``adaptive`` (``busy_us`` from ``--busy-us``; default the
configuration's default) and ``always``. For each: ping p50/p99 (``ping -c 200 -i 0.01``
from the sender, CPU0; the switch pinned to CPU1), the switch's CPU % while idle (no
traffic) and during the ping, and its poll counters (``vspan show counters``). Setups
are rotated run to run; medians and issue 9's latency target (vspan adaptive p50 ≤
Linux bridge p50 + 50 µs) go to ``bench/RESULTS.md`` between this script's markers.

Run as root from the repository: ``.venv/bin/python bench/bench_latency.py``
(``--quick``: 1 run, 50 pings, RESULTS.md left alone).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    REPO,
    BenchError,
    MeasureError,
    Topology,
    bench_arguments,
    busy_processes,
    fmt,
    guarded_measure,
    in_ns,
    kill_stale_switch,
    machine_description,
    median,
    ping_rtt,
    progress,
    publish,
    sh,
    stamped,
    stop_process,
    workdir,
)
from peers import MON_IF, RCV_IF, SND_IF, SWITCH_YAML, LinuxBridge, Peer, SwitchLab, Vspan

from vspan.config.poll import PollConfig

PREFIX = "vl-"  # every namespace and interface this script makes starts with "vl"
SECTION = "bench_latency.py"
GEN_CPU = 0  # ping
SWITCH_CPU = 1  # vspan up
PIDFILE = Path("/run/vspan-bench/vl-switch.pid")
OVS_RUNDIR = Path("/run/vspan-bench/vl-ovs")  # unused: no OVS here (SwitchLab wants one)

SENDER = ("10.78.0.1/24", "02:76:6c:00:00:01")
RECEIVER = ("10.78.0.2/24", "02:76:6c:00:00:02")
SNIFFER_MAC = "02:76:6c:00:00:03"
RR_PORT = 7777
UDPRR = str(REPO / "bench" / "udprr.py")
NOTES = (
    "On a virtual machine whose idle CPUs halt at once (this guest: `cpuidle-haltpoll` "
    "with `guest_halt_poll_ns` 0), a switch thread that sleeps between frames pays the "
    "wake-up of a halted virtual CPU (an IPI through the hypervisor; "
    "`bench/bench_wake.py` measures it) and then runs the frame with cold caches; the "
    "Linux bridge forwards inside the sender's own system call and pays neither. "
    "`adaptive` with `predict` (the default) takes the wake-up off for bursts at a steady "
    "interval such as this ping, not the cold caches: only `always` keeps the CPU from "
    "halting (docs/datapath.md, \"Ping at 100/s on a virtual machine\").")


class PollVspan(Vspan):
    """vspan with one ``switch.poll`` setting."""

    def __init__(self, mode: str, busy_us: int | None = None, python_wake: bool = False,
                 predict: bool = True) -> None:
        key = (f"vspan-{mode}" + (f"-{busy_us}" if busy_us is not None else "")
               + ("" if predict else "-nopredict") + ("-pyloop" if python_wake else ""))
        name = (f"vspan poll={mode}" + (f" ({busy_us} µs)" if busy_us is not None else "")
                + ("" if predict else ", predict off")
                + (", Python loop" if python_wake else ""))
        super().__init__(key, name)
        self.mode = mode
        self.busy_us = busy_us
        self.predict = predict
        if python_wake:  # the engine's Python wait loop instead of the native wake path
            self.env = {"VSPAN_WAKE": "python"}

    def config(self, lab: SwitchLab) -> str:
        poll = f"    mode: {self.mode}\n"
        if self.busy_us is not None:
            poll += f"    busy_us: {self.busy_us}\n"
        if not self.predict:
            poll += "    predict: false\n"
        head, sep, rest = SWITCH_YAML.partition("ports:\n")
        return f"{head}  poll:\n{poll}{sep}{rest}"

    def poll_counters(self) -> dict[str, Any]:
        """The switch's poll counters now (empty when it cannot say)."""
        if self.switch is None or not self.switch.alive():
            return {}
        try:
            return dict(self.switch.json("show", "counters").get("poll", {}))
        except (BenchError, ValueError):
            return {}


@dataclass
class Samples:
    """Per-run values of one setup."""

    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    min_us: list[float] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    cpu_idle: list[float] = field(default_factory=list)  # CPU-seconds per second
    cpu_ping: list[float] = field(default_factory=list)
    busy_frames: list[int] = field(default_factory=list)  # during the ping
    waits: list[int] = field(default_factory=list)
    rr_p50_us: list[float] = field(default_factory=list)  # UDP request/response
    rr_p99_us: list[float] = field(default_factory=list)
    rr_lost: list[int] = field(default_factory=list)
    cpu_rr: list[float] = field(default_factory=list)
    rr_busy_frames: list[int] = field(default_factory=list)
    rr_waits: list[int] = field(default_factory=list)
    gil_waits: list[int] = field(default_factory=list)  # during the ping (wake path)
    predicted: list[int] = field(default_factory=list)  # found in predicted windows (ping)
    errors: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """How long and how often."""

    runs: int
    ping_count: int
    ping_interval: float
    idle_seconds: float
    busy_us: list[int]
    load_before: str = "?"
    load_after: str = "?"


log = progress("bench_latency")


def setups(busy_us: list[int], python_wake: bool = False,
           no_predict: bool = False) -> list[Peer]:
    """The Linux bridge, then vspan per poll mode (one adaptive setup per window, and with
    ``no_predict`` one more with ``predict: false`` each); with ``python_wake`` each vspan
    setup also with the Python wait loop (``VSPAN_WAKE=python``), to compare the native
    wake path with it in the same run."""
    out: list[Peer] = [LinuxBridge("bridge", "Linux bridge", mirred=False)]
    for pw in (False, True) if python_wake else (False,):
        out.append(PollVspan("off", python_wake=pw))
        out += [PollVspan("adaptive", b, python_wake=pw) for b in busy_us]
        if no_predict:
            out += [PollVspan("adaptive", b, python_wake=pw, predict=False) for b in busy_us]
        out.append(PollVspan("always", python_wake=pw))
    return out


def _cpu(peer: Peer) -> float | None:
    return peer.cpu_seconds()


def measure(peer: Peer, lab: SwitchLab, plan: Plan, s: Samples) -> None:
    """Idle CPU, then ping with CPU, for one setup in one run."""
    snd, rcv = lab.snd, lab.rcv
    assert rcv.ip is not None
    s.others.append(", ".join(sorted(set(busy_processes()))) or "-")
    try:  # ARP and MAC learning first
        ping_rtt(snd, rcv.ip, 3, 0.2, GEN_CPU)
    except MeasureError as err:
        s.errors.append(f"{peer.name}: warm-up ping failed: {err}")
    time.sleep(0.5)
    c0, t0 = _cpu(peer), time.monotonic()
    time.sleep(plan.idle_seconds)
    c1, t1 = _cpu(peer), time.monotonic()
    if c0 is not None and c1 is not None:
        s.cpu_idle.append((c1 - c0) / (t1 - t0))
    before = peer.poll_counters() if isinstance(peer, PollVspan) else {}
    try:
        c0, t0 = _cpu(peer), time.monotonic()
        p = ping_rtt(snd, rcv.ip, plan.ping_count, plan.ping_interval, GEN_CPU)
        c1, t1 = _cpu(peer), time.monotonic()
        s.p50_us.append(p.p50_us)
        s.p99_us.append(p.p99_us)
        s.min_us.append(p.min_us)
        s.lost.append(p.sent - p.received)
        cpu = ""
        if c0 is not None and c1 is not None:
            s.cpu_ping.append((c1 - c0) / (t1 - t0))
            cpu = f", switch CPU {100 * s.cpu_ping[-1]:.0f} % (idle {100 * s.cpu_idle[-1]:.0f} %)"
        log(f"  {peer.name}: ping p50 {p.p50_us:.0f} µs, p99 {p.p99_us:.0f} µs, "
            f"min {p.min_us:.0f} µs{cpu}")
    except MeasureError as err:
        s.errors.append(f"{peer.name}: {err}")
        log(f"  {peer.name}: ping FAILED: {err}")
    after = peer.poll_counters() if isinstance(peer, PollVspan) else {}
    if before and after:
        s.busy_frames.append(int(after["busy_frames"]) - int(before["busy_frames"]))
        s.waits.append(int(after["waits"]) - int(before["waits"]))
        if "gil_waits" in after:  # wake-ups that then waited > 20 µs for the GIL
            s.gil_waits.append(int(after["gil_waits"]) - int(before.get("gil_waits", 0)))
        if "predicted_frames" in after:  # switch.poll.predict
            s.predicted.append(int(after["predicted_frames"])
                               - int(before.get("predicted_frames", 0)))
    request_response(peer, lab, plan, s)


def request_response(peer: Peer, lab: SwitchLab, plan: Plan, s: Samples) -> None:
    """UDP request/response (``bench/udprr.py``): the answer comes from a woken process."""
    snd, rcv = lab.snd, lab.rcv
    assert rcv.ip is not None
    server = subprocess.Popen(in_ns(rcv.ns, sys.executable, UDPRR, "server", str(RR_PORT),
                                    cpu=GEN_CPU),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        time.sleep(0.3)  # bound before the first request
        before = peer.poll_counters() if isinstance(peer, PollVspan) else {}
        c0, t0 = _cpu(peer), time.monotonic()
        proc = sh(*in_ns(snd.ns, sys.executable, UDPRR, "client", rcv.ip, str(RR_PORT),
                         str(plan.ping_count), f"{plan.ping_interval:g}", cpu=GEN_CPU),
                  check=False, timeout=plan.ping_count * (plan.ping_interval + 1) + 10)
        c1, t1 = _cpu(peer), time.monotonic()
        after = peer.poll_counters() if isinstance(peer, PollVspan) else {}
        if proc.returncode != 0:
            raise MeasureError(f"udprr client: {proc.stderr.strip()[-200:]}")
        r = json.loads(proc.stdout)
        s.rr_p50_us.append(r["p50_us"])
        s.rr_p99_us.append(r["p99_us"])
        s.rr_lost.append(int(r["lost"]))
        cpu = ""
        if c0 is not None and c1 is not None:
            s.cpu_rr.append((c1 - c0) / (t1 - t0))
            cpu = f", switch CPU {100 * s.cpu_rr[-1]:.0f} %"
        if before and after:
            s.rr_busy_frames.append(int(after["busy_frames"]) - int(before["busy_frames"]))
            s.rr_waits.append(int(after["waits"]) - int(before["waits"]))
        log(f"  {peer.name}: UDP request/response p50 {r['p50_us']:.0f} µs, p99 "
            f"{r['p99_us']:.0f} µs{cpu}")
    except (MeasureError, ValueError, KeyError) as err:
        s.errors.append(f"{peer.name}: UDP request/response: {err}")
        log(f"  {peer.name}: UDP request/response FAILED: {err}")
    finally:
        stop_process(server)


def run_all(plan: Plan, peers: list[Peer]) -> dict[str, Samples]:
    """Build the topology once, measure every setup in every run, always clean up."""
    kill_stale_switch(PIDFILE)
    topo = Topology(PREFIX)
    samples = {p.key: Samples() for p in peers}
    try:
        with workdir("vl-bench-") as wd:
            sw = topo.switch_namespace("sw", [(SND_IF, "snd", SENDER[1], SENDER[0]),
                                              (RCV_IF, "rcv", RECEIVER[1], RECEIVER[0]),
                                              (MON_IF, "mon", SNIFFER_MAC, None)])
            lab = SwitchLab(topo, wd, (sw.hosts[SND_IF], sw.hosts[RCV_IF]), sw, SWITCH_CPU,
                            PIDFILE, OVS_RUNDIR)
            for run in range(plan.runs):
                k = run % len(peers)
                order = peers[k:] + peers[:k]
                log(f"run {run + 1}/{plan.runs}: {', '.join(p.name for p in order)}")
                for peer in order:
                    s = samples[peer.key]
                    try:
                        peer.start(lab, f"run{run}")
                        measure(peer, lab, plan, s)
                    except BenchError as err:
                        s.errors.append(f"{peer.name}: {err}")
                        log(f"  {peer.name}: FAILED: {err}")
                    finally:
                        peer.stop(lab)
                    time.sleep(0.5)
    finally:
        for peer in peers:
            if peer.started:
                with_lab_stop(peer, topo)
        topo.cleanup()
        kill_stale_switch(PIDFILE)
    return samples


def with_lab_stop(peer: Peer, topo: Topology) -> None:
    """Stop a peer left started by an interruption (vspan: its process)."""
    if isinstance(peer, Vspan) and peer.switch is not None:
        peer.switch.stop()
        peer.switch = None
    peer.started = False


def _n(values: list[int]) -> str:
    return fmt(median([float(v) for v in values]), 0)


def _pct(values: list[float]) -> str:
    m = median(values)
    return "n/a" if m is None else f"{100 * m:.0f}"


def render(peers: list[Peer], samples: dict[str, Samples], plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = [
        "## Latency: ping through vspan per poll mode, beside the Linux bridge",
        "",
        "Written by `bench/bench_latency.py` (root: `.venv/bin/python bench/bench_latency.py`).",
        "",
        _load_label(plan.load_before, plan.load_after),
        "",
        "### Machine",
        "",
    ]
    lines += [f"* {k}: {v}" for k, v in machine_description()]
    lines += [
        f"* load average (1/5/15 min) before / after: {plan.load_before} / {plan.load_after}",
        "",
        "### Method",
        "",
        "Sender, receiver and sniffer namespaces behind one switch namespace (no default "
        "route), as `bench_switch.py`. *Linux bridge*: the kernel bridge over the three "
        f"port ends. *vspan*: `vspan up` pinned to CPU{SWITCH_CPU} with `switch.poll` set "
        "as named (docs/datapath.md, \"Waiting for frames\"). Per setup and run: a warm-up "
        f"ping, {plan.idle_seconds:g} s with no traffic (switch CPU % while idle), then "
        f"`ping -c {plan.ping_count} -i {plan.ping_interval:g}` from the sender on "
        f"CPU{GEN_CPU} (p50, p99; switch CPU % during it). *Busy frames*: frames the "
        "engine found by polling without blocking (each skipped a wake-up), and blocking "
        "waits, during each workload (`vspan show counters`). 100 % CPU = one core. The "
        "bridge forwards in softirq (not attributable to a process). "
        f"{plan.runs} run(s), setups rotated; medians.",
        "",
        f"*UDP request/response*: `bench/udprr.py`, {plan.ping_count} 64-byte requests "
        f"{plan.ping_interval:g} s apart, each answered by an echo process in the receiver "
        f"namespace (CPU{GEN_CPU}); unlike ping, whose echo the receiving kernel answers "
        "inside the switch's own send, the answer comes after a process wake-up, so the "
        "switch has gone idle in between (what adaptive polling is for).",
        "",
        "### Results (medians)",
        "",
        "| setup | ping p50 µs | ping p99 µs | ping min µs | UDP req/resp p50 µs "
        "| UDP req/resp p99 µs | switch CPU % idle | switch CPU % ping "
        "| switch CPU % req/resp | busy frames / blocking waits: ping; req/resp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer in peers:
        s = samples[peer.key]
        vs = isinstance(peer, PollVspan)
        na = "n/a (softirq)"
        counts = (f"{_n(s.busy_frames)} / {_n(s.waits)}; {_n(s.rr_busy_frames)} / "
                  f"{_n(s.rr_waits)}" if vs else "-")
        lines.append(
            f"| {peer.name} | {fmt(median(s.p50_us), 0)} | {fmt(median(s.p99_us), 0)} "
            f"| {fmt(median(s.min_us), 0)} | {fmt(median(s.rr_p50_us), 0)} "
            f"| {fmt(median(s.rr_p99_us), 0)} | {_pct(s.cpu_idle) if vs else na} "
            f"| {_pct(s.cpu_ping) if vs else na} | {_pct(s.cpu_rr) if vs else na} "
            f"| {counts} |")
    bridge = median(samples["bridge"].p50_us) if "bridge" in samples else None
    lines += ["", "Issue 9's latency target: vspan with adaptive polling, ping p50 ≤ Linux "
              "bridge p50 + 50 µs:", ""]
    for peer in peers:
        if not isinstance(peer, PollVspan) or peer.mode == "off":
            continue
        v = median(samples[peer.key].p50_us)
        if v is None or bridge is None:
            lines.append(f"* {peer.name}: n/a (not measured)")
            continue
        met = "met" if v <= bridge + 50 else "**not met**"
        lines.append(f"* {peer.name}: {v:.0f} µs vs {bridge:.0f} µs ({v - bridge:+.0f} µs): "
                     f"{met}")
    lines += ["", "Per run (in run order):", ""]
    for peer in peers:
        s = samples[peer.key]
        lines.append(f"* {peer.name}: ping p50 {' / '.join(f'{v:.0f}' for v in s.p50_us)} "
                     f"µs, p99 {' / '.join(f'{v:.0f}' for v in s.p99_us)} µs, lost "
                     f"{' / '.join(map(str, s.lost)) or '-'}; req/resp p50 "
                     f"{' / '.join(f'{v:.0f}' for v in s.rr_p50_us)} µs, lost "
                     f"{' / '.join(map(str, s.rr_lost)) or '-'}; GIL waits > 20 µs after "
                     f"a wake-up during the ping: {' / '.join(map(str, s.gil_waits)) or '-'}"
                     "; frames found in predicted windows during the ping: "
                     f"{' / '.join(map(str, s.predicted)) or '-'}; others running: "
                     f"{' / '.join(s.others) or '-'}")
    lines += ["", "### Notes", "", NOTES]
    errors = [e for p in peers for e in samples[p.key].errors]
    if errors:
        lines += ["", "### Problems seen in this run", ""] + [f"* {e}" for e in errors]
    return "\n".join(lines) + "\n"


def _load_label(before: str, after: str) -> str:
    """What the load averages say of the run: quiet when the 1-minute load stayed under 1
    before and after, else a warning that the numbers are noisy."""
    try:
        quiet = max(float(before.split()[0]), float(after.split()[0])) < 1.0
    except (ValueError, IndexError):
        quiet = False
    if quiet:
        return ("Taken on a quiet machine (1-minute load average under 1 before and after; "
                "nothing else measured at the same time).")
    return ("**Taken on a shared, busy machine** (1-minute load average 1 or more): "
            "latencies and CPU shares are noisy; to be rerun on a quiet machine.")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = bench_arguments(__doc__.splitlines()[0] if __doc__ else None,
                         "smoke test: 1 run, 50 pings, 1 s idle; RESULTS.md is not written "
                         "unless --write")
    ap.add_argument("--busy-us", default=str(PollConfig().busy_us),
                    help="comma-separated busy_us values: one adaptive setup each "
                         "(default: the configuration's default)")
    ap.add_argument("--python-wake", action="store_true",
                    help="also run every vspan setup with the Python wait loop "
                         "(VSPAN_WAKE=python) beside the native wake path")
    ap.add_argument("--no-predict", action="store_true",
                    help="also run every adaptive setup with switch.poll.predict false "
                         "(no predicted windows) beside it")
    args = ap.parse_args(argv)
    try:
        busy = [int(v) for v in args.busy_us.split(",") if v.strip()]
    except ValueError:
        ap.error("--busy-us: comma-separated integers")
    if not busy or any(not 1 <= b <= 1_000_000 for b in busy):
        ap.error("--busy-us: values 1-1000000")
    plan = Plan(runs=1 if args.quick else 3, ping_count=50 if args.quick else 200,
                ping_interval=0.01, idle_seconds=1.0 if args.quick else 3.0, busy_us=busy)
    if args.runs is not None:
        plan.runs = max(1, args.runs)
    write = bool(not args.no_write and (args.write or not args.quick))
    peers = setups(busy, args.python_wake, args.no_predict)

    samples, rc = guarded_measure(
        __file__, stamped(plan, lambda: run_all(plan, peers), machine=False))
    if samples is None:
        return rc
    publish(render(peers, samples, plan), args, write, SECTION, None, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
