#!/usr/bin/env python3
"""Benchmark: forwarding with an ERSPAN session vs. none, and the collector's pps (not a test).

One topology, everything inside namespaces whose names start with ``vp7b``:

* ``vp7bhost`` runs the switch (``vspan up``, pinned with ``taskset -c 1``)
  with two ports, ``sender`` (namespace ``vp7bsnd``, 10.78.0.1) and
  ``receiver`` (``vp7brcv``, 10.78.0.2), and an underlay veth
  198.18.0.1/30 <-> ``vp7bcol`` 198.18.0.2/30 (not a switch port) that the
  ERSPAN copies leave by, from the host's own stack (raw GRE socket);
* setups: **vspan** (no mirror session), **vspan + ERSPAN, no collector**
  (an ERSPAN III session copying the sender port, both directions, to
  198.18.0.2, where nothing listens: the copies' cost to the switch alone),
  **vspan + ERSPAN → vspan collect** (the same, with ``vspan collect --listen
  198.18.0.2 -w FILE`` running in ``vp7bcol`` on CPU0, next to the generator).

For each setup: TCP Gbit/s (iperf3, one stream), 64-byte frames per second
(trafgen on CPU0; delivered = the receiver's rx counter over a window after a
warm-up), ping RTT, the switch's CPU use and its mirror counters. With the
collector: GRE packets arriving at ``vp7bcol`` per second, the collector's
kernel receive-buffer drops per second (``/proc/net/raw``) and so the frames
per second it took and wrote; and, without root tricks, the collector's own
decode+write rate in-process (``bench_collector.decode_rate``, one CPU).
Medians over ``--runs`` (setups rotated run to run, the switch restarted each
time) go to ``bench/RESULTS.md`` between ``<!-- erspan:begin -->`` and
``<!-- erspan:end -->``.

Run as root from the repository: ``.venv/bin/python bench/bench_erspan.py``
(``--quick``: 1 run, 2 s windows, RESULTS.md left alone unless ``--write``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench_collector import decode_rate, live_rate
from common import (
    VSPAN,
    BenchError,
    Host,
    MeasureError,
    Switch,
    Topology,
    Underlay,
    apply_plan_options,
    bench_arguments,
    fmt,
    guarded_measure,
    in_ns,
    iperf3_tcp,
    kill_stale_switch,
    machine_description,
    median,
    ping_rtt,
    progress,
    publish,
    sh,
    stamped,
    stop_process,
    trafgen_pps,
    update_section,
    workdir,
)

PREFIX = "vp7b"
GEN_CPU = 0  # trafgen, iperf3, ping, and the collector in the last setup
SWITCH_CPU = 1
PIDFILE = Path("/run/vspan-bench/vp7b-switch.pid")
BEGIN, END = "<!-- erspan:begin -->", "<!-- erspan:end -->"

SENDER = ("10.78.0.1/24", "02:76:70:00:00:01")
RECEIVER = ("10.78.0.2/24", "02:76:70:00:00:02")
HOST_U, COL_U = "198.18.0.1", "198.18.0.2"  # RFC 2544 benchmarking range
COL_MAC = "02:76:70:00:00:0c"

NONE, ERSPAN, COLLECT = "vspan", "vspan + ERSPAN, no collector", "vspan + ERSPAN → vspan collect"
SETUPS = (NONE, ERSPAN, COLLECT)

SWITCH_YAML = """\
# bench/bench_erspan.py
switch:
  name: vp7bench
  control_socket: {socket}
ports:
  sender:   {interface: vp7bs}
  receiver: {interface: vp7br}
"""
ERSPAN_YAML = f"""\
mirrors:
  remote:
    sources: [{{port: sender, direction: both}}]
    erspan: {{type: erspan3, remote_ip: {COL_U}, source_ip: {HOST_U}, session_id: 7}}
