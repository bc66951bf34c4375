#!/usr/bin/env python3
"""Benchmark: a long run at 80 % of measured capacity with a local mirror and an ERSPAN
session — memory stays flat and every frame is accounted for (not a test).

Topology (namespaces ``vk-*``): the switch (``vspan up``, pinned with ``taskset -c 1``)
runs in ``vk-host``, which has no default route, only its ports and an underlay
198.18.1.1/30 to the collector namespace ``vk-col`` (198.18.1.2). Ports: ``snd``
(namespace ``vk-snd``, 10.80.0.1), ``rcv`` (``vk-rcv``, 10.80.0.2) and ``mon``
(``vk-mon``, the local mirror destination). Mirror sessions: ``local`` copies ``snd``
(both directions) to ``mon``; ``remote`` sends the same as ERSPAN III to 198.18.1.2
(nobody listens there: the copies are counted at the collector's interface).

1. **Capacity**: trafgen on CPU0 sends 60-byte UDP frames snd -> rcv as fast as it
   can for ``--capacity-seconds``, mirrors on; capacity = the receiver's rx rate.
2. **Soak**: trafgen offers 80 % of that (``-b N pps``) for ``--minutes``. Every
   ``--interval`` seconds (10) the benchmark samples the switch process's RSS and,
   through the public API (``GET /show/counters``, ``GET /show/mirrors``), the flow
   cache size and every counter, and checks the accounting at that instant.
3. After the traffic stops, one last sample and check.

Memory is *flat* when the RSS at the end (mean of the last three samples) is less than
5 % above the RSS at the end of the warm-up (``--warmup`` seconds). The accounting
(exact equalities, checked at every sample; see docs/operations.md, "Accounting"):

* **per port**: ``rx(p) = out(q) + drops(p)``, where ``q`` is the port ``p`` talks
  to (snd <-> rcv), ``out(q) = tx(q) + tx_errors(q) - mirrored_out(q)`` (normal frames
  the switch sent or tried to send to ``q``) and ``drops(p)`` are the drops counted
  at ``p`` (all reasons but tx-error); for ``mon``: ``rx(mon) = drops(mon)``;
* **switch**: ``sum rx = sum out + sum drops`` (the sum of the above);
* **fates** (the accounting invariant, per port): ``rx_frames = forwarded + rx_dropped +
  consumed`` (every received frame forwarded, dropped with its first reason or consumed);
* **mirror sessions**: ``offered = mirrored + dropped + sampled_out``, and the local
  session's ``mirrored`` = ``mirrored_out(mon)`` = ``tx(mon) + tx_errors(mon)``.

The per-port and switch equalities hold exactly only because two ports carry normal
traffic (a frame that is not dropped leaves by exactly one port, flooded or not); the
fates equality holds in general (the switch counts every received frame's fate:
docs/accounting.md).

Run as root from the repository: ``.venv/bin/python bench/bench_soak.py`` (10 minutes;
``--minutes 2`` for a short run, whose section is labelled as such and written only
with ``--write``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    BenchError,
    Host,
    MeasureError,
    Switch,
    Topology,
    Underlay,
    bench_arguments,
    busy_processes,
    cpu_seconds,
    fmt,
    guarded_measure,
    in_ns,
    kill_stale_switch,
    link_stats,
    loadavg,
    machine_description,
    progress,
    publish,
    rss_bytes,
    sh,
    stop_process,
    trafgen_pps,
    trafgen_udp_config,
    workdir,
)
from prometheus_client.parser import text_string_to_metric_families

from vspan.cli.client import ClientError, request

PREFIX = "vk-"
SECTION = "bench_soak.py"
GEN_CPU, SWITCH_CPU = 0, 1
PIDFILE = Path("/run/vspan-bench/vk-switch.pid")
SND = ("10.80.0.1/24", "02:76:6b:00:00:01")
RCV = ("10.80.0.2/24", "02:76:6b:00:00:02")
MON_MAC = "02:76:6b:00:00:03"
HOST_U, COL_U, COL_MAC = "198.18.1.1", "198.18.1.2", "02:76:6b:00:00:0c"
TX_ERROR = "tx-error"
PEERS = {"snd": "rcv", "rcv": "snd"}  # who talks to whom; mon sends nothing it may

SWITCH_YAML = f"""\
# bench/bench_soak.py
switch:
  name: vksoak
  control_socket: {{socket}}
