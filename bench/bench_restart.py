#!/usr/bin/env python3
"""Benchmark: how soon a switch forwards again after ``kill -9`` and a restart (not a test).

Four namespaces whose names start with ``vr-``: a sender (10.79.0.1), a receiver
(10.79.0.2), a third host (10.79.0.3) and a mirror destination, each on a port of a
``vspan up`` switch in the root namespace (pinned with ``taskset -c 1``; state file
in the run's temporary directory; ``fdb_save_seconds: 1``). Neighbours are static,
so the only frames are the ones the benchmark sends.

Each run: start the switch, ping sender -> receiver (both MACs learned), fill the
MAC table with ``--macs`` more entries (frames from random source MACs sent by the
third host), add a port ACL and a mirror session live, wait until the state file
holds the table, then — with ``ping -D -i 0.01`` running from the sender to the
receiver — ``kill -9`` the switch and start it again at once. Measured from the
moment the new process is spawned:

* *forwarding*: the first echo reply that came back through the new switch
  (a round trip: both directions forwarded);
* *API*: the first answer on the control socket;
* *flooded*: echo requests the third host saw during the restart (0 when the
  learned MACs came back: the sender's frames go to the receiver's port only);
* the MAC entries, ACL and mirror session the new switch reports.

Runs alternate between an empty table (``0`` extra MACs) and ``--macs``; medians go
to ``bench/RESULTS.md`` between this script's markers. Run as root from the
repository: ``.venv/bin/python bench/bench_restart.py`` (``--quick``: 1 run each,
RESULTS.md left alone unless ``--write``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    BenchError,
    Host,
    Switch,
    Topology,
    apply_plan_options,
    bench_arguments,
    busy_processes,
    fmt,
    guarded_measure,
    in_ns,
    kill_stale_switch,
    machine_description,
    median,
    progress,
    publish,
    sh,
    stamped,
    stop_process,
    workdir,
)

from vspan.cli.client import ClientError, request

PREFIX = "vr-"
SECTION = "bench_restart.py"
GEN_CPU = 0
SWITCH_CPU = 1
PIDFILE = Path("/run/vspan-bench/vr-switch.pid")
NET = "10.79.0"
HOSTS = {"snd": ("02:76:72:00:00:01", f"{NET}.1/24"), "rcv": ("02:76:72:00:00:02", f"{NET}.2/24"),
         "thr": ("02:76:72:00:00:03", f"{NET}.3/24"), "mon": ("02:76:72:00:00:04", None)}

SWITCH_YAML = """\
# bench/bench_restart.py
switch: {{name: vrbench, control_socket: "{{socket}}", fdb_save_seconds: 1}}
ports:
  snd: {{interface: {snd}}}
  rcv: {{interface: {rcv}}}
  thr: {{interface: {thr}}}
  mon: {{interface: {mon}}}
"""

# frames from N random source MACs (broadcast, local experimental ethertype), sent by
# the third host: the switch learns them all on its port
FILL = r"""
import os, socket, sys, time
n = int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for i in range(n):
    src = bytes([0x02, 0x99]) + i.to_bytes(4, "big")
    s.send(b"\xff" * 6 + src + b"\x88\xb5" + b"\x00" * 46)
    if i % 100 == 99:
        time.sleep(0.01)  # paced: the switch's receive ring does not overflow
"""

_PING_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)")


@dataclass
class Sample:
    """One kill -9 and restart."""

    macs: int  # extra MACs in the table
    forward_s: float | None = None  # spawn -> first echo reply through the new switch
    api_s: float | None = None  # spawn -> first control socket answer
    last_reply_before_kill_s: float | None = None  # how long before the kill it was
    flooded: int = 0  # echo requests the third host saw during the restart
    restored_macs: int = 0
    acl_restored: bool = False
    mirror_restored: bool = False
    ping_lost: int = 0
    error: str = ""


@dataclass
class Plan:
    """What to run."""

    runs: int
    macs: int
    load_before: str = "?"
    load_after: str = "?"
    others: list[str] = field(default_factory=list)


log = progress("bench_restart")


def build(topo: Topology) -> dict[str, Host]:
    """One namespace per host, its veth's root end named ``vr-<name>``."""
    hosts = {}
    for name, (mac, cidr) in HOSTS.items():
        ns = topo.netns(name)
        hosts[name] = topo.veth_to_root(name, ns, mac, cidr)
    for a, ha in hosts.items():
        for b, hb in hosts.items():
            if a != b and ha.ip and hb.ip:
                sh("ip", "-n", ha.ns, "neigh", "replace", hb.ip, "lladdr", hb.mac, "dev",
                   "eth0", "nud", "permanent")
    return hosts


