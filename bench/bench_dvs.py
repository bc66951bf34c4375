"""Configuration propagation in a distributed switch: time from `dvs apply` to every
agent's datapath having applied it (p50/p99 over rounds).

Setup: etcd in a router namespace; ``--real`` host namespaces (default 20), each
with its own ``vspan agent`` and one VM port; ``--sim`` simulated hosts (default
200): :class:`HostAgent` objects with a real engine on memory ports, all in one
driver process inside the router namespace, each with its own etcd watch, lease
and status writes. Every host has one port in port group ``web``; each round
flips that group's VLAN (one transaction) and records, per host, when its
engine had applied the new generation: real agents report it on their local API
(``/dvs/status`` -> ``applied.at``), simulated ones through a callback. The
latency of a host is that time minus the time just before the transaction.

Numbers from a shared machine are indicative only; the lead reruns on a quiet one.

    sudo .venv/bin/python bench/bench_dvs.py [--quick] [--real 20] [--sim 200] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine_description, update_section

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


# ------------------------------------------------------------- driver (in router ns)
def driver(args: argparse.Namespace) -> int:
    """Run the simulated agents and the rounds; print one JSON result line."""
    from vspan.cli.client import ClientError, request
    from vspan.config.dvs import DvsConfig
    from vspan.config.load import parse_model, read_yaml
    from vspan.config.model import Config, PortConfig, SwitchConfig
    from vspan.control.agent import Agent
    from vspan.control.dvs.admin import DvsAdmin
    from vspan.control.dvs.hostagent import HostAgent
    from vspan.control.store.etcd import EtcdStore
    from vspan.ports.base import Port
    from vspan.ports.memory import MemoryPort

    logging.basicConfig(level=logging.ERROR)
    real = json.loads(args.real_hosts)  # {host: socket}
    sims = [f"s{i}" for i in range(args.sim)]
    admin = DvsAdmin(EtcdStore(args.etcd), "bench")

    def memory(name: str, cfg: PortConfig) -> Port:
        return MemoryPort(name)

    applied: dict[str, dict[int, float]] = {h: {} for h in sims}
    agents: list[HostAgent] = []
    for h in sims:
        agent = Agent(Config(switch=SwitchConfig(name="bench")), memory)
        agent.start()
        ha = HostAgent(EtcdStore(args.etcd), "bench", h, "198.18.255.1", agent, ttl=30,
                       status_interval=5.0)

        def record(a: HostAgent, h: str = h) -> None:
            applied[h].setdefault(a.applied_generation, a.applied_at)

        ha.on_applied = record
        ha.start()
        agents.append(ha)
    samples: list[float] = []
    per_round: list[dict[str, float]] = []
    try:
        t_start = time.monotonic()
        for ha in agents:
            ha.wait_synced(60)
        sys.stderr.write(f"{len(agents)} simulated agents synced in "
                         f"{time.monotonic() - t_start:.1f} s\n")
        for r in range(args.rounds):
            vlan = 10 + (r % 2) + 1
            dvs = parse_model(DvsConfig, read_yaml(dvs_yaml(list(real), sims, vlan)), "bench")
            t0 = time.time()
            gen = admin.apply(dvs).generation
            lat: dict[str, float] = {}
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and len(lat) < len(real) + len(sims):
                for h, sock in real.items():
                    if h in lat:
                        continue
                    try:
                        st = request(sock, "GET", "/dvs/status", timeout=5)
                    except ClientError:
                        continue
                    if st["applied"]["generation"] >= gen:
                        lat[h] = st["applied"]["at"] - t0
                for h in sims:
                    if h not in lat and gen in applied[h]:
                        lat[h] = applied[h][gen] - t0
                time.sleep(0.01)
            missing = len(real) + len(sims) - len(lat)
            if missing:
                sys.stderr.write(f"round {r}: {missing} hosts did not apply within "
                                 f"{args.timeout} s\n")
            sys.stderr.write(f"round {r}: {len(lat)} hosts, slowest "
                             f"{max(lat.values()) if lat else -1:.3f} s\n")
            samples.extend(lat.values())
            per_round.append({"max": max(lat.values()) if lat else -1,
                              "missing": float(missing)})
            time.sleep(args.pause)
    finally:
        for ha in agents:
            ha.stop()
            ha.agent.stop()
    print(json.dumps({"samples": samples, "rounds": per_round}))
    return 0


# ----------------------------------------------------------------- outer process
def run(args: argparse.Namespace) -> int:
    """Build the lab, start the real agents, run the driver in the router namespace."""
    if os.geteuid() != 0:
        sys.stderr.write("bench_dvs: needs root (namespaces, AF_PACKET)\n")
        return 1

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # the lab's cleanup (agents, etcd, namespaces) runs

    signal.signal(signal.SIGTERM, on_term)
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
               "--sim", str(args.sim), "--rounds", str(args.rounds),
               "--timeout", str(args.timeout), "--pause", str(args.pause)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        except KeyboardInterrupt:
            sys.stderr.write("bench_dvs: interrupted; lab removed\n")
            return 130
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            return proc.returncode
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    samples = [s * 1000 for s in result["samples"]]
    rounds = result["rounds"]
    worst = [r["max"] * 1000 for r in rounds if r["max"] >= 0]
    lines = [
        f"{args.real} namespace agents + {args.sim} simulated agents (etcd watches), "
        f"{args.rounds} rounds; one port-group VLAN change per round.",
        "",
        "| measure | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        f"| per host: apply -> engine applied | {pct(samples, .5):.0f} | "
        f"{pct(samples, .99):.0f} | {max(samples):.0f} |",
        f"| per round: apply -> last host applied | {pct(worst, .5):.0f} | "
        f"{pct(worst, .99):.0f} | {max(worst):.0f} |",
        "",
        f"hosts that did not apply in time: {sum(int(r['missing']) for r in rounds)}",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_description()),
        "",
        "Taken on a shared, busy machine unless the lead says otherwise.",
    ]
    text = "\n".join(lines)
    sys.stdout.write(text + "\n")
    if args.write:
        update_section(SECTION, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse options; run the outer benchmark or, with --driver, the inner driver."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--real", type=int, default=20, help="namespace hosts with real agents")
    ap.add_argument("--sim", type=int, default=200, help="simulated in-process agents")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between rounds")
    ap.add_argument("--timeout", type=float, default=30.0, help="per round")
    ap.add_argument("--quick", action="store_true", help="2 real + 10 simulated, 5 rounds")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--etcd", default="", help=argparse.SUPPRESS)
    ap.add_argument("--real-hosts", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.driver:
        return driver(args)
    if args.quick:
        args.real, args.sim, args.rounds = 2, 10, 5
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