ports:
  snd: {{interface: vk-s}}
  rcv: {{interface: vk-r}}
  mon: {{interface: vk-m}}
mirrors:
  local:
    sources: [{{port: snd, direction: both}}]
    destinations: [mon]
  remote:
    sources: [{{port: snd, direction: both}}]
    erspan: {{type: erspan3, remote_ip: {COL_U}, source_ip: {HOST_U}, session_id: 9}}
"""


log = progress("bench_soak")


@dataclass
class Lab:
    """The namespaces."""

    topo: Topology
    host: str
    snd: Host
    rcv: Host
    mon: Host
    col: Host


def build(topo: Topology) -> Lab:
    """Switch namespace (no default route) with three ports and an underlay."""
    sw = topo.switch_namespace("host", [("vk-s", "snd", SND[1], SND[0]),
                                        ("vk-r", "rcv", RCV[1], RCV[0]),
                                        ("vk-m", "mon", MON_MAC, None)],
                               Underlay("vk-u", "col", HOST_U, COL_U, COL_MAC))
    routes = sh("ip", "-n", sw.ns, "route", "show", "default").stdout.strip()
    if routes:
        raise BenchError(f"{sw.ns} has a default route ({routes}); ERSPAN must not leave")
    assert sw.collector is not None
    return Lab(topo, sw.ns, sw.hosts["vk-s"], sw.hosts["vk-r"], sw.hosts["vk-m"],
               sw.collector)


# ------------------------------------------------------------------ sampling
@dataclass
class Sample:
    """One look at the switch."""

    t: float  # seconds since the soak started
    rss_kib: int
    flow_cache: int
    cpu_s: float
    ports: dict[str, dict[str, int]]
    drops: dict[str, dict[str, int]]  # port -> reason -> frames
    mirrors: dict[str, dict[str, int]]
    kernel: dict[str, int]  # interface counters outside the switch
    violations: list[str] = field(default_factory=list)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="utf-8")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def metrics(sock: str) -> Sample:
    """Every switch counter from one scrape of ``GET /metrics`` (the switch takes them in
    one snapshot between two batches, so they agree with each other)."""
    try:
        text = request(sock, "GET", "/metrics", timeout=10)
    except ClientError as err:
        raise BenchError(f"the switch API failed: {err}") from err
    s = Sample(0.0, 0, 0, 0.0, {}, {}, {}, {})
    for fam in text_string_to_metric_families(str(text)):
        for smp in fam.samples:
            name, lab, value = smp.name.removesuffix("_total"), smp.labels, int(smp.value)
            if name == "vspan_port_rx_dropped":  # by reason: the accounting term is the sum
                c = s.ports.setdefault(lab["port"], {})
                c["rx_dropped"] = c.get("rx_dropped", 0) + value
            elif (name.startswith("vspan_port_") and "port" in lab
                  and name != "vspan_port_link_up"):
                s.ports.setdefault(lab["port"], {})[name[len("vspan_port_"):]] = value
            elif name == "vspan_drops":
                by = s.drops.setdefault(lab["port"], {})
                by[lab["reason"]] = by.get(lab["reason"], 0) + value
            elif name == "vspan_mirror":
                s.mirrors.setdefault(lab["session"], {})[lab["counter"]] = value
            elif name == "vspan_flow_cache_entries":
                s.flow_cache = value
    return s


def take(sock: str, pid: int, lab: Lab, t: float) -> Sample:
    """Sample RSS, the switch's counters and counters outside the switch."""
    s = metrics(sock)
    s.t, s.rss_kib, s.cpu_s = t, rss_bytes(pid) // 1024, cpu_seconds(pid)
    s.kernel = {"snd_tx": link_stats(lab.snd.ns, "eth0")["tx_packets"],
                "rcv_rx": link_stats(lab.rcv.ns, "eth0")["rx_packets"],
                "mon_rx": link_stats(lab.mon.ns, "eth0")["rx_packets"],
                "col_rx": link_stats(lab.col.ns, "eth0")["rx_packets"]}
    try:
        ports = request(sock, "GET", "/show/ports", timeout=10)
    except ClientError as err:
        raise BenchError(f"the switch API failed: {err}") from err
    s.kernel["ring_drops"] = sum(int(p.get("backend_counters", {}).get("rx_dropped", 0))
                                 for p in ports)
    return s


