#!/usr/bin/env python3
"""Benchmark: forwarding through vspan with 10 vs. 10 000 port ACL entries (not a test).

Two namespaces, sender (10.78.0.1) and receiver (10.78.0.2), each joined by a
veth pair to a 2-port vspan switch (``vspan up`` pinned with ``taskset -c 1``).
The sender's port carries a port ACL (``ports.snd.policy.acls``) of N entries,
N in {0 (no policy: the baseline), 10, 10 000}. The entries come in five
shapes so every lookup probes the same groups whatever N is: specific remote
MACs, remote /32s, local /32 + remote /24, remote /16s (all ``deny``, none of
them the traffic's) and one ``allow`` for remote 10.78.0.0/24 that decides the
measured traffic (so the verdict comes from a real lookup, not the no-match
default).

Measured for each N (all generators on CPU0):

* TCP Gbit/s: iperf3, one stream (one flow: the ACL is consulted once, then the
  flow cache answers);
* 64-byte UDP frames/s, one flow: trafgen, fixed ports (flow-cache hits);
* 64-byte UDP frames/s, a new flow per frame: trafgen with random source and
  destination ports, so nearly every frame misses the flow cache and runs the
  whole pipeline, ACL lookup included - the case where N could matter.

Rates are the receiver's rx counter over a window after a warm-up. Each run
measures every N (order rotated, switch restarted for each); medians of the
runs are reported, with the 10 000 / 10 ratio, and written to
``bench/RESULTS.md`` between ``<!-- acl:begin -->`` and ``<!-- acl:end -->``.

Run as root from the repository: ``.venv/bin/python bench/bench_acl.py``
(``--quick``: 1 run, 2 s each, RESULTS.md left alone unless ``--write``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import timeit
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml  # the config loader's own dependency
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
    in_ns,
    iperf3_tcp,
    kill_stale_switch,
    link_stats,
    loadavg,
    machine_description,
    median,
    ping_rtt,
    progress,
    publish,
    stop_process,
    trafgen_pps,
    workdir,
)

PREFIX = "vp6b"  # every namespace and interface this script makes starts with "vp6b"
GEN_CPU = 0
SWITCH_CPU = 1
PIDFILE = Path("/run/vspan-bench/vp6b-switch.pid")
BEGIN, END = "<!-- acl:begin -->", "<!-- acl:end -->"
SIZES = (0, 10, 10_000)

SENDER = ("10.78.0.1/24", "02:76:70:00:00:01")
RECEIVER = ("10.78.0.2/24", "02:76:70:00:00:02")


log = progress("bench_acl")


# ------------------------------------------------------------------ the ACL
def acl_entries(n: int) -> list[str]:
    """``n`` port ACL entries (YAML flow mappings): ``n - 1`` denies in four shapes + 1 allow."""
    if n <= 0:
        return []
    out = []
    for i in range(n - 1):
        shape, j = i % 4, i // 4
        a, b = 1 + j // 250, j % 250
        if shape == 0:
            spec = f'remote_mac: "02:ac:{a:02x}:{b:02x}:00:01"'
        elif shape == 1:
            spec = f"remote_ip: 172.16.{a}.{b}"
        elif shape == 2:
            spec = f"local_ip: 10.78.0.1, remote_ip: 172.{16 + a}.{b}.0/24"
        else:
            spec = f"remote_ip: {20 + a}.{b}.0.0/16"
        out.append(f"{{id: d{i}, action: deny, direction: both, {spec}}}")
    out.append("{id: allow-rcv, action: allow, direction: both, remote_ip: 10.78.0.0/24}")
    return out


def switch_yaml(n: int, snd_if: str, rcv_if: str) -> str:
    """The switch config with ``n`` ACL entries on the sender's port."""
    lines = ["# bench/bench_acl.py", "switch:", "  name: vp6acl", "  control_socket: {socket}",
             "ports:", f"  rcv: {{interface: {rcv_if}}}", "  snd:", f"    interface: {snd_if}"]
    entries = acl_entries(n)
    if entries:
        lines += ["    policy:", "      acls:"]
        lines += [f"        - {e}" for e in entries]
    return "\n".join(lines) + "\n"


@dataclass
class Lookup:
    """The ACL lookup itself, in process (no switch): what the slow path pays per new flow."""

    entries: int
    build_s: float  # YAML parsing (pure-Python safe_load) + validation + PortAcl build
    yaml_s: float  # of which the YAML parsing
    yaml_c_s: float  # the same YAML parsed by libyaml's CSafeLoader (not what vspan uses)
    lookup_us: float  # one PortAcl.evaluate of the measured traffic's FlowKey
    probes: int  # hash probes of that lookup
    rule: str


