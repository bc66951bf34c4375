"""The distributed switch: configuration propagation and VM migration (issue 8).

**Propagation**: time from `dvs apply` to every agent's datapath having applied it
(p50/p99 over hosts and rounds). Setup: etcd in a router namespace; ``--real`` host
namespaces (default 20), each with its own ``vspan agent`` and one VM port;
``--sim`` simulated hosts (default 200): :class:`HostAgent` objects with a real
engine on memory ports, each with its own etcd watch, lease and status writes,
spread over ``--sim-procs`` worker processes (default 4) so that no single Python
process serialises them all. Every host has one port in port group ``web``; each
round flips that group's VLAN (one transaction) and records, per host, when its
engine had applied the new generation -- the time stamp is taken by the agent
itself (real agents report it in their status in etcd, simulated ones on their
worker's stdout), so how often the driver looks does not change it. The latency of
a host is that time minus the time just before the transaction. Also reported: the
agents' own reconcile time (decode + compile + engine reload) per change.

**Migration** (``--migrations N``, default 3): a VM migrates between two namespace
hosts while a numbered UDP stream runs each way between it and a client on a third
host, where a sniffer VM receives the mirror copies of the VM's port
(bench/dvs_migration.py). Per run: the switch-over time from the migration record
(last frame switched on the old host to the first on the new), the time the port
was attached nowhere, the lost copies ``vspan vm migrate`` reported, and from the
stream itself: datagrams sent in the switch-over window, the sniffer's gap
(datagrams not seen there), and copies truly lost (datagrams that crossed the VM's
port but never reached the sniffer). Medians of N runs.

Numbers from a shared machine are indicative only; the lead reruns on a quiet one.

    sudo .venv/bin/python bench/bench_dvs.py [--quick] [--real 20] [--sim 200] \\
        [--sim-procs 4] [--rounds 20] [--migrations 3] [--only propagation|migration]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import busy_processes, loadavg, machine_description, update_section

SECTION = "dvs"


def dvs_yaml(real: list[str], sim: list[str], vlan: int) -> str:
    """The switch: one port per host in group ``web``."""
    lines = ["switch: {name: bench, mtu: 1600}", "hosts:"]
    lines += [f"  {h}: {{}}" for h in real + sim]
    lines += ["port_groups:", f"  web: {{vlan: {{mode: access, id: {vlan}}}}}", "ports:"]
    lines += [f"  {h}vm: {{host: {h}, interface: {h}vm, port_group: web}}" for h in real]
    lines += [f"  {h}vm: {{type: memory, host: {h}, port_group: web}}" for h in sim]
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ------------------------------------------------------ simulated agents (a worker)
def sim_worker(args: argparse.Namespace) -> int:
    """Run simulated agents for ``args.hosts``; print a JSON line per applied generation
    (``{"host", "gen", "at", "busy"}``), "READY" once all are synced; stop on stdin EOF."""
    from vspan.config.model import Config, PortConfig, SwitchConfig
    from vspan.control.agent import Agent
    from vspan.control.dvs.hostagent import HostAgent
    from vspan.control.store.etcd import EtcdStore
    from vspan.ports.base import Port
    from vspan.ports.memory import MemoryPort

    logging.basicConfig(level=logging.ERROR)

    def memory(name: str, cfg: PortConfig) -> Port:
        return MemoryPort(name)

    out = sys.stdout
    agents: list[HostAgent] = []
    for h in json.loads(args.hosts):
        agent = Agent(Config(switch=SwitchConfig(name="bench")), memory)
        agent.start()
        i = int(h[1:])  # s<i>: its own (never used) VTEP address, as a real host has
        ha = HostAgent(EtcdStore(args.etcd), "bench", h, f"198.20.{i // 250}.{i % 250 + 1}",
                       agent, ttl=30, status_interval=5.0)
        seen: dict[str, int] = {"gen": -1}

        def record(a: HostAgent, h: str = h, seen: dict[str, int] = seen) -> None:
            if a.applied_generation != seen["gen"]:
                seen["gen"] = a.applied_generation
                out.write(json.dumps({"host": h, "gen": a.applied_generation,
                                      "at": a.applied_at,
                                      "busy": a.last_reconcile_seconds,
                                      "cpu": a.last_reconcile_cpu}) + "\n")
                out.flush()

        ha.on_applied = record
        ha.start()
        agents.append(ha)
    for ha in agents:
        ha.wait_synced(120)
    out.write("READY\n")
    out.flush()
    try:
        sys.stdin.read()  # until the driver closes our stdin
    finally:
        for ha in agents:
            ha.stop(deregister=False)
            ha.agent.stop()
    return 0


# ------------------------------------------------------------- driver (in router ns)
class Workers:
    """The simulated agents' worker processes and what they reported."""

    def __init__(self, etcd: str, hosts: list[str], procs: int) -> None:
        self.applied: dict[str, dict[int, float]] = {h: {} for h in hosts}
        self.busy: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.procs: list[subprocess.Popen[str]] = []
        self._buf: dict[int, str] = {}
        n = max(1, procs)
        for i in range(n):
            part = hosts[i::n]
            if not part:
                continue
            self.procs.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--sim-worker", "--etcd", etcd,
                 "--hosts", json.dumps(part)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, bufsize=1))
        self.ready = 0

    def poll(self, timeout: float = 0.0) -> None:
        """Take what the workers printed."""
        fds = {p.stdout.fileno(): p for p in self.procs if p.stdout is not None}
        if not fds:
            return
        ready, _, _ = select.select(list(fds), [], [], timeout)
        for fd in ready:
            chunk = os.read(fd, 1 << 16).decode()
            data = self._buf.get(fd, "") + chunk
            lines = data.split("\n")
            self._buf[fd] = lines.pop()
            for line in lines:
                if line == "READY":
                    self.ready += 1
                elif line.startswith("{"):
                    rec = json.loads(line)
                    self.applied[rec["host"]].setdefault(int(rec["gen"]), float(rec["at"]))
                    self.busy[rec["host"]] = float(rec["busy"])
                    self.cpu[rec["host"]] = float(rec.get("cpu", -1))

    def stop(self) -> None:
        """Close their stdin and wait."""
        for p in self.procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def driver(args: argparse.Namespace) -> int:
    """Run the simulated agents' workers and the rounds; print one JSON result line."""
    from vspan.config.dvs import DvsConfig
    from vspan.config.load import parse_model, read_yaml
    from vspan.control.dvs.admin import DvsAdmin
    from vspan.control.store.etcd import EtcdStore

    logging.basicConfig(level=logging.ERROR)
    real = json.loads(args.real_hosts)
    sims = [f"s{i}" for i in range(args.sim)]
    store = EtcdStore(args.etcd)
    admin = DvsAdmin(store, "bench")
    t_start = time.monotonic()
    workers = Workers(args.etcd, sims, args.sim_procs)
    samples: list[float] = []
    per_round: list[dict[str, float]] = []
    try:
        while workers.ready < len(workers.procs) and time.monotonic() - t_start < 300:
            workers.poll(0.5)
        sys.stderr.write(f"{len(sims)} simulated agents in {len(workers.procs)} processes "
                         f"synced in {time.monotonic() - t_start:.1f} s\n")
        for r in range(args.rounds):
            workers.poll(0)
            vlan = 10 + (r % 2) + 1
            dvs = parse_model(DvsConfig, read_yaml(dvs_yaml(list(real), sims, vlan)), "bench")
            t0 = time.time()
            gen = admin.apply(dvs).generation
            lat: dict[str, float] = {}
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and len(lat) < len(real) + len(sims):
                workers.poll(0.05)
                for h in sims:
                    if h not in lat and gen in workers.applied[h]:
                        lat[h] = workers.applied[h][gen] - t0
                if any(h not in lat for h in real):  # their own report, written by them
                    for h, st in admin.statuses().items():
                        applied = st.get("applied", {})
                        if h in real and h not in lat and applied.get("generation", 0) >= gen:
                            lat[h] = float(applied["at"]) - t0
            missing = len(real) + len(sims) - len(lat)
            if missing:
                sys.stderr.write(f"round {r}: {missing} hosts did not apply within "
                                 f"{args.timeout} s\n")
            workers.poll(0.2)
            spent = [workers.busy[h] for h in sims if gen in workers.applied[h]]
            cpu = [workers.cpu[h] for h in sims if gen in workers.applied[h]
                   and workers.cpu.get(h, -1) >= 0]
            sys.stderr.write(f"round {r}: {len(lat)} hosts, slowest "
                             f"{max(lat.values()) if lat else -1:.3f} s\n")
            samples.extend(lat.values())
            per_round.append({"max": max(lat.values()) if lat else -1,
                              "missing": float(missing),
                              "reconcile_ms": 1000 * sum(spent) / len(spent) if spent else -1,
                              "reconcile_cpu_ms": 1000 * sum(cpu) / len(cpu) if cpu else -1})
            time.sleep(args.pause)
    finally:
        workers.stop()
    print(json.dumps({"samples": samples, "rounds": per_round}))
    return 0