def out_of(s: Sample, port: str) -> int:
    """Normal frames the switch sent (or failed to send) to ``port``."""
    c = s.ports[port]
    return c["tx_frames"] + s.drops.get(port, {}).get(TX_ERROR, 0) - c["mirrored_out"]


def drops_at(s: Sample, port: str) -> int:
    """Frames dropped at ``port`` for any reason but a failed send."""
    return sum(n for r, n in s.drops.get(port, {}).items() if r != TX_ERROR)


def check(s: Sample) -> list[str]:
    """The accounting equalities at one sample (empty: all exact)."""
    bad: list[str] = []
    for p, q in PEERS.items():
        rx, out, dropped = s.ports[p]["rx_frames"], out_of(s, q), drops_at(s, p)
        if rx != out + dropped:
            bad.append(f"port {p}: rx {rx} != out({q}) {out} + drops {dropped} "
                       f"(off by {rx - out - dropped})")
    for p, c in s.ports.items():  # every received frame's fate (docs/accounting.md)
        fates = c.get("forwarded", 0) + c.get("rx_dropped", 0) + c.get("consumed", 0)
        if c["rx_frames"] != fates:
            bad.append(f"port {p}: received {c['rx_frames']} != forwarded "
                       f"{c.get('forwarded', 0)} + dropped {c.get('rx_dropped', 0)} + "
                       f"consumed {c.get('consumed', 0)} (off by {c['rx_frames'] - fates})")
    if s.ports["mon"]["rx_frames"] != drops_at(s, "mon"):
        bad.append(f"port mon: rx {s.ports['mon']['rx_frames']} != drops "
                   f"{drops_at(s, 'mon')}")
    total_rx = sum(c["rx_frames"] for c in s.ports.values())
    total = sum(out_of(s, p) for p in PEERS) + sum(drops_at(s, p) for p in s.ports)
    if total_rx != total:
        bad.append(f"switch: rx {total_rx} != out + drops {total}")
    for name, m in s.mirrors.items():
        accounted = m["mirrored"] + m["dropped"] + m["sampled_out"] + m.get("capped", 0)
        if m["offered"] != accounted:
            bad.append(f"mirror {name}: offered {m['offered']} != mirrored + dropped + "
                       f"sampled out {accounted}")
    local, mon = s.mirrors.get("local", {}), s.ports["mon"]
    sent = mon["tx_frames"] + s.drops.get("mon", {}).get(TX_ERROR, 0)
    if not local.get("mirrored") == mon["mirrored_out"] == sent:
        bad.append(f"local mirror: mirrored {local.get('mirrored')}, mirrored_out(mon) "
                   f"{mon['mirrored_out']}, tx + tx errors at mon {sent} differ")
    return bad


# ---------------------------------------------------------------------- run
@dataclass
class Result:
    """Everything one soak produced."""

    minutes: float
    interval: float
    warmup: float
    fraction: float = 0.8  # of the measured capacity
    capacity_pps: float = 0.0
    capacity_offered_pps: float = 0.0
    rate_pps: int = 0
    samples: list[Sample] = field(default_factory=list)
    offered_pps: float = 0.0  # snd's tx during the soak
    delivered_pps: float = 0.0  # rcv's rx during the soak
    ring_drops: int = 0  # frames the kernel dropped before the switch read them
    switch_cpu: float = 0.0  # CPU-seconds per second during the soak
    errors: list[str] = field(default_factory=list)
    load_before: str = "?"
    load_after: str = "?"
    others: list[str] = field(default_factory=list)