def wait_api(sock: str, timeout: float = 30.0) -> float:
    """Poll the control socket every 10 ms; the time it first answered (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request(sock, "GET", "/health", timeout=1)
            return time.monotonic()
        except ClientError:
            time.sleep(0.01)
    raise BenchError(f"the switch did not answer on {sock} within {timeout} s")


def prepare(switch: Switch, hosts: dict[str, Host], macs: int) -> None:
    """Learn the hosts and ``macs`` more, add live changes, wait for the save."""
    snd, rcv, thr = hosts["snd"], hosts["rcv"], hosts["thr"]
    assert rcv.ip is not None
    sh(*in_ns(snd.ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", rcv.ip))
    if macs:
        sh(*in_ns(thr.ns, sys.executable, "-c", FILL, thr.ifname, str(macs)), timeout=120)
    sh(*in_ns(thr.ns, "ping", "-c", "1", "-W", "1", rcv.ip), check=False)  # learn thr too
    switch.cli("acl", "add", "rcv", "--action", "deny", "--direction", "in", "--remote-ip",
               "192.0.2.0/24", "--id", "no-test-net")
    switch.cli("mirror", "create", "mon", "--source", "snd", "--dest", "mon")
    want = macs + 3
    deadline = time.monotonic() + 60
    have = 0
    while time.monotonic() < deadline:
        have = int(switch.json("show", "state")["fdb_entries"])
        if have >= want:
            return
        time.sleep(0.5)
    learned = len(switch.json("show", "fdb"))
    raise BenchError(f"the state file did not reach {want} MAC entries in 60 s (it has "
                     f"{have}; the switch learned {learned})")


def icmp_requests_seen(pcap: str, src_mac: str) -> int:
    """Echo requests from ``src_mac`` in a capture (tcpdump reads it back)."""
    out = sh("tcpdump", "-nr", pcap, "-e", f"ether src {src_mac} and icmp[icmptype] = 8",
             check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


def one_run(hosts: dict[str, Host], wd: str, run: int, macs: int) -> Sample:
    """Start, prepare, kill -9 under a ping stream, restart; measure."""
    s = Sample(macs=macs)
    cfg = SWITCH_YAML.format(**{k: f"{PREFIX}{k}" for k in HOSTS})
    switch = Switch(cfg, wd, SWITCH_CPU, PIDFILE, name=f"run{run}-m{macs}")
    snd, rcv, thr = hosts["snd"], hosts["rcv"], hosts["thr"]
    assert rcv.ip is not None
    ping: subprocess.Popen[str] | None = None
    dump: subprocess.Popen[bytes] | None = None
    pcap = os.path.join(wd, f"thr-{run}.pcap")
    try:
        switch.start()
        prepare(switch, hosts, macs)
        dump = subprocess.Popen(in_ns(thr.ns, "tcpdump", "-i", thr.ifname, "-n", "-U",
                                      "--immediate-mode", "-w", pcap, "icmp"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        ping = subprocess.Popen(in_ns(snd.ns, "ping", "-D", "-n", "-i", "0.01", "-W", "0.05",
                                      "-w", "60", rcv.ip, cpu=GEN_CPU),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        time.sleep(1.0)  # ping runs, tcpdump listens
        assert switch.proc is not None
        t_kill = time.time()
        switch.proc.kill()
        switch.proc.wait()
        t0 = time.time()
        switch.spawn()
        m0 = time.monotonic() - (time.time() - t0)
        s.api_s = wait_api(switch.socket) - m0
        time.sleep(2.0)  # ping goes on through the new switch
        stop_process(ping, timeout=3)
        out = ping.stdout.read() if ping.stdout else ""
        replies = [(float(m.group(1)), int(m.group(2))) for m in
                   (_PING_RE.match(line) for line in out.splitlines()) if m]
        after = [t for t, _ in replies if t > t0]
        before = [t for t, _ in replies if t <= t_kill]
        s.forward_s = after[0] - t0 if after else None
        s.last_reply_before_kill_s = t_kill - before[-1] if before else None
        seqs = [q for _, q in replies]
        s.ping_lost = (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0
        stop_process(dump, timeout=3)
        dump = None
        s.flooded = icmp_requests_seen(pcap, snd.mac)
        s.restored_macs = int(switch.json("show", "state")["started"]["fdb"]["restored"])
        s.acl_restored = "no-test-net" in switch.cli("acl", "show", "rcv")
        s.mirror_restored = [m["name"] for m in switch.json("show", "mirrors")] == ["mon"]
    except BenchError as err:
        s.error = str(err)
        log(f"  run {run} ({macs} MACs) failed: {err} | {switch.log_tail()}")
    finally:
        stop_process(ping, timeout=3)
        stop_process(dump, timeout=3)
        switch.stop()
    return s


def run_all(plan: Plan) -> list[Sample]:
    """Every run, always cleaning up."""
    kill_stale_switch(PIDFILE)
    topo = Topology(PREFIX)
    samples: list[Sample] = []
    try:
        with workdir("vr-bench-") as wd:
            hosts = build(topo)
            for run in range(plan.runs):
                for macs in (0, plan.macs):
                    plan.others.append(", ".join(busy_processes()) or "-")
                    s = one_run(hosts, wd, run, macs)
                    log(f"run {run + 1}/{plan.runs}, {macs} extra MACs: forwarding after "
                        f"{fmt(s.forward_s, 3)} s, API after {fmt(s.api_s, 3)} s, "
                        f"{s.restored_macs} MACs back, {s.flooded} flooded requests, ACL "
                        f"{'yes' if s.acl_restored else 'NO'}, mirror "
                        f"{'yes' if s.mirror_restored else 'NO'}")
                    samples.append(s)
    finally:
        topo.cleanup()
        kill_stale_switch(PIDFILE)
    return samples


def render(samples: list[Sample], plan: Plan) -> str:
    """The RESULTS.md section."""
    lines = ["## Restart: forwarding again after kill -9 (state restored)", "",
             "Written by `bench/bench_restart.py` (run as root: "
             "`.venv/bin/python bench/bench_restart.py`). **Taken on a shared, busy machine** "
             "(other helpers' tests and benchmarks ran at the same time; see the load "
             "averages); the lead reruns it on a quiet one for the record.", "",
             "### Machine", ""]
    lines += [f"* {k}: {v}" for k, v in machine_description()]
    lines += [f"* load average (1/5/15 min) before / after: {plan.load_before} / "
              f"{plan.load_after}",
              f"* other busy processes seen per run: {'; '.join(plan.others) or '-'}", "",
              "### Method", "", (__doc__ or "").split("\n\n", 1)[1].split("Runs alternate")[0]
              .strip(), "",
              f"{plan.runs} run(s) per table size; medians.", "", "### Results (medians)", "",
              "| extra MACs | forwarding after spawn (s) | API after spawn (s) | MACs restored "
              "| requests flooded to the third host | ACL + mirror restored | runs failed |",
              "|---|---|---|---|---|---|---|"]
    for macs in sorted({s.macs for s in samples}):
        ok = [s for s in samples if s.macs == macs and not s.error]
        fwd = [s.forward_s for s in ok if s.forward_s is not None]
        api = [s.api_s for s in ok if s.api_s is not None]
        restored = median([float(s.restored_macs) for s in ok])
        flooded = max((s.flooded for s in ok), default=0)
        both = all(s.acl_restored and s.mirror_restored for s in ok) and bool(ok)
        failed = len([s for s in samples if s.macs == macs]) - len(ok)
        lines.append(f"| {macs} | {fmt(median(fwd), 2)} | {fmt(median(api), 2)} | "
                     f"{fmt(restored, 0)} | {flooded} (max) | {'yes' if both else 'NO'} | "
                     f"{failed} |")
    lines += ["", "Per run:", ""]
    for s in samples:
        lines.append(f"* {s.macs} MACs: forwarding {fmt(s.forward_s, 3)} s, API "
                     f"{fmt(s.api_s, 3)} s, {s.restored_macs} MACs back, {s.flooded} flooded, "
                     f"{s.ping_lost} echo requests lost in the gap"
                     + (f", error: {s.error}" if s.error else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = bench_arguments(__doc__.splitlines()[0] if __doc__ else None,
                         "1 run per table size; RESULTS.md is not written unless --write")
    ap.add_argument("--macs", type=int, default=5000, help="extra learned MACs (default 5000)")
    args = ap.parse_args(argv)
    plan = Plan(runs=1 if args.quick else 3, macs=max(0, args.macs))
    write = apply_plan_options(plan, args)

    samples, rc = guarded_measure(__file__, stamped(plan, lambda: run_all(plan),
                                                     machine=False))
    if samples is None:
        return rc
    publish(render(samples, plan), args, write, SECTION,
            {"plan": asdict(plan), "samples": [asdict(s) for s in samples]}, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