# ----------------------------------------------------------------- outer process
def propagation(args: argparse.Namespace) -> list[str]:
    """Build the lab, start the real agents, run the driver in the router namespace."""
    from tests.helpers.dvslab import dvs_lab, wait_until

    with tempfile.TemporaryDirectory(prefix="bench-dvs-") as tmp, \
            dvs_lab(Path(tmp), prefix="bdvs", dvs="bench", max_txn_ops=4096) as dl:
        real = [f"r{i}" for i in range(args.real)]
        for i, h in enumerate(real):
            dl.add_host(h)
            dl.add_vm(h, f"{h}vm", f"10.1.{i // 250}.{i % 250 + 1}", f"02:00:00:01:{i // 250:02x}:"
                      f"{i % 250 + 1:02x}")
        dl.apply(dvs_yaml(real, [f"s{i}" for i in range(args.sim)], 10))
        for h in real:
            dl.start_agent(h, ttl=30)
        wait_until(lambda: dl.in_sync(*real), 120, "real agents in sync")
        sockets = {h: dl.hosts[h].agent.socket for h in real}  # type: ignore[union-attr]
        cmd = ["ip", "netns", "exec", dl.router, sys.executable, str(Path(__file__).resolve()),
               "--driver", "--etcd", dl.etcd_url, "--real-hosts", json.dumps(sockets),
               "--sim", str(args.sim), "--sim-procs", str(args.sim_procs),
               "--rounds", str(args.rounds), "--timeout", str(args.timeout),
               "--pause", str(args.pause)]
        load = loadavg()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            raise RuntimeError(f"driver failed ({proc.returncode})")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    samples = [s * 1000 for s in result["samples"]]
    rounds = result["rounds"]
    worst = [r["max"] * 1000 for r in rounds if r["max"] >= 0]
    rec = [r["reconcile_ms"] for r in rounds if r["reconcile_ms"] >= 0]
    cpu = [r.get("reconcile_cpu_ms", -1) for r in rounds if r.get("reconcile_cpu_ms", -1) >= 0]
    return [
        "### Configuration propagation",
        "",
        f"{args.real} namespace agents + {args.sim} simulated agents (etcd watches) in "
        f"{args.sim_procs} worker processes, {args.rounds} rounds; one port-group VLAN "
        "change per round (every host has a port in the group). Target: p99 <= 200 ms.",
        "",
        "| measure | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        f"| per host: apply -> engine applied | {pct(samples, .5):.0f} | "
        f"{pct(samples, .99):.0f} | {max(samples):.0f} |",
        f"| per round: apply -> last host applied | {pct(worst, .5):.0f} | "
        f"{pct(worst, .99):.0f} | {max(worst):.0f} |",
        f"| a simulated agent's reconcile per change, wall time (compile, reload; "
        f"includes waiting for the CPU and the GIL next to its worker's other agents) | "
        f"{pct(rec, .5):.1f} | {pct(rec, .99):.1f} | {max(rec):.1f} |",
        "| the same reconcile, CPU time of its sync thread (not the engine thread) | "
        + (f"{pct(cpu, .5):.1f} | {pct(cpu, .99):.1f} | {max(cpu):.1f} |" if cpu
           else "- | - | - |"),
        "",
        f"hosts that did not apply in time: {sum(int(r['missing']) for r in rounds)}; "
        f"load average before: {load}",
    ]


