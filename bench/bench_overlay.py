#!/usr/bin/env python3
"""Benchmark: VM to VM across two hosts over VXLAN, vspan's overlay port vs. the kernel's.

Not a test. Two "hosts" (namespaces ``vxbh1``, ``vxbh2``) joined by an underlay veth
(198.18.1.1/24 - 198.18.1.2/24, no default route), one VM namespace behind each
(``vxbv1`` 10.79.0.1, ``vxbv2`` 10.79.0.2, MTU 1450 = underlay 1500 - 50), VNI 5000,
UDP 4789. Setups, each built from scratch and removed after its measurements:

* **vspan**: ``vspan up`` in each host namespace (both pinned to CPU1) with the VM's
  veth as an AF_PACKET port and a ``type: vxlan`` overlay port;
* **Linux bridge + vxlan**: in each host namespace a kernel bridge with the VM's veth
  and a ``vxlan`` device (``dstport 4789 nolearning`` + a head-end fdb entry), the
  kernel's own distributed-switch building blocks (skipped when the kernel has no
  bridge devices);
* **kernel vxlan in the VMs**: the vxlan device (with the VM's address) sits in the
  VM namespace itself, the underlay veth too; no bridge, no host hop: the cost of
  kernel VXLAN alone.

Measured per setup and run: TCP Gbit/s (iperf3, one stream, VM1 → VM2), 64-byte UDP
frames per second delivered (trafgen in VM1 on CPU0, rate from VM2's rx counter after a
warm-up), ping p50 µs, and for vspan both switches' CPU use. Medians of ``--runs`` go to
``bench/RESULTS.md`` between ``<!-- BEGIN overlay -->`` and ``<!-- END overlay -->``.

Run as root from the repository: ``.venv/bin/python bench/bench_overlay.py``
(``--quick``: 1 run, 2 s windows, RESULTS.md left alone unless ``--write``).
"""

from __future__ import annotations

import json
import sys
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
    iperf3_tcp,
    kill_stale_switch,
    machine_description,
    median,
    ping_rtt,
    progress,
    publish,
    sh,
    stamped,
    trafgen_pps,
    update_section,
    workdir,
)

PREFIX = "vxb"
GEN_CPU = 0
SWITCH_CPU = 1
PIDFILE = Path("/run/vspan-bench/vxb-switch.pid")
U1, U2 = "198.18.1.1", "198.18.1.2"  # RFC 2544 benchmarking range
VM1 = ("10.79.0.1/24", "02:76:78:00:00:01")
VM2 = ("10.79.0.2/24", "02:76:78:00:00:02")
VNI = 5000
VM_MTU = 1450

VSPAN, BRIDGE, KERNEL = "vspan ↔ vspan", "Linux bridge + vxlan", "kernel vxlan in the VMs"
SETUPS = (VSPAN, BRIDGE, KERNEL)

SWITCH_YAML = """\
# bench/bench_overlay.py
switch: {{name: {name}, control_socket: {{socket}}}}
ports:
  vm: {{interface: eth0}}
  overlay:
    type: vxlan
    vxlan: {{local_ip: {local}, vnis: {{0: {vni}}}, flood: {{0: [{remote}]}}}}
"""


log = progress("bench_overlay")


@dataclass
class Lab:
    topo: Topology
    hosts: tuple[str, str]
    vm1: Host
    vm2: Host


def kernel_vxlan(ns: str, local: str, remote: str) -> None:
    """A kernel VTEP ``vx0`` in ``ns``: IANA port, static head-end entry, MTU 1450."""
    sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "dstport",
       "4789", "local", local, "nolearning")
    sh("bridge", "-n", ns, "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", remote)
    sh("ip", "-n", ns, "link", "set", "vx0", "mtu", str(VM_MTU))
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1",
       check=False)


