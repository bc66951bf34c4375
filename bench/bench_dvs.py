"""The distributed switch: configuration propagation and VM migration (issue 8).

**Propagation**: time from `dvs apply` to every agent's datapath having applied it
(p50/p99 over hosts and rounds). Setup: etcd in a router namespace; ``--real`` host
namespaces (default 20), each with its own ``vspan agent`` and one VM port;
``--sim`` simulated hosts (default 200): light watchers (:class:`SimHost`) that
decode each change and compile their host's switch as an agent does, without an
engine; registered under one lease per worker process, spread over
``--sim-procs`` processes (default 4). ``--sim-streams shared`` (default): one etcd
watch stream per worker, each batch handed to its hosts in turn; ``per-host``:
each host its own stream and thread (etcd then serves 220 streams, and 200 HTTP
readers compete with the agents for this machine's CPUs -- on 2 cores that costs
more than the compiles; a real host reads its stream on its own CPU).
Every host has one port in port group ``web``; each round flips that group's VLAN
(one transaction) and records, per host, when the watch event arrived and when
the change was applied (real agents: the engine; simulated: compiled) -- time
stamps taken by the agent itself (real agents report them in their status, read
through one watch on ``status/``; simulated ones on their worker's stdout), so
how often the driver looks does not change them. A host's latency is that time
minus the time ``dvs apply`` was called; the etcd delivery (transaction answered
-> event received) and the agent's own work (received -> applied) are reported
apart.

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
        [--sim-procs 4] [--sim-streams shared|per-host] \\
        [--rounds 20] [--migrations 3] [--only propagation|migration]
"""

from __future__ import annotations

import argparse
import gc
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

from common import RESULTS_MD, busy_processes, loadavg, machine_description, update_section

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
class SimHost:
    """A simulated host agent: its own etcd watch on the switch's key range (the agents'
    range: config, registrations, migrations), the agent's decoding (:class:`DvsIndex`)
    and this host's compile (:func:`compile_host`, with the agent's per-port cache) --
    everything a host agent does with a change except the engine reload. One thread,
    blocked reading its watch stream (the HTTP client is blocking: one thread per stream
    is what it needs); no lease, status or migration threads."""

    def __init__(self, store: Any, host: str, underlay: str) -> None:
        from vspan.control.dvs.compile import PortCache
        from vspan.control.dvs.index import DvsIndex

        self.store = store
        self.host = host
        self.underlay = underlay
        self.index = DvsIndex("bench")
        self.cache = PortCache()
        self.synced = False
        self.watch: Any = None

    def compile(self) -> None:
        """This host's switch from the held items (what the agent would apply)."""
        from vspan.control.dvs.compile import compile_host

        compile_host(self.index.config(), self.host, self.index.live, None, {},
                     self.underlay, self.cache)

    def load(self, snap: Any) -> None:
        """Take a full read and compile."""
        self.index.load(snap.items, snap.revision)
        self.compile()

    def take(self, batch: Any, received: float, report: Any, flush: Any = None) -> None:
        """Decode a watch batch and compile; ``report(host, gen, received, at, cpu)``,
        then ``flush()`` if given."""
        if not batch.events:
            return
        c0 = time.thread_time()
        touched = self.index.apply(batch.events, batch.revision)
        if touched.config or touched.hosts or touched.schema:
            self.compile()
        report(self.host, self.index.meta.generation, received, time.time(),
               time.thread_time() - c0)
        if flush is not None:
            flush()

    def run(self, report: Any, flush: Any, stop: Any) -> None:
        """Read everything, then follow this host's own watch stream."""
        start, end = self.index.keys.watch_range()
        self.load(self.store.get_range(start, end))
        self.watch = self.store.watch(start, end, self.index.revision + 1)
        self.synced = True
        for batch in self.watch:
            received = time.time()
            if stop.is_set():
                return
            self.take(batch, received, report, flush)


def run_shared(sims: list[SimHost], store: Any, report: Any, flush: Any, stop: Any) -> Any:
    """``--sim-streams shared``: one watch stream for all of a worker's simulated hosts,
    each batch handed to every host in turn (each still decodes and compiles it itself;
    its wait for the hosts before it counts in its own work). Returns the stream."""
    start, end = sims[0].index.keys.watch_range()
    snap = store.get_range(start, end)
    for sh in sims:
        sh.load(snap)
    watch = store.watch(start, end, snap.revision + 1)

    def loop() -> None:
        for batch in watch:
            received = time.time()
            if stop.is_set():
                return
            for sh in sims:
                sh.take(batch, received, report)
            flush()  # once per batch: the driver is not woken 50 times

    import threading

    threading.Thread(target=loop, daemon=True).start()
    for sh in sims:
        sh.synced = True
    return watch