def measure_lookup(n: int, repeat: int = 20000) -> Lookup:
    """Validate and build the N-entry ACL as the switch does, then time one lookup."""
    from vspan.config.policy import PortPolicyConfig
    from vspan.datapath.flowkey import extract
    from vspan.policy.build import build_acl

    text = "\n".join(f"- {e}" for e in acl_entries(n)) or "[]"
    t0 = time.perf_counter()
    data = yaml.safe_load(text)
    t1 = time.perf_counter()
    cfg = PortPolicyConfig.model_validate({"acls": data})
    acl = build_acl(cfg)
    build_s = time.perf_counter() - t0
    yaml_c_s = float("nan")
    if getattr(yaml, "__with_libyaml__", False):
        t2 = time.perf_counter()
        yaml.load(text, Loader=yaml.CSafeLoader)
        yaml_c_s = time.perf_counter() - t2
    frame = (bytes.fromhex(RECEIVER[1].replace(":", "") + SENDER[1].replace(":", ""))
             + b"\x08\x00" + bytes.fromhex("4500002e0000000040110000") + bytes([10, 78, 0, 1])
             + bytes([10, 78, 0, 2]) + bytes.fromhex("9c4000090012" "0000") + bytes(18))
    key = extract(frame, 1)
    if key is None:
        raise BenchError("could not parse the lookup test frame")
    verdict = acl.evaluate(key, "out")
    best = min(timeit.repeat(lambda: acl.evaluate(key, "out"), number=repeat, repeat=5))
    return Lookup(n, build_s, t1 - t0, yaml_c_s, best / repeat * 1e6, verdict.probes,
                  verdict.rule_id or "none")