def build(topo: Topology, setup: str) -> Lab:
    """The namespaces and links of one setup."""
    v1, v2 = topo.netns("v1"), topo.netns("v2")
    if setup == KERNEL:  # the VMs are their own VTEPs
        topo.veth_direct("u", (v1, "02:76:78:00:01:01", f"{U1}/24"),
                         (v2, "02:76:78:00:01:02", f"{U2}/24"), ifname="u0")
        for ns, (cidr, mac), local, remote in ((v1, VM1, U1, U2), (v2, VM2, U2, U1)):
            kernel_vxlan(ns, local, remote)
            sh("ip", "-n", ns, "link", "set", "vx0", "address", mac)
            sh("ip", "-n", ns, "addr", "add", cidr, "dev", "vx0")
            sh("ip", "-n", ns, "link", "set", "vx0", "up")
        return Lab(topo, (v1, v2), Host(v1, "vx0", VM1[1], VM1[0].split("/")[0]),
                   Host(v2, "vx0", VM2[1], VM2[0].split("/")[0]))
    h1, h2 = topo.netns("h1"), topo.netns("h2")
    topo.veth_direct("u", (h1, "02:76:78:00:01:01", f"{U1}/24"),
                     (h2, "02:76:78:00:01:02", f"{U2}/24"), ifname="u0")
    _, vm1 = topo.veth_direct("a", (h1, "02:76:78:00:02:01", None), (v1, VM1[1], VM1[0]))
    _, vm2 = topo.veth_direct("b", (h2, "02:76:78:00:02:02", None), (v2, VM2[1], VM2[0]))
    for vm in (vm1, vm2):
        sh("ip", "-n", vm.ns, "link", "set", "eth0", "mtu", str(VM_MTU))
    if setup == BRIDGE:
        for ns, local, remote in ((h1, U1, U2), (h2, U2, U1)):
            made = sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge", check=False)
            if made.returncode != 0:
                raise BenchError(f"no kernel bridge devices here: {made.stderr.strip()}")
            kernel_vxlan(ns, local, remote)
            for dev in ("eth0", "vx0"):
                sh("ip", "-n", ns, "link", "set", dev, "master", "br0")
                sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "br0", "up")
    sh("ip", "netns", "exec", h1, "ping", "-c", "1", "-W", "2", U2)  # underlay neighbour
    return Lab(topo, (h1, h2), vm1, vm2)


@dataclass
class Samples:
    """Per-run values of one setup."""

    tcp_gbps: list[float] = field(default_factory=list)
    tcp_retrans: list[int] = field(default_factory=list)
    delivered_kpps: list[float] = field(default_factory=list)
    offered_kpps: list[float] = field(default_factory=list)
    ping_p50_us: list[float] = field(default_factory=list)
    switch_cpu: list[float] = field(default_factory=list)  # both switches, CPU-seconds/s
    overlay: list[dict[str, object]] = field(default_factory=list)  # vspan drops after a run
    busy: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str = ""


@dataclass
class Plan:
    runs: int
    seconds: float
    warmup: float
    ping_count: int
    load_before: str = "?"
    load_after: str = "?"
    machine: list[tuple[str, str]] = field(default_factory=list)


def measure(setup: str, lab: Lab, plan: Plan, wd: str, s: Samples,
            switches: list[Switch]) -> None:
    """Ping, TCP and 64-byte pps VM1 -> VM2; failures are recorded, not raised."""
    vm1, vm2 = lab.vm1, lab.vm2
    assert vm2.ip is not None
    try:
        ping_rtt(vm1, vm2.ip, 3, 0.2, GEN_CPU)  # ARP, learning
        p = ping_rtt(vm1, vm2.ip, plan.ping_count, 0.01, GEN_CPU)
        s.ping_p50_us.append(p.p50_us)
    except MeasureError as err:
        s.errors.append(f"{setup}: ping: {err}")
    try:
        t = iperf3_tcp(vm1, vm2, plan.seconds, GEN_CPU)
        s.tcp_gbps.append(t.gbps)
        s.tcp_retrans.append(t.retransmits)
        log(f"  {setup}: TCP {t.gbps:.2f} Gbit/s ({t.retransmits} retransmits)")
    except MeasureError as err:
        s.errors.append(f"{setup}: TCP: {err}")
        log(f"  {setup}: TCP FAILED: {err}")
    probes = {f"sw{i}": sw.cpu_seconds for i, sw in enumerate(switches)}
    try:
        r = trafgen_pps(vm1, vm2, plan.seconds, GEN_CPU, wd, warmup=plan.warmup,
                        probes=probes)
    except MeasureError as err:
        s.errors.append(f"{setup}: pps: {err}")
        log(f"  {setup}: pps FAILED: {err}")
        return
    s.delivered_kpps.append(r.delivered_pps / 1e3)
    s.offered_kpps.append(r.offered_pps / 1e3)
    if switches:
        s.switch_cpu.append(sum(r.probes.values()))
    s.busy.append(", ".join(busy_processes(
        [sw.proc.pid for sw in switches if sw.proc is not None])) or "none")
    log(f"  {setup}: 64-byte {r.delivered_pps / 1e3:.0f} kpps delivered of "
        f"{r.offered_pps / 1e3:.0f} offered")