def sim_worker(args: argparse.Namespace) -> int:
    """Run simulated agents (:class:`SimHost`) for ``args.hosts``, registered under one
    shared lease; print a JSON line per compiled generation (``{"host", "gen",
    "received", "at", "cpu"}``), "READY" once all are synced; stop on stdin EOF."""
    import threading

    from vspan.control.dvs.document import dumps
    from vspan.control.dvs.keys import DvsKeys
    from vspan.control.store.base import Put
    from vspan.control.store.etcd import EtcdStore

    logging.basicConfig(level=logging.ERROR)
    out = sys.stdout
    lock = threading.Lock()
    stop = threading.Event()

    lines: list[str] = []

    def report(host: str, gen: int, received: float, at: float, cpu: float) -> None:
        """Note a host's times (taken by the host: when the driver reads them does not
        matter); written out by ``flush``."""
        line = json.dumps({"host": host, "gen": gen, "received": received, "at": at,
                           "cpu": cpu}) + "\n"
        with lock:
            lines.append(line)

    def flush() -> None:
        with lock:
            if lines:
                out.write("".join(lines))
                out.flush()
                lines.clear()

    store = EtcdStore(args.etcd)
    keys = DvsKeys("bench")
    lease = store.grant(30)
    sims: list[SimHost] = []
    ops = []
    for h in json.loads(args.hosts):
        i = int(h[1:])  # s<i>: its own (never used) VTEP address, as a real host has
        sims.append(SimHost(EtcdStore(args.etcd), h, f"198.20.{i // 250}.{i % 250 + 1}"))
        ops.append(Put(keys.live(h), dumps({"underlay": sims[-1].underlay,
                                            "started": time.time(), "pid": os.getpid(),
                                            "version": "bench", "socket": "",
                                            "boot_id": "bench", "features": []}), lease))
    store.txn([], ops)  # registered: the other hosts flood to them, as to real ones

    def keepalive() -> None:
        while not stop.wait(5.0):
            store.keepalive(lease)

    threads = [threading.Thread(target=keepalive, daemon=True)]
    shared = None
    if args.sim_streams == "shared":
        shared = run_shared(sims, EtcdStore(args.etcd), report, flush, stop)
    else:
        threads += [threading.Thread(target=sh.run, args=(report, flush, stop),
                                    daemon=True)
                    for sh in sims]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while not all(sh.synced for sh in sims) and time.monotonic() < deadline:
        time.sleep(0.05)
    with lock:
        out.write("READY\n")
        out.flush()
    try:
        sys.stdin.read()  # until the driver closes our stdin
    finally:
        stop.set()
        for sh in sims:
            if sh.watch is not None:
                sh.watch.close()
        if shared is not None:
            shared.close()
        store.revoke(lease)
    return 0


# ------------------------------------------------------------- driver (in router ns)
class Workers:
    """The simulated agents' worker processes and what they reported."""

    def __init__(self, etcd: str, hosts: list[str], procs: int, streams: str) -> None:
        # host -> generation -> (watch event received, compiled), wall clock
        self.applied: dict[str, dict[int, tuple[float, float]]] = {h: {} for h in hosts}
        self.cpu: dict[str, dict[int, float]] = {h: {} for h in hosts}
        self.procs: list[subprocess.Popen[str]] = []
        self._buf: dict[int, str] = {}
        n = max(1, procs)
        for i in range(n):
            part = hosts[i::n]
            if not part:
                continue
            self.procs.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--sim-worker", "--etcd", etcd,
                 "--hosts", json.dumps(part), "--sim-streams", streams],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
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
                    gen = int(rec["gen"])
                    self.applied[rec["host"]].setdefault(
                        gen, (float(rec["received"]), float(rec["at"])))
                    self.cpu[rec["host"]].setdefault(gen, float(rec["cpu"]))

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


class StatusWatch:
    """The real agents' status reports, followed with one etcd watch on ``status/`` (no
    polling): host -> generation -> (watch event received, engine applied)."""

    def __init__(self, store: Any, hosts: list[str]) -> None:
        import threading

        from vspan.control.dvs.keys import DvsKeys
        from vspan.control.store.base import prefix_end

        self.applied: dict[str, dict[int, tuple[float, float]]] = {h: {} for h in hosts}
        keys = DvsKeys("bench")
        self.prefix = keys.status_prefix
        rev = store.get_range(self.prefix, prefix_end(self.prefix)).revision
        self.watch = store.watch(self.prefix, prefix_end(self.prefix), rev + 1)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from vspan.control.store.base import StoreError

        try:
            for batch in self.watch:
                for ev in batch.events:
                    host = ev.kv.key[len(self.prefix):]
                    if ev.type != "put" or host not in self.applied:
                        continue
                    applied = json.loads(ev.kv.value).get("applied", {})
                    with self.lock:
                        self.applied[host].setdefault(
                            int(applied.get("generation", 0)),
                            (float(applied.get("received", 0)), float(applied.get("at", 0))))
        except StoreError:
            pass

    def get(self, host: str, gen: int) -> tuple[float, float] | None:
        """(received, applied) of ``gen`` on ``host``, once its status said so."""
        with self.lock:
            return self.applied[host].get(gen)

    def close(self) -> None:
        """End the watch."""
        self.watch.close()