# ------------------------------------------------------------- measurements
def trafgen_new_flows(src: Host, dst: Host, seconds: float, warmup: float, wd: str,
                      switch: Switch) -> tuple[float, float, float]:
    """64-byte UDP frames with random ports (a new flow per frame).

    Returns (offered pps, delivered pps, switch CPU-seconds per second).
    """
    assert src.ip is not None and dst.ip is not None
    cfg = os.path.join(wd, "trafgen-newflows.cfg")
    with open(cfg, "w", encoding="utf-8") as fh:
        fh.write("{\n"
                 f"  eth(da={dst.mac}, sa={src.mac}),\n"
                 f"  ipv4(da={dst.ip}, sa={src.ip}, ttl=64),\n"
                 "  udp(sp=drnd(), dp=drnd()),\n"
                 "  fill(0x00, 18)\n"
                 "}\n")
    log_path = os.path.join(wd, "trafgen-newflows.log")
    argv = in_ns(src.ns, "trafgen", "-o", src.ifname, "-i", cfg, "-P", "1", "--no-sock-mem",
                 "--notouch-irq", cpu=GEN_CPU)
    with open(log_path, "wb") as lg:
        gen = subprocess.Popen(argv, stdout=lg, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        time.sleep(warmup)
        if gen.poll() is not None:
            text = Path(log_path).read_text(errors="replace")
            raise MeasureError(f"trafgen exited ({gen.returncode}): {' '.join(text.split())}")

        def snap() -> tuple[float, float, float, float]:
            t = time.monotonic()
            return (t, float(link_stats(src.ns, src.ifname)["tx_packets"]),
                    float(link_stats(dst.ns, dst.ifname)["rx_packets"]), switch.cpu_seconds())

        a = snap()
        time.sleep(seconds)
        b = snap()
        if gen.poll() is not None:
            raise MeasureError(f"trafgen stopped early ({gen.returncode})")
    finally:
        stop_process(gen, sig=signal.SIGINT, timeout=10)
    dt = b[0] - a[0]
    return (b[1] - a[1]) / dt, (b[2] - a[2]) / dt, (b[3] - a[3]) / dt


@dataclass
class Samples:
    """Per-run values for one ACL size."""

    start_s: list[float] = field(default_factory=list)  # until the control socket answered
    tcp_gbps: list[float] = field(default_factory=list)
    one_kpps: list[float] = field(default_factory=list)
    one_offered_kpps: list[float] = field(default_factory=list)
    one_cpu: list[float] = field(default_factory=list)
    one_per_cpu: list[float] = field(default_factory=list)  # kpps per switch CPU-second
    new_kpps: list[float] = field(default_factory=list)
    new_offered_kpps: list[float] = field(default_factory=list)
    new_cpu: list[float] = field(default_factory=list)
    new_per_cpu: list[float] = field(default_factory=list)
    new_miss_ratio: list[float] = field(default_factory=list)
    policy_drops: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """How long and how often."""

    runs: int
    seconds: float
    warmup: float
    load_before: str = "?"
    load_after: str = "?"


def cache_stats(switch: Switch) -> tuple[int, int]:
    """Flow-cache (hits, misses) so far."""
    fc = switch.json("show", "counters")["flow_cache"]
    return int(fc["hits"]), int(fc["misses"])


def acl_drops(switch: Switch) -> int:
    """Frames the port ACL dropped (should stay 0: the measured traffic is allowed)."""
    return sum(int(d["frames"]) for d in switch.json("show", "counters")["drops"]
               if d["reason"] == "acl-deny")


def measure(n: int, snd: Host, rcv: Host, plan: Plan, wd: str, s: Samples,
            switch: Switch) -> None:
    """TCP, one-flow pps and new-flow pps through a switch with ``n`` ACL entries."""
    assert rcv.ip is not None
    tag = f"N={n}"
    try:
        ping_rtt(snd, rcv.ip, 3, 0.2, GEN_CPU)  # ARP; the switch learns both MACs
    except MeasureError as err:
        s.errors.append(f"{tag}: warm-up ping failed: {err}")
    try:
        t = iperf3_tcp(snd, rcv, plan.seconds, GEN_CPU)
        s.tcp_gbps.append(t.gbps)
        log(f"  {tag}: TCP {t.gbps:.2f} Gbit/s ({t.retransmits} retransmits)")
    except MeasureError as err:
        s.errors.append(f"{tag}: TCP: {err}")
        log(f"  {tag}: TCP FAILED: {err}")
    time.sleep(0.5)
    try:
        r = trafgen_pps(snd, rcv, plan.seconds, GEN_CPU, wd, warmup=plan.warmup,
                        probes={"switch": switch.cpu_seconds})
        s.one_kpps.append(r.delivered_pps / 1e3)
        s.one_offered_kpps.append(r.offered_pps / 1e3)
        s.one_cpu.append(r.probes["switch"])
        if r.probes["switch"] > 0:
            s.one_per_cpu.append(r.delivered_pps / 1e3 / r.probes["switch"])
        log(f"  {tag}: one flow: {r.delivered_pps / 1e3:.0f} kpps delivered of "
            f"{r.offered_pps / 1e3:.0f} offered, switch CPU {100 * r.probes['switch']:.0f} %")
    except MeasureError as err:
        s.errors.append(f"{tag}: one-flow pps: {err}")
        log(f"  {tag}: one-flow pps FAILED: {err}")
    time.sleep(0.5)
    try:
        h0, m0 = cache_stats(switch)
        offered, delivered, cpu = trafgen_new_flows(snd, rcv, plan.seconds, plan.warmup, wd,
                                                    switch)
        time.sleep(0.5)
        h1, m1 = cache_stats(switch)
        miss = (m1 - m0) / max(1, (h1 - h0) + (m1 - m0))
        s.new_kpps.append(delivered / 1e3)
        s.new_offered_kpps.append(offered / 1e3)
        s.new_cpu.append(cpu)
        if cpu > 0:
            s.new_per_cpu.append(delivered / 1e3 / cpu)
        s.new_miss_ratio.append(miss)
        log(f"  {tag}: new flow per frame: {delivered / 1e3:.1f} kpps delivered of "
            f"{offered / 1e3:.0f} offered, flow-cache misses {100 * miss:.0f} %, "
            f"switch CPU {100 * cpu:.0f} %")
    except (MeasureError, BenchError) as err:
        s.errors.append(f"{tag}: new-flow pps: {err}")
        log(f"  {tag}: new-flow pps FAILED: {err}")
    time.sleep(0.5)
    if not switch.alive():
        s.errors.append(f"{tag}: the switch died: {switch.log_tail()}")
        return
    try:
        s.policy_drops.append(acl_drops(switch))
    except BenchError as err:
        s.errors.append(f"{tag}: cannot read counters: {err}")


def run_all(plan: Plan) -> dict[int, Samples]:
    """Build, measure every size in every run, always clean up."""
    kill_stale_switch(PIDFILE)
    topo = Topology(PREFIX)
    samples = {n: Samples() for n in SIZES}
    try:
        with workdir("vp6b-bench-") as wd:
            ssnd, srcv = topo.netns("snd"), topo.netns("rcv")
            snd = topo.veth_to_root("snd", ssnd, SENDER[1], SENDER[0])
            rcv = topo.veth_to_root("rcv", srcv, RECEIVER[1], RECEIVER[0])
            for run in range(plan.runs):
                order = SIZES[run % len(SIZES):] + SIZES[:run % len(SIZES)]
                log(f"run {run + 1}/{plan.runs}: N = {', '.join(map(str, order))}")
                for n in order:
                    cfg = switch_yaml(n, topo.name("snd"), topo.name("rcv"))
                    switch = Switch(cfg, wd, SWITCH_CPU, PIDFILE, name=f"run{run}-n{n}")
                    t0 = time.monotonic()
                    try:
                        switch.start(timeout=120)
                    except BenchError as err:
                        samples[n].errors.append(f"N={n}: switch did not start: {err}")
                        log(f"  N={n}: switch did not start: {err}")
                        switch.stop()
                        continue
                    samples[n].start_s.append(time.monotonic() - t0)
                    try:
                        measure(n, snd, rcv, plan, wd, samples[n], switch)
                    finally:
                        switch.stop()
                    time.sleep(0.5)
    finally:
        topo.cleanup()
        kill_stale_switch(PIDFILE)
    return samples


# ---------------------------------------------------------------- reporting
def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def _runs(values: list[float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values) or "none"


def render(samples: dict[int, Samples], lookups: list[Lookup], plan: Plan) -> str:
    """The RESULTS.md section (without the markers)."""
    keys = ("start_s", "tcp_gbps", "one_kpps", "one_offered_kpps", "one_cpu", "one_per_cpu",
            "new_kpps", "new_offered_kpps", "new_cpu", "new_per_cpu", "new_miss_ratio")
    med = {n: {k: median(getattr(s, k)) for k in keys} for n, s in samples.items()}
    lines = [
        "## Port ACL size: 10 vs. 10 000 entries",
        "",
        "Written by `bench/bench_acl.py` (run as root: `.venv/bin/python bench/bench_acl.py`).",
        "",
        "### Machine",
        "",
    ]
    lines += [f"* {k}: {v}" for k, v in machine_description()]
    lines += [
        f"* load average (1/5/15 min) before / after: {plan.load_before} / {plan.load_after} "
        "(the machine is shared)",
        "",
        "### Method",
        "",
        "Sender 10.78.0.1 → receiver 10.78.0.2, each namespace's veth attached to a 2-port "
        f"vspan switch (`vspan up`, `taskset -c {SWITCH_CPU}`); generators on CPU{GEN_CPU}. "
        "The sender's port has a port ACL of N entries (N = 0 is no policy at all): "
        "N - 1 `deny` entries spread over four shapes (remote MAC; remote /32; local /32 + "
        "remote /24; remote /16) that never match the traffic, and one `allow` for remote "
        "10.78.0.0/24 that decides it, all `direction: both`. The shapes (so the number of "
        "tuple-space groups probed per lookup) are the same for every N ≥ 10.",
        "",
        f"* TCP: iperf3, one stream, {plan.seconds:g} s, Gbit/s received.",
        "* one flow: trafgen, 60-byte UDP frames (64 on the wire), fixed ports — after the "
        "first frame every decision comes from the flow cache.",
        "* new flow per frame: the same frames with `udp(sp=drnd(), dp=drnd())` — nearly "
        "every frame misses the flow cache (miss ratio measured from the switch's "
        "counters) and runs the whole pipeline, ACL lookup included.",
        f"* pps: receiver's rx_packets over {plan.seconds:g} s after a {plan.warmup:g} s "
        "warm-up; switch CPU = its CPU-seconds per second in that window.",
        "* kpps per CPU-s: frames delivered per CPU-second the switch process got (its "
        "rate if it had its CPU to itself) — the machine is shared, and the switch often "
        "does not get all of its pinned CPU, so this is steadier than the raw rate.",
        f"* {plan.runs} run(s), every N in each (order rotated, switch restarted); medians.",
        "* switch start: from `vspan up` until its control socket answers (config "
        "parsing included).",
        "",
        "### Results (medians)",
        "",
        "| ACL entries | switch start s | TCP Gbit/s | one flow kpps | switch CPU % "
        "| kpps per CPU-s | new flow per frame kpps | cache misses % | switch CPU % "
        "| kpps per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in SIZES:
        m = med[n]
        cpu1 = m["one_cpu"]
        cpu2 = m["new_cpu"]
        miss = m["new_miss_ratio"]
        lines.append(
            f"| {n:,} | {fmt(m['start_s'], 1)} | {fmt(m['tcp_gbps'])} "
            f"| {fmt(m['one_kpps'], 0)} | {fmt(None if cpu1 is None else 100 * cpu1, 0)} "
            f"| {fmt(m['one_per_cpu'], 0)} "
            f"| {fmt(m['new_kpps'], 1)} | {fmt(None if miss is None else 100 * miss, 0)} "
            f"| {fmt(None if cpu2 is None else 100 * cpu2, 0)} | {fmt(m['new_per_cpu'], 1)} |")
    big, small = med[10_000], med[10]
    lines += [
        "",
        "Ratio 10 000 entries / 10 entries (1.00 = no cost from the ACL's size): "
        f"TCP {_ratio(big['tcp_gbps'], small['tcp_gbps'])}, "
        f"one-flow pps {_ratio(big['one_kpps'], small['one_kpps'])}, "
        f"new-flow-per-frame pps {_ratio(big['new_kpps'], small['new_kpps'])}; per switch "
        f"CPU-second: one flow {_ratio(big['one_per_cpu'], small['one_per_cpu'])}, "
        f"new flows {_ratio(big['new_per_cpu'], small['new_per_cpu'])}. "
        "Versus no policy (N = 0): 10 entries "
        f"{_ratio(small['one_kpps'], med[0]['one_kpps'])} (one flow) / "
        f"{_ratio(small['new_kpps'], med[0]['new_kpps'])} (new flows); "
        f"10 000 entries {_ratio(big['one_kpps'], med[0]['one_kpps'])} / "
        f"{_ratio(big['new_kpps'], med[0]['new_kpps'])}.",
        "",
        "The lookup alone, in process (`PortAcl.evaluate` of the measured flow's key, "
        "best of 5 x 20 000; the build includes YAML parsing with PyYAML's pure-Python "
        "`safe_load`, as `vspan up` does):",
        "",
        "| ACL entries | lookup µs | hash probes | deciding entry | YAML + validate + "
        "build s | of which YAML s | YAML with libyaml's CSafeLoader s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {lk.entries:,} | {lk.lookup_us:.2f} | {lk.probes} | {lk.rule} "
              f"| {lk.build_s:.2f} | {lk.yaml_s:.2f} | {lk.yaml_c_s:.2f} |" for lk in lookups]
    lines += [
        "",
        "Reading: the lookup is a tuple-space search, so its cost follows the number of "
        "entry shapes probed (the probes column), not the number of entries; "
        "the flow cache hides it entirely from established flows. What 10 000 entries do "
        "cost is start-up (and `vspan reload`) time, almost all of it PyYAML's pure-Python "
        "parser.",
    ]
    lines += [
        "",
        "Per run (in run order):",
        "",
    ]
    for n in SIZES:
        s = samples[n]
        lines.append(
            f"* N = {n:,}: start {_runs(s.start_s, 1)} s; TCP {_runs(s.tcp_gbps, 2)} Gbit/s; "
            f"one flow {_runs(s.one_kpps, 0)} kpps (offered {_runs(s.one_offered_kpps, 0)}, "
            f"switch CPU {_runs([100 * c for c in s.one_cpu], 0)} %); "
            f"new flows {_runs(s.new_kpps, 1)} kpps (offered "
            f"{_runs(s.new_offered_kpps, 0)}, switch CPU "
            f"{_runs([100 * c for c in s.new_cpu], 0)} %); acl-deny drops "
            f"{' / '.join(map(str, s.policy_drops)) or 'none'}")
    notes = [e for n in SIZES for e in samples[n].errors]
    if notes:
        lines += ["", "### Problems seen in this run", ""] + [f"* {e}" for e in notes]
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = bench_arguments(
        __doc__.splitlines()[0] if __doc__ else None,
        "smoke test: 1 run, 2 s each; RESULTS.md not written unless --write",
    ).parse_args(argv)
    plan = Plan(runs=1 if args.quick else 3, seconds=2.0 if args.quick else 5.0,
                warmup=0.5 if args.quick else 1.0)
    write = apply_plan_options(plan, args)
    lookups: list[Lookup] = []

    def measure() -> dict[int, Samples]:
        plan.load_before = loadavg()
        for n in (10, 10_000):
            lookups.append(measure_lookup(n))
            log(f"lookup with {n} entries: {lookups[-1].lookup_us:.2f} µs, "
                f"{lookups[-1].probes} probes (build {lookups[-1].build_s:.2f} s)")
        samples = run_all(plan)
        plan.load_after = loadavg()
        return samples

    samples, rc = guarded_measure(__file__, measure)
    if samples is None:
        return rc
    section = render(samples, lookups, plan)
    publish(section, args, write, "acl",
            {"plan": asdict(plan), "samples": {str(k): asdict(v) for k, v in samples.items()},
             "lookups": [asdict(lk) for lk in lookups]}, log, (BEGIN, END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