"""


SENDER_COST = r"""
import json, sys, time
from vspan.mirror.encap import EncapType, ErspanConfig, ErspanEncapsulator, RawGreSender
n, remote = int(sys.argv[1]), sys.argv[2]
frame = bytes.fromhex("027670000002027670000001") + b"\x08\x00" + bytes(46)  # 60 bytes
cfg = ErspanConfig(remote, EncapType.ERSPAN3, session_id=7)
enc = ErspanEncapsulator(cfg)
t = time.perf_counter()
for _ in range(n):
    enc.encapsulate(frame)
encap_us = (time.perf_counter() - t) / n * 1e6
with RawGreSender(cfg) as s:
    t = time.perf_counter()
    for _ in range(n):
        s.send(frame)
    send_us = (time.perf_counter() - t) / n * 1e6
    errors = s.counters.errors
print(json.dumps({"encapsulate_us": encap_us, "send_us": send_us, "errors": errors}))
"""


def sender_cost(lab: Lab, n: int) -> dict[str, float]:
    """Microseconds per copy in the host namespace on the switch's CPU (no switch running).

    ``encapsulate_us``: building the GRE+ERSPAN payload in Python; ``send_us``: a
    whole ``RawGreSender.send`` (encapsulation plus the raw-socket syscall, which on
    veth also runs the collector namespace's receive path on this CPU).
    """
    proc = sh(*in_ns(lab.host, sys.executable, "-c", SENDER_COST, str(n), COL_U,
                     cpu=SWITCH_CPU), check=False, timeout=120)
    try:
        out: dict[str, float] = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise MeasureError(f"sender cost: {proc.stderr.strip()[-300:]}") from err
    return out


log = progress("bench_erspan")


# ------------------------------------------------------------------ topology
@dataclass
class Lab:
    topo: Topology
    host: str
    snd: Host
    rcv: Host
    col: Host


def build(topo: Topology) -> Lab:
    """The host namespace with the switch's two ports and the underlay to the collector."""
    sw = topo.switch_namespace(
        "host", [("vp7bs", "snd", SENDER[1], SENDER[0]),
                 ("vp7br", "rcv", RECEIVER[1], RECEIVER[0])],
        Underlay("vp7bu", "col", HOST_U, COL_U, COL_MAC))
    assert sw.collector is not None
    return Lab(topo, sw.ns, sw.hosts["vp7bs"], sw.hosts["vp7br"], sw.collector)


# ------------------------------------------------------------------ collector
class Collector:
    """``vspan collect --listen 198.18.0.2`` in the collector namespace, pinned to a CPU."""

    def __init__(self, ns: str, path: str, cpu: int | None) -> None:
        self.ns = ns
        self.path = path
        self.summary = ""
        self.proc = subprocess.Popen(
            in_ns(ns, *VSPAN, "collect", "--listen", COL_U, "-w", path, "-q", cpu=cpu),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            start_new_session=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            stop_process(self.proc)
            raise BenchError(f"vspan collect did not start: {line.strip()}")

    def kernel_drops(self) -> float:
        """Receive-buffer drops of the raw GRE sockets in the namespace (``/proc/net/raw``)."""
        out = sh(*in_ns(self.ns, "cat", "/proc/net/raw"), check=False).stdout
        total = 0
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) > 12 and f[1].upper().endswith(":002F"):
                total += int(f[-1])
        return float(total)

    def stop(self) -> str:
        """SIGINT; return its summary (stderr)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                _, self.summary = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(self.proc, sig=signal.SIGKILL)
        return self.summary

    def written(self) -> int:
        """Frames written, from the summary."""
        m = re.search(r"(\d+) frames written", self.summary)
        return int(m.group(1)) if m else 0


# ------------------------------------------------------------------ measuring
@dataclass
class Samples:
    """Per-run values of one setup."""

    tcp_gbps: list[float] = field(default_factory=list)
    delivered_kpps: list[float] = field(default_factory=list)
    offered_kpps: list[float] = field(default_factory=list)
    ping_avg_us: list[float] = field(default_factory=list)
    switch_cpu_pps: list[float] = field(default_factory=list)
    kpps_per_cpu: list[float] = field(default_factory=list)
    gre_kpps: list[float] = field(default_factory=list)  # GRE packets arriving at vp7bcol
    collected_kpps: list[float] = field(default_factory=list)  # taken off the socket
    col_drop_kpps: list[float] = field(default_factory=list)
    mirror: list[dict[str, int]] = field(default_factory=list)  # session counters after a run
    collector_totals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tcp_failed: int = 0
    pps_failed: int = 0
    ping_failed: int = 0


@dataclass
class Plan:
    runs: int
    seconds: float
    warmup: float
    ping_count: int
    decode_packets: int
    load_before: str = "?"
    load_after: str = "?"
    decode_pps: dict[str, float] = field(default_factory=dict)
    live: dict[str, float] = field(default_factory=dict)  # bench_collector.live_rate medians
    sender: dict[str, float] = field(default_factory=dict)  # sender_cost medians
    machine: list[tuple[str, str]] = field(default_factory=list)  # at measurement time


def measure(setup: str, lab: Lab, plan: Plan, wd: str, s: Samples, switch: Switch,
            collector: Collector | None) -> None:
    """Ping, TCP and pps for one setup in one run; failures are recorded, not raised."""
    snd, rcv, col = lab.snd, lab.rcv, lab.col
    assert rcv.ip is not None
    try:
        ping_rtt(snd, rcv.ip, 3, 0.2, GEN_CPU)  # ARP, learning
        p = ping_rtt(snd, rcv.ip, plan.ping_count, 0.01, GEN_CPU)
        s.ping_avg_us.append(p.avg_us)
        log(f"  {setup}: ping avg {p.avg_us:.0f} µs")
    except MeasureError as err:
        s.ping_failed += 1
        s.errors.append(f"{setup}: ping: {err}")
    time.sleep(0.3)
    try:
        t = iperf3_tcp(snd, rcv, plan.seconds, GEN_CPU)
        s.tcp_gbps.append(t.gbps)
        log(f"  {setup}: TCP {t.gbps:.2f} Gbit/s")
    except MeasureError as err:
        s.tcp_failed += 1
        s.errors.append(f"{setup}: TCP: {err}")
        log(f"  {setup}: TCP FAILED: {err}")
    time.sleep(0.3)
    probes = {"switch": switch.cpu_seconds}
    if collector is not None:
        probes["col_drops"] = collector.kernel_drops
    try:
        r = trafgen_pps(snd, rcv, plan.seconds, GEN_CPU, wd, warmup=plan.warmup,
                        also_watch=[col], probes=probes)
    except MeasureError as err:
        s.pps_failed += 1
        s.errors.append(f"{setup}: pps: {err}")
        log(f"  {setup}: pps FAILED: {err}")
        return
    s.delivered_kpps.append(r.delivered_pps / 1e3)
    s.offered_kpps.append(r.offered_pps / 1e3)
    use = r.probes["switch"]
    s.switch_cpu_pps.append(use)
    if use > 0:
        s.kpps_per_cpu.append(r.delivered_pps / 1e3 / use)
    gre = r.extra_pps.get(col.ns, 0.0) / 1e3
    extra = ""
    if setup != NONE:
        s.gre_kpps.append(gre)
        extra = f", {gre:.0f} kpps GRE at the collector host"
    if collector is not None:
        drops = r.probes["col_drops"] / 1e3
        s.col_drop_kpps.append(drops)
        s.collected_kpps.append(max(gre - drops, 0.0))
        extra += f", collector took {gre - drops:.0f} kpps (kernel dropped {drops:.0f} kpps)"
    log(f"  {setup}: 64-byte frames {r.delivered_pps / 1e3:.0f} kpps delivered of "
        f"{r.offered_pps / 1e3:.0f} offered, switch CPU {100 * use:.0f} %{extra}")


def run_all(plan: Plan) -> dict[str, Samples]:
    """Build, measure every setup in every run, always clean up."""
    kill_stale_switch(PIDFILE)
    topo = Topology(PREFIX)
    samples = {name: Samples() for name in SETUPS}
    try:
        with workdir("vp7b-bench-") as wd:
            lab = build(topo)
            for run in range(plan.runs):
                order = SETUPS[run % 3:] + SETUPS[:run % 3]
                log(f"run {run + 1}/{plan.runs}: {', '.join(order)}")
                for setup in order:
                    s = samples[setup]
                    cfg = SWITCH_YAML + ("" if setup == NONE else ERSPAN_YAML)
                    switch = Switch(cfg, wd, SWITCH_CPU, PIDFILE,
                                    name=f"run{run}-{SETUPS.index(setup)}", ns=lab.host)
                    collector = None
                    try:
                        switch.start()
                        if setup == COLLECT:
                            collector = Collector(lab.col.ns,
                                                  os.path.join(wd, f"c{run}.pcapng"), GEN_CPU)
                        measure(setup, lab, plan, wd, s, switch, collector)
                        time.sleep(0.5)
                        if setup != NONE:
                            m = switch.json("show", "mirrors")[0]
                            s.mirror.append({k: v for k, v in m["counters"].items()
                                             if isinstance(v, int)})
                            if m["status"] != "ok":
                                s.errors.append(f"{setup}: session status {m['status']!r}")
                    except BenchError as err:
                        s.errors.append(f"{setup}: {err}")
                        log(f"  {setup}: {err}")
                    finally:
                        if collector is not None:
                            summary = collector.stop()
                            s.collector_totals.append(
                                " / ".join(x.strip() for x in summary.splitlines()[:4]))
                            with_path = os.path.join(wd, f"c{run}.pcapng")
                            if os.path.exists(with_path):
                                os.unlink(with_path)
                        switch.stop()
                    time.sleep(0.5)
            try:
                costs = [sender_cost(lab, plan.decode_packets) for _ in range(plan.runs)]
                for key in ("encapsulate_us", "send_us"):
                    plan.sender[key] = statistics.median(c[key] for c in costs)
                log(f"sender: encapsulate {plan.sender['encapsulate_us']:.2f} µs, whole send "
                    f"{plan.sender['send_us']:.2f} µs per copy")
            except MeasureError as err:
                samples[ERSPAN].errors.append(str(err))
            with tempfile.TemporaryDirectory(prefix="vp7b-decode-") as tmp:
                for kind in ("erspan3", "erspan2"):
                    rates = [decode_rate(kind, plan.decode_packets, Path(tmp))
                             for _ in range(plan.runs)]
                    plan.decode_pps[kind] = statistics.median(rates)
                    log(f"collector decode+write {kind}: {plan.decode_pps[kind]:,.0f} pps")
                lives = [live_rate(plan.seconds, Path(tmp)) for _ in range(plan.runs)]
                for key in ("offered_pps", "written_pps", "kernel_drops"):
                    plan.live[key] = statistics.median(r[key] for r in lives)
                log(f"collector live (bench_collector.live_rate): written "
                    f"{plan.live['written_pps']:,.0f} pps of {plan.live['offered_pps']:,.0f}")
    finally:
        topo.cleanup()
        kill_stale_switch(PIDFILE)
    return samples


# ------------------------------------------------------------------ reporting
def _runs(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values) or "none"


def _pct(a: float | None, b: float | None) -> str:
    return f"{100 * a / b:.0f} %" if a is not None and b else "n/a"


def render(samples: dict[str, Samples], plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = [
        "## ERSPAN: forwarding with an ERSPAN session vs. none, and the collector's pps",
        "",
        "Written by `bench/bench_erspan.py` (run as root: "
        "`.venv/bin/python bench/bench_erspan.py`).",
        "",
        "### Machine",
        "",
    ]
    lines += [f"* {k}: {v}" for k, v in (plan.machine or machine_description())]
    lines += [
        f"* load average before / after: {plan.load_before} / {plan.load_after} "
        "(the machine is shared)",
        "",
        "### Method",
        "",
        "A host namespace runs `vspan up` (pinned to CPU"
        f"{SWITCH_CPU}) with two AF_PACKET ports, sender (10.78.0.1) and receiver "
        "(10.78.0.2), each a veth to its own namespace; the host namespace also has an "
        f"underlay veth {HOST_U}/30 to a collector namespace ({COL_U}), which is not a "
        "switch port. *ERSPAN*: an ERSPAN III session copies the sender port (both "
        f"directions) to {COL_U}, sent by the switch from the host's stack over a raw GRE "
        "socket. *no collector*: nothing listens there (the copies are dropped by that "
        "namespace's kernel). *→ vspan collect*: `vspan collect --listen "
        f"{COL_U} -w FILE` runs there, pinned to CPU{GEN_CPU} **next to the generators** "
        "(the machine has 2 CPUs), so it gets only part of a CPU.",
        "",
        f"* 64-byte frames: trafgen (CPU{GEN_CPU}) sends 60-byte UDP frames to the receiver "
        f"as fast as it can; after {plan.warmup:g} s, rates over {plan.seconds:g} s from "
        "interface counters (delivered = receiver rx, GRE = collector namespace rx); the "
        "collector's kernel drops from `/proc/net/raw`; *collector took* = GRE arriving minus "
        "dropped (it writes everything it takes).",
        f"* TCP: iperf3 one stream, {plan.seconds:g} s. "
        f"Ping: {plan.ping_count} pings, 10 ms apart.",
        "* Collector capacity: `bench_collector.decode_rate` (in-process, one CPU, "
        f"{plan.decode_packets} ERSPAN packets of 128-byte frames to a pcapng file) and "
        "`bench_collector.live_rate` (`vspan collect` on CPU1 fed ERSPAN III over loopback "
        f"by a Python raw-socket sender on CPU0 for {plan.seconds:g} s; no switch running).",
        "* The underlay MTU is 1600, so full-size frames fit in ERSPAN III (40 bytes of "
        "IP+GRE+ERSPAN).",
        f"* {plan.runs} run(s), setups rotated, switch restarted for each; medians.",
        "",
        "### Results (medians)",
        "",
        "| setup | 64-byte kpps delivered | kpps offered | switch CPU % | kpps per switch "
        "CPU-second | TCP Gbit/s | ping avg µs | GRE kpps at collector host | collector "
        "took kpps | collector kernel drops kpps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SETUPS:
        s = samples[name]
        cpu = median(s.switch_cpu_pps)
        lines.append(
            f"| {name} | {fmt(median(s.delivered_kpps), 0, s.pps_failed, plan.runs)} "
            f"| {fmt(median(s.offered_kpps), 0)} "
            f"| {fmt(None if cpu is None else 100 * cpu, 0)} "
            f"| {fmt(median(s.kpps_per_cpu), 0)} "
            f"| {fmt(median(s.tcp_gbps), 2, s.tcp_failed, plan.runs)} "
            f"| {fmt(median(s.ping_avg_us), 0, s.ping_failed, plan.runs)} "
            f"| {fmt(median(s.gre_kpps), 0) if name != NONE else '-'} "
            f"| {fmt(median(s.collected_kpps), 1) if name == COLLECT else '-'} "
            f"| {fmt(median(s.col_drop_kpps), 1) if name == COLLECT else '-'} |")
    lines += ["", "Collector capacity: decode+write in-process (one full CPU, no network) "
              + ", ".join(f"{k} {v:,.0f} pps" for k, v in plan.decode_pps.items())
              + "; live over loopback (collector on its own CPU): written "
              + f"{plan.live.get('written_pps', 0):,.0f} pps of "
              + f"{plan.live.get('offered_pps', 0):,.0f} offered, kernel drops "
              + f"{plan.live.get('kernel_drops', 0):,.0f} in {plan.seconds:g} s."]
    if plan.sender:
        lines += ["", "The sender's cost per copy, measured alone in the host namespace on the "
                  f"switch's CPU: encapsulation {plan.sender['encapsulate_us']:.2f} µs, a whole "
                  f"`RawGreSender.send` {plan.sender['send_us']:.2f} µs (one raw-socket "
                  "syscall per copy; on veth the collector namespace's receive path runs "
                  "inside that syscall, on the same CPU)."]
    n, e = samples[NONE], samples[ERSPAN]
    n_pps, e_pps = median(n.delivered_kpps), median(e.delivered_kpps)
    n_tcp, e_tcp = median(n.tcp_gbps), median(e.tcp_gbps)
    lines += [
        "",
        f"With the ERSPAN session the switch forwards {_pct(e_pps, n_pps)} of its 64-byte "
        f"frame rate without one ({fmt(n_pps, 0)} → {fmt(e_pps, 0)} kpps) and "
        f"{_pct(e_tcp, n_tcp)} of its TCP throughput ({fmt(n_tcp)} → {fmt(e_tcp)} Gbit/s); "
        f"frames per switch CPU-second {fmt(median(n.kpps_per_cpu), 0)} → "
        f"{fmt(median(e.kpps_per_cpu), 0)} k.",
        "",
        "Reading: every copy costs the switch one Python encapsulation and one raw-socket "
        "`send()` (no batching), about as much again as forwarding the frame, so 64-byte "
        "forwarding roughly halves. TCP suffers far more: since 88d0063 a GSO super-frame "
        "(up to 64 KB, one frame for the forwarding path) is segmented in software into "
        "MSS-sized wire frames before encapsulation, and each of those is sent on its own "
        "- which makes the copies complete and correct (the two-host system test follows a "
        "200 KB response from the collected file) but costs dozens of sends per forwarded "
        "super-frame. That is why the session counters below show `mirrored` (wire frames "
        "sent) well above `offered` (frames the session saw). The collector keeps up with "
        "what this switch can send only when it has CPU; here it shares CPU0 with the "
        "generators, and the kernel drops what it cannot take (counted as sequence gaps).",
        "",
        "Per run:",
        "",
    ]
    for name in SETUPS:
        s = samples[name]
        lines.append(f"* {name}: delivered {_runs(s.delivered_kpps)} kpps; TCP "
                     f"{_runs(s.tcp_gbps, 2)} Gbit/s; ping {_runs(s.ping_avg_us)} µs"
                     + (f"; GRE {_runs(s.gre_kpps)} kpps" if name != NONE else "")
                     + (f"; collector took {_runs(s.collected_kpps, 1)} kpps"
                        if name == COLLECT else ""))
        for m in s.mirror:
            lines.append(f"  * session counters after the run: {json.dumps(m)}")
        for t in s.collector_totals:
            lines.append(f"  * collector: {t}")
    notes = [e for name in SETUPS for e in samples[name].errors]
    if notes:
        lines += ["", "### Problems seen in this run", ""] + [f"* {x}" for x in notes]
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = bench_arguments((__doc__ or "").splitlines()[0],
                         "1 run, 2 s windows, no RESULTS.md")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="do not measure: render the section from an earlier --json dump")
    args = ap.parse_args(argv)
    if args.render is not None:
        raw_in = json.loads(args.render.read_text(encoding="utf-8"))
        plan_in = Plan(**raw_in["plan"])
        samples_in = {k: Samples(**v) for k, v in raw_in["samples"].items()}
        section = render(samples_in, plan_in)
        sys.stdout.write(section)
        if not args.no_write:
            update_section("erspan", section, args.results, (BEGIN, END))
        return 0
    plan = Plan(runs=1 if args.quick else 3, seconds=2.0 if args.quick else 5.0,
                warmup=0.5 if args.quick else 1.0, ping_count=20 if args.quick else 50,
                decode_packets=20_000 if args.quick else 100_000)
    write = apply_plan_options(plan, args)

    samples, rc = guarded_measure(__file__, stamped(plan, lambda: run_all(plan)))
    if samples is None:
        return rc
    publish(render(samples, plan), args, write, "erspan",
            {"plan": asdict(plan), "samples": {k: asdict(v) for k, v in samples.items()}},
            log, (BEGIN, END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