def run_setup(setup: str, run: int, plan: Plan, wd: str, s: Samples) -> None:
    """Build one setup, measure, remove it."""
    topo = Topology(PREFIX)
    switches: list[Switch] = []
    try:
        lab = build(topo, setup)
        if setup == VSPAN:
            for i, (ns, local, remote) in enumerate(((lab.hosts[0], U1, U2),
                                                     (lab.hosts[1], U2, U1))):
                cfg = SWITCH_YAML.format(name=f"vxb{i}", local=local, remote=remote, vni=VNI)
                sw = Switch(cfg, wd, SWITCH_CPU, PIDFILE, name=f"r{run}h{i}", ns=ns)
                switches.append(sw)
                sw.start()
        measure(setup, lab, plan, wd, s, switches)
        if switches:
            stats = switches[0].json("show", "vteps")["ports"][0]
            s.overlay.append({"rx_drops": stats["rx_drops"], "tx_drops": stats["tx_drops"]})
    except BenchError as err:
        if "no kernel bridge" in str(err):
            s.skipped = str(err)
        else:
            s.errors.append(f"{setup}: {err}")
        log(f"  {setup}: {err}")
    finally:
        for sw in switches:
            sw.stop()
        topo.cleanup()


def run_all(plan: Plan) -> dict[str, Samples]:
    """Every setup in every run (rotated), always cleaned up."""
    kill_stale_switch(PIDFILE)
    samples = {name: Samples() for name in SETUPS}
    try:
        with workdir("vxb-bench-") as wd:
            for run in range(plan.runs):
                order = SETUPS[run % 3:] + SETUPS[:run % 3]
                log(f"run {run + 1}/{plan.runs}: {', '.join(order)}")
                for setup in order:
                    if not samples[setup].skipped:
                        run_setup(setup, run, plan, wd, samples[setup])
                    time.sleep(0.5)
    finally:
        kill_stale_switch(PIDFILE)
    return samples


def _runs(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values) or "none"


