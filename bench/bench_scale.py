#!/usr/bin/env python3
"""Benchmark: a 64-port switch with 100 000 flows vs 10 flows, and its flow cache's memory.

Two parts (issue 9's scale run):

* **in process** (``--inprocess-worker``, one fresh interpreter per case, pinned
  to CPU1): an :class:`~vspan.datapath.engine.Engine` on 64 memory ports, all 64
  hosts' MACs learned first, then 64-frame batches of 60-byte UDP frames from
  every port to every other port: 10 flows, or 100 000 distinct flows (source
  port x destination port x UDP source port), ``--passes`` times over. Reported:
  frames per CPU-second, the flow cache's hits/misses/evictions/entries, the
  process's RSS before the flows, after them, and its peak (VmHWM), so bytes
  per cache entry. Each case runs with the default cache (65 536 entries,
  smaller than the flow count: it is bounded, and thrashes) and with one big
  enough for every flow.
* **namespaces**: ``vspan up`` (pinned to CPU1) in a switch namespace with 64
  AF_PACKET ports — sender and receiver namespaces plus 62 idle veth ports —
  and trafgen (CPU0) sending 64-byte frames sender -> receiver: 10 flows
  (``sp=dinc(40000, 40009)``) vs 100 000 flows (``sp`` over 3125 values x
  ``dp`` over 32, coprime periods: every combination). Delivered kpps, switch
  CPU, kpps per CPU-second, flow-cache counters and the switch's RSS (at start,
  after each traffic pattern).

Run as root from the repository: ``.venv/bin/python bench/bench_scale.py``
(``--quick``: 1 run, 2 s windows, fewer frames, RESULTS.md left alone).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchError,
    Host,
    MeasureError,
    Switch,
    Topology,
    apply_plan_options,
    bench_arguments,
    fmt,
    guarded_measure,
    kill_stale_switch,
    machine_description,
    median,
    ping_rtt,
    progress,
    publish,
    stamped,
    trafgen_pps,
    update_section,
    workdir,
)

PREFIX = "vc-"
SECTION = "bench_scale.py"
GEN_CPU, SWITCH_CPU = 0, 1
PIDFILE = Path("/run/vspan-bench/vc-switch.pid")
PORTS = 64
FLOWS = 100_000
DEFAULT_CACHE = 65_536
BIG_CACHE = 131_072
SENDER = ("10.79.0.1/24", "02:76:63:00:00:01")
RECEIVER = ("10.79.0.2/24", "02:76:63:00:00:02")
FEW = ("dinc(40000, 40009)", "9")  # 10 flows
MANY = ("dinc(10000, 13124)", "dinc(20000, 20031)")  # 3125 x 32 = 100 000 flows


log = progress("bench_scale")


# ------------------------------------------------------------------ in process
def _status(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def inprocess_worker(ports: int, flows: int, cache_size: int, frames: int) -> dict[str, Any]:
    """One in-process case (run in a fresh interpreter): see the module docstring."""
    from vspan.config.load import load_text
    from vspan.config.model import PortConfig
    from vspan.control.assemble import build_engine
    from vspan.packet.build import arp_request, udp_frame
    from vspan.ports.base import Frame, Port
    from vspan.ports.memory import MemoryPort

    names = [f"p{i}" for i in range(ports)]
    yaml = (f"switch: {{name: vcscale, flow_cache_size: {cache_size}}}\nports:\n"
            + "".join(f"  {n}: {{type: memory}}\n" for n in names))
    backends: dict[str, MemoryPort] = {}

    def factory(name: str, _pc: PortConfig) -> Port:
        backends[name] = MemoryPort(name)
        return backends[name]

    engine = build_engine(load_text(yaml), factory)
    engine.open()
    idx = [engine.state.by_name[n] for n in names]
    mac = [f"02:76:63:01:{i // 256:02x}:{i % 256:02x}" for i in range(ports)]
    ip = [f"10.80.{i // 250}.{i % 250 + 1}" for i in range(ports)]
    for i in range(ports):  # every host announces itself: the FDB knows all MACs
        engine.process(idx[i], [Frame(arp_request(mac[i], ip[i], ip[(i + 1) % ports]))])

    def drain() -> None:
        for b in backends.values():
            b.take()

    drain()
    # flow n: source port n % P, destination one of the other P-1 ports, UDP source port
    per_port: list[list[Frame]] = [[] for _ in range(ports)]
    for n in range(flows):
        src, q = n % ports, n // ports
        dst = (src + 1 + q % (ports - 1)) % ports
        per_port[src].append(Frame(udp_frame(mac[src], mac[dst], ip[src], ip[dst],
                                             1024 + q // (ports - 1), 9, pad=True)))
    batches: list[tuple[int, list[Frame]]] = []
    if flows >= 64 * ports:
        longest = max(len(fl) for fl in per_port)
        for k in range(0, longest, 64):
            for p in range(ports):
                if chunk := per_port[p][k:k + 64]:
                    batches.append((idx[p], chunk))
    else:  # few flows: a batch repeats one flow (one per port, round robin)
        for p in range(ports):
            if per_port[p]:
                batches.append((idx[p], per_port[p] * (64 // len(per_port[p]))))
    cache = engine.cache
    rss_before = _status("VmRSS")
    # one untimed pass over every flow: the cache holds what it can before timing
    for n, (port, chunk) in enumerate(batches, 1):
        engine.process(port, chunk)
        if n % 256 == 0:
            drain()
    warm = cache.stats()
    sent = 0
    t0, c0 = time.perf_counter(), time.process_time()
    drain_every = 256
    i = 0
    while sent < frames:
        port, chunk = batches[i % len(batches)]
        engine.process(port, chunk)
        sent += len(chunk)
        i += 1
        if i % drain_every == 0:
            drain()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    drain()
    stats = cache.stats()
    peak_entries = min(cache_size, flows) if cache_size else 0
    out = {
        "ports": ports, "flows": flows, "cache_size": cache_size, "frames": sent,
        "kpps": sent / wall / 1e3, "kpps_per_cpu": sent / cpu / 1e3 if cpu else 0.0,
        "rss_before": rss_before, "rss_after": _status("VmRSS"), "rss_peak": _status("VmHWM"),
        "entries": stats["entries"], "peak_entries": peak_entries,
        "hits": stats["hits"] - warm["hits"], "misses": stats["misses"] - warm["misses"],
        "evictions": stats["evictions"],
        "invalidations": stats["invalidations"],
    }
    engine.close()
    return out


def run_inprocess(flows: int, cache_size: int, frames: int) -> dict[str, Any]:
    """Run :func:`inprocess_worker` in a fresh interpreter pinned to the switch's CPU."""
    argv = ["taskset", "-c", str(SWITCH_CPU), sys.executable, str(Path(__file__).resolve()),
            "--inprocess-worker", json.dumps([PORTS, flows, cache_size, frames])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise MeasureError(f"in-process worker failed: {proc.stderr.strip()[-400:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


# ------------------------------------------------------------------ namespaces
@dataclass
class NsSamples:
    """Per-run values of one traffic pattern on the 64-port switch."""

    delivered_kpps: list[float] = field(default_factory=list)
    offered_kpps: list[float] = field(default_factory=list)
    switch_cpu: list[float] = field(default_factory=list)
    kpps_per_cpu: list[float] = field(default_factory=list)
    rss_after: list[int] = field(default_factory=list)
    cache: list[dict[str, int]] = field(default_factory=list)  # flow cache after the window
    errors: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """How long, how often; everything measured ends up here."""

    runs: int
    seconds: float
    warmup: float
    frames: int  # in-process frames per case
    load_before: str = "?"
    load_after: str = "?"
    machine: list[tuple[str, str]] = field(default_factory=list)
    inprocess: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rss_start: list[int] = field(default_factory=list)  # the 64-port switch, before traffic
    ns: dict[str, NsSamples] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def switch_yaml(idle: int) -> str:
    """64 ports: sender, receiver and ``idle`` idle veth ports."""
    lines = ["switch: {name: vcscale, control_socket: '{socket}'}", "ports:",
             "  sender: {interface: vcs}", "  receiver: {interface: vcr}"]
    lines += [f"  idle{i}: {{interface: vci{i}}}" for i in range(idle)]
    return "\n".join(lines) + "\n"


def build(topo: Topology) -> tuple[str, Host, Host]:
    """The switch namespace with sender, receiver and 62 idle ports (peers in one namespace)."""
    sw = topo.switch_namespace("sw", [("vcs", "snd", SENDER[1], SENDER[0]),
                                      ("vcr", "rcv", RECEIVER[1], RECEIVER[0])])
    idle = topo.netns("idle")
    for i in range(PORTS - 2):
        topo.veth_between(f"i{i}", (sw.ns, f"vci{i}"), (idle, f"e{i}"))
    return sw.ns, sw.hosts["vcs"], sw.hosts["vcr"]


def measure_ns(plan: Plan, topo: Topology, wd: str) -> None:
    """Each run: start the 64-port switch, 10 flows then 100 000 flows, stop it."""
    sw_ns, snd, rcv = build(topo)
    assert rcv.ip is not None
    for run in range(plan.runs):
        switch = Switch(switch_yaml(PORTS - 2), wd, SWITCH_CPU, PIDFILE, name=f"scale{run}",
                        ns=sw_ns)
        try:
            switch.start(timeout=60)
            time.sleep(1.0)
            plan.rss_start.append(switch.rss_bytes())
            ping_rtt(snd, rcv.ip, 3, 0.2, GEN_CPU)  # ARP, learning
            for label, (sp, dp) in (("10 flows", FEW), ("100 000 flows", MANY)):
                s = plan.ns.setdefault(label, NsSamples())
                try:
                    r = trafgen_pps(snd, rcv, plan.seconds, GEN_CPU, wd, warmup=plan.warmup,
                                    probes={"switch": switch.cpu_seconds}, sport=sp, dport=dp)
                except MeasureError as err:
                    s.errors.append(str(err))
                    log(f"  {label}: FAILED: {err}")
                    continue
                use = r.probes["switch"]
                s.delivered_kpps.append(r.delivered_pps / 1e3)
                s.offered_kpps.append(r.offered_pps / 1e3)
                s.switch_cpu.append(use)
                if use > 0:
                    s.kpps_per_cpu.append(r.delivered_pps / 1e3 / use)
                time.sleep(0.5)
                s.rss_after.append(switch.rss_bytes())
                fc = switch.json("show", "counters")["flow_cache"]
                s.cache.append({k: int(v) for k, v in fc.items()})
                log(f"  {label}: {r.delivered_pps / 1e3:.0f} kpps delivered of "
                    f"{r.offered_pps / 1e3:.0f} offered, switch CPU {100 * use:.0f} %, "
                    f"RSS {s.rss_after[-1] / 2**20:.0f} MiB, cache {fc}")
        except BenchError as err:
            plan.errors.append(f"run {run + 1}: {err}")
            log(f"  run {run + 1}: {err}")
        finally:
            switch.stop()


def run_all(plan: Plan) -> None:
    """In-process cases, then the namespace part; always clean up."""
    for flows in (10, FLOWS):
        for cache in (DEFAULT_CACHE, BIG_CACHE):
            key = f"{flows} flows, cache {cache}"
            for _ in range(plan.runs):
                try:
                    r = run_inprocess(flows, cache, plan.frames)
                except MeasureError as err:
                    plan.errors.append(f"{key}: {err}")
                    continue
                plan.inprocess.setdefault(key, []).append(r)
                log(f"in process, {key}: {r['kpps']:.0f} kpps ({r['kpps_per_cpu']:.0f} per "
                    f"CPU-s), RSS {r['rss_before'] / 2**20:.0f} -> {r['rss_after'] / 2**20:.0f}"
                    f" MiB (peak {r['rss_peak'] / 2**20:.0f}), {r['entries']} entries, "
                    f"{r['misses']} misses, {r['evictions']} evictions")
    kill_stale_switch(PIDFILE)
    topo = Topology(PREFIX)
    try:
        with workdir("vc-bench-") as wd:
            measure_ns(plan, topo, wd)
    finally:
        topo.cleanup()
        kill_stale_switch(PIDFILE)


# ------------------------------------------------------------------ reporting
def ring_mib(ports: int = PORTS) -> float:
    """MiB of ``ports`` default AF_PACKET rx rings (vspan's default geometry)."""
    from vspan.ports.afpacket import DEFAULT_FRAME_SIZE, DEFAULT_RING_FRAMES, RingGeometry

    return ports * RingGeometry(DEFAULT_RING_FRAMES, DEFAULT_FRAME_SIZE).size / 2**20


def _mib(v: float | None) -> str:
    return "fail" if v is None else f"{v / 2**20:.0f}"


def render(plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = [
        "## Scale: 64 ports, 100 000 flows vs 10, and the flow cache's memory",
        "",
        "Written by `bench/bench_scale.py` (run as root: "
        "`.venv/bin/python bench/bench_scale.py`).",
        "",
        "### Machine",
        "",
    ]
    cpus = [c for s in plan.ns.values() for c in s.switch_cpu]
    if cpus and min(cpus) < 0.8:
        lines[-2:-2] = [
            f"**Taken on a shared, busy machine**: the switch got {100 * min(cpus):.0f}-"
            f"{100 * max(cpus):.0f} % of its pinned CPU in the namespace windows; kpps per "
            "switch CPU-second is the steadier figure. To be rerun on a quiet machine.", ""]
    lines += [f"* {k}: {v}" for k, v in (plan.machine or machine_description())]
    lines += [f"* load average (1/5/15 min) before / after: {plan.load_before} / "
              f"{plan.load_after} (the machine is shared)", "", "### Method", ""]
    lines += [
        f"* In process: an Engine on {PORTS} memory ports (fresh interpreter per case, "
        f"pinned to CPU{SWITCH_CPU}), every host's MAC learned first, then 64-frame batches "
        f"of 60-byte UDP frames between the ports, {plan.frames:,} frames per case: 10 "
        f"flows, or {FLOWS:,} distinct flows cycled in order. Frames per CPU-second of the "
        "process after one untimed pass over every flow (misses counted in the timed frames "
        "only); RSS before that pass (frames already built), after, and the peak (VmHWM); "
        "*bytes per entry* = (peak - before) / the most entries the cache held (shown from "
        "1000 entries on). The cache "
        f"is bounded: the default {DEFAULT_CACHE:,} entries (when full it evicts an eighth "
        "chosen at random: of flows cycled in order, more than it holds, the ones that "
        f"stayed hit), and {BIG_CACHE:,} (every flow fits).",
        f"* Namespaces: `vspan up` (CPU{SWITCH_CPU}) in a switch namespace with {PORTS} "
        "AF_PACKET ports (sender, receiver, 62 idle veth ports); trafgen (CPU"
        f"{GEN_CPU}) sends 64-byte UDP frames sender → receiver: 10 flows "
        f"(`sp={FEW[0]}`) then {FLOWS:,} (`sp={MANY[0]}, dp={MANY[1]}`: coprime periods, "
        f"every pair). After {plan.warmup:g} s, rates over {plan.seconds:g} s from the "
        "interface counters; switch CPU = its CPU-seconds per second; RSS of the switch "
        "process; flow cache counters from `vspan show counters` (cumulative).",
        f"* {plan.runs} run(s); medians.",
        "",
        "### In process",
        "",
        "| case | kpps per CPU-s | cache entries at end | misses % | evictions "
        "| RSS before MiB | after MiB | peak MiB | bytes per entry |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rs in plan.inprocess.items():
        def m(name: str, rs: list[dict[str, Any]] = rs) -> float | None:
            return median([float(r[name]) for r in rs])
        frames = m("frames") or 1
        peak_entries = m("peak_entries") or 0
        per_entry = None
        if peak_entries >= 1000 and (hw := m("rss_peak")) is not None and (
                b := m("rss_before")):
            per_entry = (hw - b) / peak_entries
        lines.append(
            f"| {key} | {fmt(m('kpps_per_cpu'), 0)} | {fmt(m('entries'), 0)} "
            f"| {fmt(100 * (m('misses') or 0) / frames, 1)} | {fmt(m('evictions'), 0)} "
            f"| {_mib(m('rss_before'))} | {_mib(m('rss_after'))} | {_mib(m('rss_peak'))} "
            f"| {fmt(per_entry, 0) if per_entry is not None else '-'} |")
    few = plan.inprocess.get(f"10 flows, cache {DEFAULT_CACHE}", [])
    many = plan.inprocess.get(f"{FLOWS} flows, cache {DEFAULT_CACHE}", [])
    big = plan.inprocess.get(f"{FLOWS} flows, cache {BIG_CACHE}", [])
    fk = median([r["kpps_per_cpu"] for r in few])
    mk = median([r["kpps_per_cpu"] for r in many])
    bk = median([r["kpps_per_cpu"] for r in big])
    if fk and mk is not None:
        lines += ["", f"In process, {FLOWS:,} flows run at {100 * mk / fk:.0f} % of the "
                  f"10-flow rate with the default cache"
                  + (f" and {100 * bk / fk:.0f} % with a cache that holds them all"
                     if bk is not None else "") + "."]
    lines += [
        "",
        f"### Namespaces ({PORTS}-port switch)",
        "",
        f"Switch RSS after start, before traffic: {_mib(median(plan.rss_start))} MiB; "
        f"of it, the {PORTS} ports' AF_PACKET rx rings alone are {ring_mib():.0f} MiB (each "
        "ring's default slots hold a 64 KiB GSO super-frame).",
        "",
        "| traffic | 64-byte kpps delivered | kpps offered | switch CPU % "
        "| kpps per switch CPU-s | switch RSS after MiB | cache entries "
        "| misses (cumulative) | evictions (cumulative) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in plan.ns.items():
        cpu = median(s.switch_cpu)
        lines.append(
            f"| {label} | {fmt(median(s.delivered_kpps), 0)} | {fmt(median(s.offered_kpps), 0)} "
            f"| {fmt(None if cpu is None else 100 * cpu, 0)} | {fmt(median(s.kpps_per_cpu), 0)} "
            f"| {_mib(median([float(x) for x in s.rss_after]))} "
            f"| {fmt(median([float(c['entries']) for c in s.cache]), 0)} "
            f"| {fmt(median([float(c['misses']) for c in s.cache]), 0)} "
            f"| {fmt(median([float(c['evictions']) for c in s.cache]), 0)} |")
    a, b2 = plan.ns.get("10 flows"), plan.ns.get("100 000 flows")
    if a is not None and b2 is not None:
        ra, rb = median(a.delivered_kpps), median(b2.delivered_kpps)
        ca, cb = median(a.kpps_per_cpu), median(b2.kpps_per_cpu)
        if ra and rb is not None:
            lines += ["", f"{FLOWS:,} flows vs 10: {100 * rb / ra:.0f} % of the delivered "
                      "rate" + (f", {100 * cb / ca:.0f} % per switch CPU-second"
                                if ca and cb is not None else "") + "."]
    lines += ["", "Per run:", ""]
    for label, s in plan.ns.items():
        lines.append(f"* {label}: delivered "
                     + " / ".join(f"{v:.0f}" for v in s.delivered_kpps) + " kpps; switch CPU "
                     + " / ".join(f"{100 * v:.0f}" for v in s.switch_cpu) + " %")
    errors = plan.errors + [e for s in plan.ns.values() for e in s.errors]
    if errors:
        lines += ["", "### Problems seen in this run", ""] + [f"* {e}" for e in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--inprocess-worker"]:
        ports, flows, cache, frames = json.loads(args_in[1])
        sys.stdout.write(json.dumps(inprocess_worker(ports, flows, cache, frames)) + "\n")
        return 0
    ap = bench_arguments((__doc__ or "").splitlines()[0],
                         "1 run, 2 s windows, 200 000 in-process frames; no RESULTS.md")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="do not measure: print (and write, unless --no-write) the section "
                         "from an earlier --json dump")
    args = ap.parse_args(args_in)
    if args.render is not None:
        raw = json.loads(args.render.read_text(encoding="utf-8"))
        raw["ns"] = {k: NsSamples(**v) for k, v in raw["ns"].items()}
        raw["machine"] = [(k, v) for k, v in raw["machine"]]
        section = render(Plan(**raw))
        sys.stdout.write(section)
        if not args.no_write:
            update_section(SECTION, section, args.results)
        return 0
    plan = Plan(runs=1 if args.quick else 3, seconds=2.0 if args.quick else 5.0,
                warmup=0.5 if args.quick else 2.0,
                frames=200_000 if args.quick else 2 * FLOWS + 64)
    write = apply_plan_options(plan, args)

    def measure() -> Plan:
        run_all(plan)
        return plan

    done, rc = guarded_measure(__file__, stamped(plan, measure))
    if done is None:
        return rc
    publish(render(plan), args, write, SECTION, asdict(plan), log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
