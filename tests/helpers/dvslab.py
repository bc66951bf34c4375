"""A distributed-switch lab: namespace hosts on a routed underlay, one etcd, real agents.

Topology (every name carries the lab's unique prefix)::

              rtr  (etcd on 198.19.0.1, lo; ip_forward; no default route)
           /   |    \\
      u-veth u-veth u-veth        198.18.N.1/24 (router) -- 198.18.N.2/24 (host N)
         |     |      |
        h1    h2  ... hN          each: `vspan agent` + the host ends of its VMs' veths
        |  \\
      vm    vm                     VM namespaces (eth0 with an address, MAC fixed)

No kernel bridge device anywhere: hosts reach each other and etcd through the
router namespace (L3). Tests and later work (overlay, migration, the metro
demo, cross-host trace) build on :class:`DvsLab`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import accounting
from tests.helpers.etcd import EtcdServer
from tests.helpers.netns import Lab, lab, sh

VSPAN = [sys.executable, "-m", "vspan.cli.main"]
REPO = Path(__file__).resolve().parents[2]
ETCD_IP = "198.19.0.1"

# DvsLab.store_call's worker: one Python in the router namespace (where etcd is reachable)
# runs each snippet, read as a JSON line, with a new ``s`` = EtcdStore and answers one JSON
# line; a new interpreter per call cost ~0.5 s of CPU, in wait loops polling the generation
STORE_WORKER = """\
import contextlib, json, sys, traceback
from vspan.control.store.etcd import EtcdStore
answer = sys.stdout
for line in sys.stdin:
    env = {"json": json, "EtcdStore": EtcdStore, "s": EtcdStore(sys.argv[1]), "out": None}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            exec(json.loads(line), env)
        reply = {"out": env["out"]}
        text = json.dumps(reply)
    except Exception:
        text = json.dumps({"error": traceback.format_exc()})
    answer.write(text + "\\n")
    answer.flush()
"""


def wait_until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.1) -> None:
    """Poll ``cond`` until true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class VM:
    """A VM: a namespace with eth0, whose peer sits in a host namespace."""

    name: str
    ns: str
    host: str
    ifname: str  # the host-side interface (what the port attaches to)
    ip: str
    mac: str


@dataclass
class AgentProc:
    """A ``vspan agent`` process inside a host namespace."""

    host: str
    socket: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None


@dataclass
class DvsHost:
    """A host namespace with its underlay address."""

    name: str
    ns: str
    underlay: str
    index: int
    agent: AgentProc | None = None
    vms: dict[str, VM] = field(default_factory=dict)