def soak(lab: Lab, wd: str, res: Result) -> None:
    """Capacity, then the soak with sampling; fills ``res``."""
    switch = Switch(SWITCH_YAML, wd, SWITCH_CPU, PIDFILE, name="soak", ns=lab.host)
    gen: subprocess.Popen[bytes] | None = None
    try:
        switch.start()
        assert switch.proc is not None and lab.rcv.ip is not None
        pid = switch.proc.pid
        sh(*in_ns(lab.snd.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", lab.rcv.ip))
        status = [m["status"] for m in switch.json("show", "mirrors")]
        if status != ["ok", "ok"]:
            raise BenchError(f"mirror sessions not ok: {status}")
        log("measuring capacity (mirrors on)")
        cap = trafgen_pps(lab.snd, lab.rcv, res.interval, GEN_CPU, wd, warmup=1.0)
        res.capacity_pps, res.capacity_offered_pps = cap.delivered_pps, cap.offered_pps
        res.rate_pps = max(1, int(res.fraction * cap.delivered_pps))
        log(f"capacity {cap.delivered_pps / 1e3:.1f} kpps (offered {cap.offered_pps / 1e3:.1f});"
            f" soaking at {res.rate_pps / 1e3:.1f} kpps for {res.minutes:g} min")
        time.sleep(2.0)
        cfg = os.path.join(wd, "soak-trafgen.cfg")
        Path(cfg).write_text(trafgen_udp_config(lab.snd, lab.rcv), encoding="utf-8")
        gen = subprocess.Popen(
            in_ns(lab.snd.ns, "trafgen", "-o", "eth0", "-i", cfg, "-P", "1", "-b",
                  f"{res.rate_pps}pps", "--no-sock-mem", "--notouch-irq", cpu=GEN_CPU),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        t0 = time.monotonic()
        end = t0 + res.minutes * 60
        first = take(switch.socket, pid, lab, 0.0)
        res.samples.append(first)
        next_at = t0 + res.interval
        while time.monotonic() < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += res.interval
            if gen.poll() is not None:
                raise MeasureError(f"trafgen stopped early ({gen.returncode})")
            if not switch.alive():
                raise BenchError(f"the switch died: {switch.log_tail()}")
            s = take(switch.socket, pid, lab, time.monotonic() - t0)
            s.violations = check(s)
            res.samples.append(s)
            ours = (pid, gen.pid, *children(gen.pid))  # trafgen forks its sender
            res.others.append(", ".join(busy_processes(exclude=ours)) or "-")
            prev = res.samples[-2]
            use = (s.cpu_s - prev.cpu_s) / max(s.t - prev.t, 1e-6)
            log(f"t={s.t:5.0f} s rss {s.rss_kib / 1024:.1f} MiB, switch CPU {100 * use:.0f} %, "
                f"flow cache {s.flow_cache}, "
                f"rx(snd) {s.ports['snd']['rx_frames']}, sent {s.kernel['snd_tx']}, "
                f"delivered {s.kernel['rcv_rx']}, ring drops {s.kernel['ring_drops']}, "
                f"{'accounting exact' if not s.violations else s.violations[0]}")
        last_t = time.monotonic() - t0
        stop_process(gen, sig=2, timeout=10)
        gen = None
        time.sleep(1.0)
        final = take(switch.socket, pid, lab, time.monotonic() - t0)
        final.violations = check(final)
        res.samples.append(final)
        span = res.samples[-2]
        res.switch_cpu = (span.cpu_s - first.cpu_s) / max(span.t - first.t, 1e-6)
        res.offered_pps = (span.kernel["snd_tx"] - first.kernel["snd_tx"]) / last_t
        res.delivered_pps = (span.kernel["rcv_rx"] - first.kernel["rcv_rx"]) / last_t
        ports = switch.json("show", "ports")
        res.ring_drops = sum(int(p.get("backend_counters", {}).get("rx_dropped", 0))
                             for p in ports)
    except (BenchError, MeasureError) as err:
        res.errors.append(str(err))
        log(f"FAILED: {err}")
    finally:
        stop_process(gen, sig=2, timeout=10)
        switch.stop()


# ------------------------------------------------------------------ verdicts
def memory(res: Result) -> tuple[int | None, int | None, float | None, int | None]:
    """(baseline, end, growth %, max) of the RSS after the warm-up, in KiB."""
    during = [s for s in res.samples[:-1] if s.t > 0]
    base = next((s for s in during if s.t >= res.warmup), None)
    if base is None:
        return None, None, None, None
    after = [s.rss_kib for s in during if s.t >= base.t]
    end = sum(after[-3:]) // len(after[-3:])
    return base.rss_kib, end, 100.0 * (end - base.rss_kib) / base.rss_kib, max(after)


# What a closer look found (by hand, not re-measured by each run; keep it true or remove it)
NOTES = """\
### Notes (investigated by hand on 2026-11-26; not re-measured by each run)

* **At a steady rate below capacity the switch delivered less than at saturation.** In
  the 10-minute run on the shared machine the switch used ~4 % of its CPU while the
  kernel dropped most frames at its receive ring (`rx_dropped`): the frames never
  reached the switch, so they are outside the accounting, which stayed exact. The
  AF_PACKET ring holds 270 frames (slots sized for 64 KiB GSO frames), about 17 ms at
  15.8 kpps; a switch thread that sleeps between frames and then waits for CPU1 (shared
  with other helpers' test runs, see the busy processes) longer than that loses the
  rest. At saturation the thread never sleeps and keeps its share of the CPU. A
  20-second trial without mirror sessions with the ring raised to 4096 slots (a local
  change, not committed) delivered 48 % of the offered rate instead of 26 %. Ring
  sizing belongs to the port layer (`vspan.ports.afpacket`); rerun this on a quiet
  machine before reading the delivered rate as the switch's.
"""

MISSING = """\
What the switch's counters lack for the general per-port check "received = forwarded +
dropped by reason (+ consumed)" (so this benchmark checks the equalities above, which
hold only because two ports carry normal traffic):

* a per-ingress-port **forwarded** count (frames that left by at least one port): today
  only the egress side counts (`tx_frames`), and a flooded frame counts once per copy;
* drops **attributed to the frame's ingress port** and told apart from drops of **one
  copy**: today a drop is counted at the port where it happened — an egress ACL or
  firewall drop, a known destination that is down or a mirror destination, an egress
  VLAN drop and a failed send (`tx-error`) count at the output port, and a frame
  flooded to three ports with one egress drop is both delivered and dropped;
* a **consumed** count for frames the switch takes itself (the trigger of a firewall
  reject answer is a drop today; the answer is a frame with no received frame behind it);
* per-session counts of copies **filtered out** (the session filter) — `offered` counts
  only what passed it.
"""


def render(res: Result, labelled: bool) -> str:
    """The RESULTS.md section."""
    base, end, growth, peak = memory(res)
    during = res.samples[1:]
    bad = [(s.t, v) for s in during for v in s.violations]
    flat = growth is not None and growth < 5.0
    cache = [s.flow_cache for s in during] or [0]
    last = res.samples[-1] if res.samples else None
    title = "## Soak: 80 % of capacity with a local mirror and an ERSPAN session"
    if labelled:
        title += f" — SHORT RUN ({res.minutes:g} min), not the 10-minute soak"
    lines = [title, "",
             "Written by `bench/bench_soak.py` (run as root: `.venv/bin/python "
             "bench/bench_soak.py`). **Taken on a shared, busy machine** (other helpers' "
             "tests and benchmarks ran at the same time; see the load averages and the "
             "busy processes); the lead reruns it on a quiet one for the record.", "",
             "### Machine", ""]
    lines += [f"* {k}: {v}" for k, v in machine_description()]
    lines += [f"* load average (1/5/15 min) before / after: {res.load_before} / "
              f"{res.load_after}", "", "### Method", "",
              (__doc__ or "").split("\n\n", 1)[1].split("Run as root")[0].strip(), "",
              "### Results", "",
              f"* capacity (mirrors on): {res.capacity_pps / 1e3:.1f} kpps delivered of "
              f"{res.capacity_offered_pps / 1e3:.1f} kpps offered; soak rate "
              f"{res.rate_pps / 1e3:.1f} kpps (80 %) for {res.minutes:g} min, sampled every "
              f"{res.interval:g} s ({len(during)} samples)",
              f"* offered during the soak (sender's tx): {res.offered_pps / 1e3:.1f} kpps; "
              f"delivered (receiver's rx): {res.delivered_pps / 1e3:.1f} kpps "
              f"({fmt(100 * res.delivered_pps / res.offered_pps if res.offered_pps else None, 0)}"
              f" %); the switch's CPU use: {100 * res.switch_cpu:.0f} %; frames the kernel "
              f"dropped before the switch read them (ring drops, all ports, capacity test "
              f"included): {res.ring_drops}",
              f"* RSS after the {res.warmup:g} s warm-up: "
              f"{fmt(base / 1024 if base else None, 1)} MiB; at the end: "
              f"{fmt(end / 1024 if end else None, 1)} MiB ({fmt(growth, 2)} %); highest "
              f"{fmt(peak / 1024 if peak else None, 1)} MiB -> memory "
              f"**{'flat' if flat else 'NOT flat'}** (< 5 % growth)",
              f"* flow cache entries: {min(cache)}..{max(cache)}",
              f"* accounting: **{'exact at every sample' if not bad and during else 'VIOLATED'}**"
              f" ({len(during)} checks" + (f"; first: t={bad[0][0]:.0f} s {bad[0][1]}"
                                           if bad else "") + ")"]
    if last is not None:
        m = last.mirrors
        lines.append(f"* mirror sessions at the end: local {m.get('local', {}).get('mirrored')} "
                     f"copies, remote (ERSPAN) {m.get('remote', {}).get('mirrored')} copies "
                     f"({m.get('remote', {}).get('dropped')} dropped); GRE packets at the "
                     f"collector's interface: {last.kernel['col_rx']}")
        drops = {f"{p}/{r}": n for p, by in last.drops.items() for r, n in by.items()}
        lines.append(f"* drops by port/reason at the end: {drops or 'none'}")
    for e in res.errors:
        lines.append(f"* error: {e}")
    lines += ["", "Samples (t s: RSS MiB, flow cache, rx(snd), out(rcv), drops):", ""]
    for s in during:
        lines.append(f"* {s.t:.0f}: {s.rss_kib / 1024:.1f}, {s.flow_cache}, "
                     f"{s.ports['snd']['rx_frames']}, {out_of(s, 'rcv')}, "
                     f"{sum(drops_at(s, p) for p in s.ports)}"
                     + (" — " + "; ".join(s.violations) if s.violations else ""))
    seen = Counter(p for entry in res.others for p in entry.split(", ") if p != "-")
    lines += ["", "Other busy processes seen at the samples (count of samples): "
              + (", ".join(f"{k} ({n})" for k, n in seen.most_common()) or "none"), "",
              NOTES, "### What the counters lack", "", MISSING]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = bench_arguments(__doc__.splitlines()[0] if __doc__ else None,
                         "2 minutes, 5 s samples; RESULTS.md is not written unless --write")
    ap.add_argument("--minutes", type=float, default=None, help="soak length (default 10)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the memory baseline (default 60; 30 for short runs)")
    ap.add_argument("--fraction", type=float, default=0.8,
                    help="share of the measured capacity to offer (default 0.8)")
    args = ap.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (2.0 if args.quick else 10.0)
    interval = max(1.0, args.interval if not args.quick else min(args.interval, 5.0))
    warmup = args.warmup if args.warmup is not None else (60.0 if minutes >= 10 else 30.0)
    res = Result(minutes=minutes, interval=interval, warmup=warmup, fraction=args.fraction)
    short = minutes < 10
    write = not args.no_write and (args.write or not (args.quick or short))

    def measure() -> Result:
        kill_stale_switch(PIDFILE)
        topo = Topology(PREFIX)
        res.load_before = loadavg()
        try:
            with workdir("vk-soak-") as wd:
                soak(build(topo), wd, res)
        finally:
            topo.cleanup()
            kill_stale_switch(PIDFILE)
        res.load_after = loadavg()
        return res

    out, rc = guarded_measure(__file__, measure)
    if out is None:
        return rc
    publish(render(out, short), args, write, SECTION, asdict(out), log)
    return 1 if out.errors else 0


if __name__ == "__main__":
    sys.exit(main())