def driver(args: argparse.Namespace) -> int:
    """Run the simulated agents' workers and the rounds; print one JSON result line."""
    from vspan.config.dvs import DvsConfig
    from vspan.config.load import parse_model, read_yaml
    from vspan.control.dvs.admin import DvsAdmin
    from vspan.control.store.etcd import EtcdStore

    class TimedStore(EtcdStore):
        """Notes when its last transaction was answered (etcd had committed it)."""

        committed = 0.0

        def txn(self, compares: Any, ops: Any) -> Any:
            res = super().txn(compares, ops)
            self.committed = time.time()
            return res

    logging.basicConfig(level=logging.ERROR)
    real = list(json.loads(args.real_hosts))
    sims = [f"s{i}" for i in range(args.sim)]
    store = TimedStore(args.etcd)
    admin = DvsAdmin(store, "bench")
    t_start = time.monotonic()
    workers = Workers(args.etcd, sims, args.sim_procs, args.sim_streams)
    status = StatusWatch(EtcdStore(args.etcd), real)
    # per sample: kind ("real"/"sim"), apply -> applied, commit -> received,
    # received -> applied
    samples: list[tuple[str, float, float, float]] = []
    per_round: list[dict[str, float]] = []
    try:
        while workers.ready < len(workers.procs) and time.monotonic() - t_start < 300:
            workers.poll(0.5)
        sys.stderr.write(f"{len(sims)} simulated agents in {len(workers.procs)} processes "
                         f"synced in {time.monotonic() - t_start:.1f} s\n")
        time.sleep(1.0)  # the registrations' events have been taken
        # this long-lived process's own garbage collections (a full one took 12-90 ms
        # every ~8 rounds) are not part of `dvs apply`: set-up objects are frozen out of
        # the collector, and it runs between rounds, not while one is timed
        gc.collect()
        gc.freeze()
        for r in range(args.rounds):
            gc.collect()
            gc.disable()
            workers.poll(0)
            vlan = 10 + (r % 2) + 1
            dvs = parse_model(DvsConfig, read_yaml(dvs_yaml(real, sims, vlan)), "bench")
            t0 = time.time()
            gen = admin.apply(dvs).generation
            t_commit = store.committed
            got: dict[str, tuple[float, float]] = {}
            waiting_sim, waiting_real = set(sims), set(real)
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and (waiting_sim or waiting_real):
                workers.poll(0.02)
                for h in [h for h in waiting_sim if gen in workers.applied[h]]:
                    got[h] = workers.applied[h][gen]
                    waiting_sim.discard(h)
                for h in list(waiting_real):
                    seen = status.get(h, gen)
                    if seen is not None:
                        got[h] = seen
                        waiting_real.discard(h)
            missing = len(real) + len(sims) - len(got)
            if missing:
                sys.stderr.write(f"round {r}: {missing} hosts did not apply within "
                                 f"{args.timeout} s\n")
            for h, (received, at) in got.items():
                samples.append(("real" if h in real else "sim", at - t0,
                                received - t_commit, at - received))
            cpu = [workers.cpu[h][gen] for h in sims if gen in workers.cpu[h]]
            worst = max((at for _, at in got.values()), default=t0 - 1) - t0
            st = store.status()
            db = int(st.get("dbSize", 0))
            sys.stderr.write(f"round {r}: {len(got)} hosts, slowest {worst:.3f} s, "
                             f"dvs apply {1000 * (t_commit - t0):.0f} ms, etcd revision "
                             f"{st['header']['revision']}, db {db >> 10} KiB\n")
            per_round.append({"max": worst if got else -1, "missing": float(missing),
                              "apply_ms": 1000 * (t_commit - t0),
                              "revision": float(st["header"]["revision"]), "db": float(db),
                              "sim_cpu_ms": 1000 * sum(cpu) / len(cpu) if cpu else -1})
            gc.enable()
            time.sleep(args.pause)
    finally:
        gc.enable()
        status.close()
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
               "--sim-streams", args.sim_streams,
               "--rounds", str(args.rounds), "--timeout", str(args.timeout),
               "--pause", str(args.pause)]
        load = loadavg()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"driver failed ({proc.returncode})")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    samples = result["samples"]
    rounds = result["rounds"]
    worst = [r["max"] * 1000 for r in rounds if r["max"] >= 0]
    apply_ms = [r["apply_ms"] for r in rounds]
    cpu = [r["sim_cpu_ms"] for r in rounds if r["sim_cpu_ms"] >= 0]

    def row(label: str, values: list[float], fmt: str = ".0f") -> str:
        if not values:
            return f"| {label} | - | - | - |"
        return (f"| {label} | {pct(values, .5):{fmt}} | {pct(values, .99):{fmt}} | "
                f"{max(values):{fmt}} |")

    def half(values: list[float], which: int) -> str:
        part = values[:len(values) // 2] if which == 0 else values[len(values) // 2:]
        return f"{pct(part, .5):.0f}" if part else "-"

    def col(kind: str | None, i: int) -> list[float]:
        return [1000 * s[i] for s in samples if kind is None or s[0] == kind]

    return [
        "### Configuration propagation",
        "",
        f"{args.real} namespace agents (`vspan agent`, engine and all) + {args.sim} "
        f"simulated agents in {args.sim_procs} worker processes, {args.rounds} rounds; one "
        "port-group VLAN change per round (every host has a port in the group). A simulated "
        "agent is a light watcher: "
        + ("its own etcd watch stream (one thread blocked reading it)"
           if args.sim_streams == "per-host" else
           "one etcd watch stream per worker process, each batch handed to the worker's "
           "agents in turn (`--sim-streams shared`)")
        + ", the agent's decoding and this host's compile, no engine. Real agents report "
        "when their engine applied the generation in their status (read by one watch on "
        "`status/`, no polling); simulated ones when they had compiled it. Target: p99 <= "
        "200 ms.",
        "",
        "| measure | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        row("per host: `dvs apply` called -> engine applied (all hosts)", col(None, 1)),
        row("... namespace agents only", col("real", 1)),
        row("... simulated agents only (-> compiled)", col("sim", 1)),
        row("per round: `dvs apply` called -> last host applied", worst),
        row("`dvs apply` itself (read, validate, encode, transaction answered)", apply_ms),
        row("etcd watch delivery to namespace agents (transaction answered -> event "
            "received)", col("real", 2)),
        row("etcd watch delivery to simulated agents", col("sim", 2)),
        row("namespace agent's own work (event received -> engine applied: decode, "
            "compile, reload)", col("real", 3), ".1f"),
        row("simulated agent's own work (event received -> compiled), wall", col("sim", 3),
            ".1f"),
        row("... its CPU time", cpu, ".2f"),
        "",
        f"hosts that did not apply in time: {sum(int(r['missing']) for r in rounds)}; "
        f"load average before: {load}",
        "",
        f"Over the run (a slowdown with its length would show here): per round p50, first "
        f"half of the rounds {half(worst, 0)} ms, second half {half(worst, 1)} ms; etcd "
        f"at the end: revision {rounds[-1]['revision']:.0f}, database "
        f"{rounds[-1]['db'] / 1e6:.1f} MB." if rounds else "",
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


def kept_part(heading: str, path: Path = RESULTS_MD) -> list[str]:
    """The ``heading`` subsection of this script's section in RESULTS.md as last written
    (``--only`` the other part: it stays, with the machine line of the run that measured
    it); empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    begin, end = f"<!-- BEGIN {SECTION} -->", f"<!-- END {SECTION} -->"
    if begin not in text or end not in text:
        return []
    body = text.partition(begin)[2].partition(end)[0].splitlines()
    out: list[str] = []
    machine = ""
    inside = already_kept = False
    for line in body:
        if line.startswith("### "):
            inside = line.strip() == heading
        elif line.startswith("Machine:") or line.startswith("Other load seen"):
            inside = False
        if line.startswith("Machine:") and not machine:
            machine = line
        if inside:
            out.append(line)
            already_kept |= line.startswith("(kept from an earlier run; ")
    if out and machine and not already_kept:
        out += [f"(kept from an earlier run; {machine})", ""]
    return out


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
        elif args.write:
            lines += kept_part("### Configuration propagation")
        if args.only in (None, "migration") and args.migrations > 0:
            lines += [*migration(args), ""]
        elif args.write:
            lines += kept_part("### Migration")
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
    ap.add_argument("--sim-streams", choices=["per-host", "shared"], default="shared",
                    help="one etcd watch stream per worker process handed to its simulated "
                    "agents in turn (default), or each its own stream and thread (etcd "
                    "serves 220 streams; their 200 readers share this machine's CPUs)")
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