def migration(args: argparse.Namespace) -> list[str]:
    """The migration runs (bench/dvs_migration.py) and their medians."""
    from dvs_migration import run_migrations

    runs = run_migrations(args.migrations, rate=args.rate)
    return render_migrations(runs)


def render_migrations(runs: list[dict[str, Any]]) -> list[str]:
    """The migration section from the runs' measurements."""
    def med(key: str) -> str:
        vals = sorted(r[key] for r in runs if r.get(key) is not None)
        if not vals:
            return "-"
        v = vals[len(vals) // 2]
        return f"{v:.0f}" if isinstance(v, float) else str(v)

    lines = [
        "### Migration",
        "",
        f"{len(runs)} runs: a VM migrates between two namespace hosts while numbered UDP "
        "streams run each way between it and a client on a third host, where a sniffer VM "
        "receives the mirror copies of the VM's port over the overlay. Targets: switch-over "
        "<= 1 s; lost mirror copies <= datagrams sent in the switch-over window.",
        "",
        "| measure | median | runs |",
        "|---|---|---|",
    ]
    rows = [
        ("switch-over ms (last frame switched on the old host -> first on the new: the "
         "VM's RARP announcement or its traffic)", "switch_over_ms"),
        ("the VM's own traffic on the new host after, ms (its and its peer's timers)",
         "traffic_resumed_ms"),
        ("port attached nowhere, ms (detach -> attach)", "detached_ms"),
        ("whole migration ms (request -> done)", "total_ms"),
        ("datagrams sent in the switch-over window (both directions)", "sent_in_window"),
        ("lost copies reported by vspan vm migrate", "reported_lost"),
        ("sniffer gap: datagrams of the run the sniffer did not see", "sniffer_gap"),
        ("copies truly lost: crossed the VM's port, never reached the sniffer",
         "copies_lost"),
        ("datagrams lost by the network (never reached the other end)", "network_lost"),
    ]
    for label, key in rows:
        lines.append(f"| {label} | {med(key)} | "
                     f"{', '.join(str(r.get(key, '-')) for r in runs)} |")
    ok = all(r.get("switch_over_ms") is not None and r["switch_over_ms"] <= 1000 and
             r["reported_lost"] <= r["sent_in_window"] for r in runs)
    lines += ["", f"targets met in every run: {'yes' if ok else 'no'}"]
    return lines


def run(args: argparse.Namespace) -> int:
    """Both parts (or the one chosen), then the section."""
    if os.geteuid() != 0:
        sys.stderr.write("bench_dvs: needs root (namespaces, AF_PACKET)\n")
        return 1

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # the lab's cleanup (agents, etcd, namespaces) runs

    signal.signal(signal.SIGTERM, on_term)
    lines: list[str] = []
    try:
        if args.only in (None, "propagation"):
            lines += [*propagation(args), ""]
        if args.only in (None, "migration") and args.migrations > 0:
            lines += [*migration(args), ""]
    except KeyboardInterrupt:
        sys.stderr.write("bench_dvs: interrupted; lab removed\n")
        return 130
    others = busy_processes()
    lines += [
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_description()),
        "",
        f"Other load seen at the end: {', '.join(others) or 'none'}. Taken on a shared, busy "
        "machine unless the lead says otherwise.",
    ]
    text = "\n".join(lines)
    sys.stdout.write(text + "\n")
    if args.write:
        update_section(SECTION, "## Distributed switch (bench_dvs.py)\n\n" + text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse options; run the benchmark, or one of its inner processes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--real", type=int, default=20, help="namespace hosts with real agents")
    ap.add_argument("--sim", type=int, default=200, help="simulated agents")
    ap.add_argument("--sim-procs", type=int, default=4,
                    help="worker processes the simulated agents are spread over")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between rounds")
    ap.add_argument("--timeout", type=float, default=30.0, help="per round")
    ap.add_argument("--migrations", type=int, default=3, help="migration runs (0: none)")
    ap.add_argument("--rate", type=int, default=1000,
                    help="datagrams per second each way during a migration run")
    ap.add_argument("--only", choices=["propagation", "migration"], default=None)
    ap.add_argument("--quick", action="store_true",
                    help="2 real + 10 simulated agents, 5 rounds, 1 migration")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sim-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--etcd", default="", help=argparse.SUPPRESS)
    ap.add_argument("--real-hosts", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--hosts", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sim_worker:
        return sim_worker(args)
    if args.driver:
        return driver(args)
    if args.quick:
        args.real, args.sim, args.rounds, args.migrations = 2, 10, 5, 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