class DvsLab:
    """Hosts, VMs, etcd and agents of one distributed switch ``dvs``."""

    def __init__(self, the_lab: Lab, workdir: Path, dvs: str = "lab",
                 max_txn_ops: int = 128) -> None:
        self.lab = the_lab
        self.workdir = workdir
        self.dvs = dvs
        self.router = the_lab.netns("rtr")
        self.lab.exec(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.lab.exec(self.router, "ip", "addr", "add", f"{ETCD_IP}/32", "dev", "lo")
        self.etcd = EtcdServer(workdir / "etcd-data", host=ETCD_IP, netns=self.router,
                               max_txn_ops=max_txn_ops)
        self.etcd_url = self.etcd.url
        self.hosts: dict[str, DvsHost] = {}
        self._store_worker: subprocess.Popen[str] | None = None

    # ---------------------------------------------------------------- topology
    def add_host(self, name: str, mtu: int = 1500) -> DvsHost:
        """A host namespace routed to the others and to etcd through the router."""
        index = len(self.hosts) + 1
        ns = self.lab.netns(name)
        rside, hside = self.lab.name(f"{name}r"), self.lab.name(f"{name}u")
        sh("ip", "link", "add", rside, "type", "veth", "peer", "name", hside)
        self.lab.links.append(rside)
        sh("ip", "link", "set", rside, "netns", self.router)
        sh("ip", "link", "set", hside, "netns", ns)
        sh("ip", "-n", ns, "link", "set", hside, "name", "ul0")
        underlay = f"198.18.{index}.2"
        for nsname, dev, addr in ((self.router, rside, f"198.18.{index}.1/24"),
                                  (ns, "ul0", f"{underlay}/24")):
            sh("ip", "-n", nsname, "link", "set", dev, "mtu", str(mtu))
            sh("ip", "-n", nsname, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", nsname, "link", "set", dev, "up")
        # only the lab's ranges are routed: no default route anywhere
        sh("ip", "-n", ns, "route", "add", "198.18.0.0/15", "via", f"198.18.{index}.1")
        host = DvsHost(name, ns, underlay, index)
        self.hosts[name] = host
        return host

    def add_vm(self, host: str, name: str, ip: str, mac: str, mtu: int | None = None) -> VM:
        """A VM namespace on ``host``: its eth0 (``ip``/24, ``mac``) <-> host side ``name``."""
        h = self.hosts[host]
        ns = self.lab.netns(name)
        outer, inner = self.lab.name(f"{name}o"), self.lab.name(f"{name}i")
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        self.lab.links.append(outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "-n", ns, "link", "set", inner, "name", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        if mtu:
            sh("ip", "-n", ns, "link", "set", "eth0", "mtu", str(mtu))
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        self.lab.exec(ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1", check=False)
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "link", "set", outer, "netns", h.ns)
        sh("ip", "-n", h.ns, "link", "set", outer, "name", name)
        self.lab.exec(h.ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1", check=False)
        sh("ip", "-n", h.ns, "link", "set", name, "up")
        vm = VM(name, ns, host, name, ip, mac)
        h.vms[name] = vm
        return vm

    # -------------------------------------------------------------- processes
    def start_etcd(self) -> None:
        """Start (or restart after :meth:`stop_etcd`) the lab's etcd."""
        self.etcd.start()

    def stop_etcd(self) -> None:
        """Kill etcd (an outage); its data stays for a restart."""
        self.etcd.stop()

    def start_agent(self, host: str, ttl: int = 4, extra: tuple[str, ...] = (),
                    wait: bool = True) -> AgentProc:
        """``vspan agent`` in the host's namespace; waits until its socket answers."""
        h = self.hosts[host]
        sock = str(self.workdir / f"{host}.sock")
        log = self.workdir / f"agent-{host}.log"
        ap = h.agent if h.agent is not None else AgentProc(host, sock, log)
        with open(log, "ab") as out:
            ap.proc = subprocess.Popen(
                ["ip", "netns", "exec", h.ns, *VSPAN, "agent", "--dvs", self.dvs,
                 "--host", host, "--etcd", self.etcd_url, "--underlay", h.underlay,
                 "--socket", sock, "--ttl", str(ttl), "--status-interval", "0.5",
                 "--state-dir", str(self.workdir / f"state-{host}"), *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        h.agent = ap
        if wait:
            wait_until(lambda: self._answers(ap), 30, f"agent on {host} to answer")
        return ap

    def _answers(self, ap: AgentProc) -> bool:
        if not ap.alive():
            raise RuntimeError(f"agent on {ap.host} exited: {ap.log.read_text()[-3000:]}")
        return os.path.exists(ap.socket) and self.local(ap.host, "GET", "/health") is not None

    def kill_agent(self, host: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the agent (SIGKILL: it leaves its lease to expire)."""
        ap = self.hosts[host].agent
        if ap is None or ap.proc is None:
            return
        if ap.proc.poll() is None:
            # `ip netns exec` execs, so the pid is the agent itself
            ap.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                ap.proc.wait(timeout=15)

    def stop_all(self) -> None:
        """Check every running agent's accounting invariant (unless the test is already
        failing), kill every agent and etcd; then fail naming the ports whose frames do
        not add up."""
        check = not accounting.failing()
        problems: list[str] = []
        self._stop_store_worker()
        for h in self.hosts.values():
            if h.agent is not None and h.agent.alive():
                assert h.agent.proc is not None
                h.agent.proc.send_signal(signal.SIGCONT)
                if check:
                    problems += accounting.failures(self._accounting_reader(h.name),
                                                    f"agent on {h.name}")
                self.kill_agent(h.name)
        self.etcd.stop()
        accounting.raise_if(problems)

    def _accounting_reader(self, host: str) -> accounting.Reader:
        def read() -> dict[str, Any] | None:
            data = self.local(host, "GET", "/show/accounting")
            return dict(data) if data is not None else None
        return read

    # ------------------------------------------------------------------- talk
    def local(self, host: str, method: str, path: str, body: Any = None) -> Any:
        """A request to the host agent's local API (None when it does not answer)."""
        from vspan.cli.client import ClientError, request

        ap = self.hosts[host].agent
        if ap is None:
            return None
        try:
            return request(ap.socket, method, path, body, timeout=5)
        except ClientError:
            return None

    def status(self, host: str) -> dict[str, Any]:
        """The agent's local status (``/dvs/status``)."""
        data = self.local(host, "GET", "/dvs/status")
        if data is None:
            raise AssertionError(f"agent on {host} does not answer")
        return dict(data)

    def host_ports(self, host: str) -> dict[str, dict[str, Any]]:
        """``vspan show ports`` on the host, by port name."""
        rows = self.local(host, "GET", "/show/ports") or []
        return {r["name"]: r for r in rows}

    def dvs_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``vspan dvs ARGS --etcd URL`` run where etcd is reachable (the router)."""
        proc = subprocess.run(["ip", "netns", "exec", self.router, *VSPAN, "dvs", *args,
                               "--etcd", self.etcd_url], capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        if check and proc.returncode != 0:
            raise RuntimeError(f"vspan dvs {' '.join(args)} failed: {proc.stderr}")
        return proc

    def vm_cli(self, *args: str, check: bool = True,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """``vspan vm ARGS --etcd URL --dvs DVS`` run where etcd is reachable (the router)."""
        proc = subprocess.run(["ip", "netns", "exec", self.router, *VSPAN, "vm", *args,
                               "--etcd", self.etcd_url, "--dvs", self.dvs],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and proc.returncode != 0:
            raise RuntimeError(f"vspan vm {' '.join(args)} failed: {proc.stderr}"
                               f"{proc.stdout}")
        return proc

    def migrate(self, vm: str, to: str, check: bool = True) -> dict[str, Any]:
        """``vspan vm migrate VM --to HOST --json``: the final migration record. The lab's
        bookkeeping follows the VM to its new host."""
        proc = self.vm_cli("migrate", vm, "--to", to, "--json", check=check)
        record: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
        if record.get("phase") == "done":
            for h in self.hosts.values():
                moved = h.vms.pop(vm, None)
                if moved is not None:
                    moved.host = to
                    self.hosts[to].vms[vm] = moved
        return record

    def apply(self, yaml_text: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``vspan dvs apply`` of ``yaml_text``."""
        path = self.workdir / "dvs.yaml"
        path.write_text(yaml_text, encoding="utf-8")
        return self.dvs_cli("apply", str(path), check=check)

    def show(self, what: str, *extra: str) -> Any:
        """``vspan dvs show WHAT --json``."""
        return json.loads(self.dvs_cli("show", what, "--json", "--dvs", self.dvs,
                                       *extra).stdout)

    def generation(self) -> int:
        """The stored configuration generation."""
        return int(self.store_call("from vspan.control.dvs.admin import read_state\n"
                                   f"out = read_state(s, {self.dvs!r}).meta.generation"))

    def store_call(self, code: str, timeout: float = 60) -> Any:
        """Run Python with ``s`` = a new EtcdStore on the lab's etcd (in the router, by
        one worker process kept for the lab: :data:`STORE_WORKER`); the snippet sets
        ``out`` (JSON-encodable)."""
        worker = self._store_worker
        if worker is None or worker.poll() is not None:
            worker = self._store_worker = subprocess.Popen(
                ["ip", "netns", "exec", self.router, sys.executable, "-c", STORE_WORKER,
                 self.etcd_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                cwd=REPO)
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps(code) + "\n")
        worker.stdin.flush()
        ready, _, _ = select.select([worker.stdout], [], [], timeout)
        line = worker.stdout.readline() if ready else ""
        if not line:
            self._stop_store_worker()
            raise RuntimeError(f"store call got no answer within {timeout} s: {code}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"store call failed: {reply['error']}")
        return reply["out"]

    def _stop_store_worker(self) -> None:
        worker, self._store_worker = self._store_worker, None
        if worker is not None:
            worker.kill()  # `ip netns exec` execs: the pid is the worker itself
            worker.communicate()

    def compact(self) -> int:
        """Compact etcd's history up to its current revision; the revision."""
        return int(self.store_call(
            "rev = s.get_range('/', '/0').revision\ns.compact(rev)\nout = rev"))

    def in_sync(self, *hosts: str) -> bool:
        """Every named host applied the stored generation."""
        gen = self.generation()
        for h in hosts:
            st = self.local(h, "GET", "/dvs/status")
            if st is None or st["applied"]["generation"] != gen:
                return False
        return True

    def ping(self, src: VM, dst: VM, count: int = 2, check: bool = True) -> bool:
        """Ping from ``src`` to ``dst``; whether a reply came (ping's exit status: 0 once
        any reply came). While none has come, one expected to succeed (``check``) waits up
        to 3 s after its last request (a lost ARP request costs 1 s to its retransmit on a
        busy machine), one expected to fail 2 s."""
        rc = self.lab.exec(src.ns, "ping", "-c", str(count), "-i", "0.2", "-W",
                           "3" if check else "2", dst.ip, check=False, timeout=30).returncode
        if check and rc != 0:
            raise AssertionError(f"ping {src.name} -> {dst.name} failed")
        return rc == 0


@contextmanager
def dvs_lab(workdir: Path, prefix: str | None = None, dvs: str = "lab",
            max_txn_ops: int = 128) -> Iterator[DvsLab]:
    """A :class:`DvsLab` with etcd started; agents, etcd and namespaces removed after."""
    with lab(prefix) as the_lab:
        dl = DvsLab(the_lab, workdir, dvs, max_txn_ops)
        try:
            dl.start_etcd()
            yield dl
        finally:
            dl.stop_all()