def render(samples: dict[str, Samples], plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = [
        "## Overlay: VM to VM across two hosts over VXLAN, vspan vs. the kernel",
        "",
        "Written by `bench/bench_overlay.py` (run as root: "
        "`.venv/bin/python bench/bench_overlay.py`).",
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
        f"Two host namespaces joined by an underlay veth ({U1} - {U2}, MTU 1500), one VM "
        f"namespace behind each (10.79.0.1, 10.79.0.2, MTU {VM_MTU}), VNI {VNI}, UDP 4789. "
        f"*{VSPAN}*: `vspan up` in each host namespace, both pinned to CPU{SWITCH_CPU}, "
        "with the VM's veth (AF_PACKET) and a `type: vxlan` overlay port. "
        f"*{BRIDGE}*: a kernel bridge with the VM's veth and a `vxlan` device "
        "(`dstport 4789 nolearning`, head-end fdb entry) in each host namespace. "
        f"*{KERNEL}*: the `vxlan` device and the underlay are in the VM namespaces "
        "themselves (no host hop, no bridge): the cost of kernel VXLAN alone.",
        "",
        f"* TCP: iperf3, one stream VM1 → VM2, {plan.seconds:g} s, on CPU{GEN_CPU}.",
        f"* 64-byte frames: trafgen in VM1 on CPU{GEN_CPU}; after {plan.warmup:g} s, "
        f"rates over {plan.seconds:g} s from VM2's rx (delivered) and VM1's tx (offered) "
        "counters. The kernel setups run the whole path in softirq on the sender's CPU.",
        f"* ping: {plan.ping_count} pings 10 ms apart, median RTT.",
        f"* {plan.runs} run(s), setups rotated and built afresh each time; medians.",
        "",
        "### Results (medians)",
        "",
        "| setup | TCP Gbit/s | 64-byte kpps delivered | kpps offered | ping p50 µs | "
        "switch CPU % (both) |",
        "|---|---|---|---|---|---|",
    ]
    for name in SETUPS:
        s = samples[name]
        if s.skipped:
            lines.append(f"| {name} | skipped: {s.skipped} | | | | |")
            continue
        cpu = median(s.switch_cpu)
        lines.append(
            f"| {name} | {fmt(median(s.tcp_gbps))} | {fmt(median(s.delivered_kpps), 0)} "
            f"| {fmt(median(s.offered_kpps), 0)} | {fmt(median(s.ping_p50_us), 0)} "
            f"| {fmt(None if cpu is None else 100 * cpu, 0) if name == VSPAN else '-'} |")
    lines += [
        "",
        "Reading: the kernel setups forward in softirq and keep TCP's 64 KB GSO frames whole "
        "up to the VXLAN device, which segments them in C. vspan cuts every GSO frame from "
        "the VM into MSS-sized segments in Python (`ports/offload.py`) and sends each as its "
        "own datagram (one raw-socket syscall per segment; Python has no `sendmmsg`), and the "
        "receiving switch writes each segment to the VM's veth separately: the cost is per "
        "wire segment on both hosts, and both switches share one CPU here. Ways to cut it: "
        "coalescing received segments into GSO frames for the VM (software GRO), and UDP GSO "
        "(`UDP_SEGMENT`) over a small pool of UDP sockets instead of the raw socket.",
        "",
        "Per run:",
        "",
    ]
    for name in SETUPS:
        s = samples[name]
        if s.skipped:
            continue
        lines.append(f"* {name}: TCP {_runs(s.tcp_gbps, 2)} Gbit/s (retransmits "
                     f"{' / '.join(str(r) for r in s.tcp_retrans) or 'none'}); delivered "
                     f"{_runs(s.delivered_kpps)} kpps; ping {_runs(s.ping_p50_us)} µs; "
                     f"other load: {' | '.join(s.busy) or '?'}")
        for o in s.overlay:
            lines.append(f"  * overlay drops after the run (h1): {json.dumps(o)}")
    notes = [e for name in SETUPS for e in samples[name].errors]
    if notes:
        lines += ["", "### Problems seen in this run", ""] + [f"* {x}" for x in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = bench_arguments((__doc__ or "").splitlines()[0], "1 run, 2 s windows, no RESULTS.md")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="do not measure: render the section from an earlier --json dump")
    args = ap.parse_args(argv)
    if args.render is not None:
        raw_in = json.loads(args.render.read_text(encoding="utf-8"))
        plan_in = Plan(**raw_in["plan"])
        plan_in.machine = [tuple(m) for m in plan_in.machine]  # type: ignore[misc]
        section = render({k: Samples(**v) for k, v in raw_in["samples"].items()}, plan_in)
        sys.stdout.write(section)
        if not args.no_write:
            update_section("overlay", section, args.results)
        return 0
    plan = Plan(runs=1 if args.quick else 3, seconds=2.0 if args.quick else 5.0,
                warmup=0.5 if args.quick else 1.0, ping_count=20 if args.quick else 50)
    write = apply_plan_options(plan, args)

    samples, rc = guarded_measure(__file__, stamped(plan, lambda: run_all(plan)))
    if samples is None:
        return rc
    publish(render(samples, plan), args, write, "overlay",
            {"plan": asdict(plan), "samples": {k: asdict(v) for k, v in samples.items()}}, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
