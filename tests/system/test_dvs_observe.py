"""``vspan observe --dvs`` on a real distributed switch: one stream from every agent.

Real etcd in a router namespace, host namespaces each running ``vspan agent``, VXLAN
between them, VMs as namespaces (tests/helpers/dvslab.py). The observer finds the
agents in etcd: a ping from a VM on h1 to one on h2 shows up as forwarded on both
hosts, a connection the firewall drops as a drop on h2 with its reason and rule, each
event naming its host. An agent started while observing (h3) is picked up, one that
dies (h2, SIGKILL: its lease expires) is reported as gone, and when it comes back it is
observed again, all in the same stream.
"""

from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.dvslab import REPO, VM, VSPAN, DvsLab, dvs_lab, wait_until
from tests.helpers.etcd import require_etcd
from tests.helpers.netns import require_tools, requires_root
from vspan.control.dvs.compile import overlay_supported

pytestmark = [pytest.mark.system, requires_root,
              pytest.mark.skipif(not overlay_supported(),
                                 reason="the vxlan port type is not in this build")]

CONFIG = """\
switch: {name: lab, mtu: 1600}
hosts: {h1: {}, h2: {}, h3: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
  db: {vlan: {mode: access, id: 10}}
ports:
  web1: {host: h1, interface: web1, vm: web1, mac: '02:00:00:00:01:01', port_group: web,
      policy: {addresses: [10.0.0.11]}}
  db1: {host: h2, interface: db1, vm: db1, mac: '02:00:00:00:02:02', port_group: db,
      policy: {addresses: [10.0.0.22]}}
  web3: {host: h3, interface: web3, vm: web3, mac: '02:00:00:00:03:01', port_group: web,
      policy: {addresses: [10.0.0.31]}}
firewall:
  default_action: allow
  sections:
    - name: db
      applied_to: [db]
      rules:
        - {id: no-http-db, sources: [any], destinations: [db], services: [tcp/80],
           action: drop}
"""

CONNECT = """\
import socket, sys
s = socket.socket()
s.settimeout(1)
s.connect_ex((sys.argv[1], 80))
"""

Events = list[dict[str, Any]]


class DvsStream:
    """A running ``vspan observe --dvs lab --json`` (in the router: etcd is reachable
    there; the agents' control sockets are files of this machine)."""

    def __init__(self, dl: DvsLab, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", dl.router, *VSPAN, "observe", "--json", "--dvs", dl.dvs,
             "--etcd", dl.etcd_url, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: Events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def until(self, done: Callable[[Events], bool], what: str, timeout: float = 30) -> Events:
        """Events from now on until ``done(events)`` holds (AssertionError after
        ``timeout``, naming ``what`` and what came)."""
        out: Events = []
        deadline = time.monotonic() + timeout
        while not done(out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {what}; got {[short(e) for e in out]}")
            try:
                ev = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            out.append(ev)
            self.seen.append(ev)
        return out

    def stop(self) -> str:
        """SIGINT (SIGKILL if it is still there 20 s later); the stderr it wrote. Not
        ``communicate``: the reader thread reads stdout, and a second reader of the same
        pipe can block in read() past any timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def short(ev: dict[str, Any]) -> str:
    return f"{ev.get('type')}@{ev.get('host')}:{ev.get('in_port', '')}"


def has(kind: str, host: str, **fields: Any) -> Callable[[Events], bool]:
    """``done`` for :meth:`DvsStream.until`: an event of ``kind`` from ``host`` with
    ``fields``."""
    return lambda evs: any(find(evs, kind, host, **fields))


def find(evs: Events, kind: str, host: str, **fields: Any) -> Events:
    return [e for e in evs if e.get("type") == kind and e.get("host") == host
            and all(e.get(k) == v for k, v in fields.items())]


def icmp_between(evs: Events, host: str, src: str, dst: str) -> Events:
    """Forwarded events on ``host`` of ICMP from ``src`` to ``dst``."""
    return [e for e in find(evs, "forwarded", host)
            if e.get("summary", {}).get("src_ip") == src
            and e.get("summary", {}).get("dst_ip") == dst]


@pytest.fixture
def dlab(tmp_path: Path) -> Iterator[DvsLab]:
    require_etcd()
    require_tools("ping")
    with dvs_lab(tmp_path, prefix=f"ob{secrets.token_hex(2)}") as dl:
        for h in ("h1", "h2", "h3"):
            dl.add_host(h, mtu=1600)
        dl.add_vm("h1", "web1", "10.0.0.11", "02:00:00:00:01:01")
        dl.add_vm("h2", "db1", "10.0.0.22", "02:00:00:00:02:02")
        dl.add_vm("h3", "web3", "10.0.0.31", "02:00:00:00:03:01")
        dl.apply(CONFIG)
        for h in ("h1", "h2"):  # h3's agent starts while observing
            dl.start_agent(h)
        wait_until(lambda: dl.in_sync("h1", "h2"), 20, "h1, h2 in sync")
        wait_until(lambda: "overlay" in dl.host_ports("h1") and "overlay" in
                   dl.host_ports("h2"), 20, "overlay ports")
        yield dl


def vm(dl: DvsLab, name: str) -> VM:
    return next(h.vms[name] for h in dl.hosts.values() if name in h.vms)


def test_observe_every_agent_of_the_switch(dlab: DvsLab) -> None:
    dl = dlab
    stream = DvsStream(dl)
    try:
        # the running agents are found in etcd and each one's stream is open
        first = stream.until(lambda evs: len([e for e in evs if e["type"] == "started"]) == 2,
                             "both agents' streams started")
        joined = [e for e in first if e["type"] == "host-joined"]
        assert sorted(e["host"] for e in joined) == ["h1", "h2"]
        for e in joined:
            assert e["dvs"] == "lab" and e["underlay"] == dl.hosts[e["host"]].underlay
            assert e["agent"] == dl.hosts[e["host"]].agent.socket  # type: ignore[union-attr]
        assert sorted(e["host"] for e in first if e["type"] == "started") == ["h1", "h2"]

        # a ping across the overlay: forwarded on h1 (web1 -> overlay) and on h2
        # (overlay -> db1), each event naming its host
        wait_until(lambda: dl.ping(vm(dl, "web1"), vm(dl, "db1"), count=1, check=False), 30,
                   "web1 -> db1")
        evs = stream.until(lambda evs: bool(icmp_between(evs, "h1", "10.0.0.11", "10.0.0.22"))
                           and bool(icmp_between(evs, "h2", "10.0.0.11", "10.0.0.22")),
                           "the ping's request forwarded on h1 and on h2")
        on_h1 = icmp_between(evs, "h1", "10.0.0.11", "10.0.0.22")[0]
        on_h2 = icmp_between(evs, "h2", "10.0.0.11", "10.0.0.22")[0]
        assert on_h1["in_port"] == "web1" and [o["port"] for o in on_h1["outputs"]] == [
            "overlay"]
        assert on_h2["in_port"] == "overlay" and [o["port"] for o in on_h2["outputs"]] == [
            "db1"]
        assert on_h1["dvs"] == on_h2["dvs"] == "lab"

        # the destination host's firewall drops web1's connection: h2 says why
        dl.lab.exec(vm(dl, "web1").ns, "python3", "-c", CONNECT, "10.0.0.22", check=False,
                    timeout=20)
        evs = stream.until(has("dropped", "h2", reason="firewall-deny", rule="no-http-db"),
                           "the firewall's drop on h2")
        drop = find(evs, "dropped", "h2", reason="firewall-deny")[0]
        assert drop["stage"] == "firewall" and drop["port"] == "db1"
        assert drop["summary"]["dst_ip"] == "10.0.0.22"

        # an agent that starts while observing is picked up
        dl.start_agent("h3")
        evs = stream.until(has("started", "h3"), "h3's stream started")
        joined3 = find(evs, "host-joined", "h3")
        assert joined3 and joined3[0]["underlay"] == dl.hosts["h3"].underlay
        wait_until(lambda: dl.in_sync("h1", "h2", "h3"), 20, "h3 in sync")
        wait_until(lambda: "overlay" in dl.host_ports("h3"), 20, "h3's overlay port")
        wait_until(lambda: dl.ping(vm(dl, "web3"), vm(dl, "web1"), count=1, check=False), 30,
                   "web3 -> web1")
        evs = stream.until(lambda evs: bool(icmp_between(evs, "h3", "10.0.0.31", "10.0.0.11")),
                           "web3's ping forwarded on h3")
        assert icmp_between(evs, "h3", "10.0.0.31", "10.0.0.11")[0]["in_port"] == "web3"

        # an agent that dies is reported once its registration ends (lease TTL 4 s)
        dl.kill_agent("h2")
        evs = stream.until(has("host-left", "h2"), "h2 reported gone", timeout=30)
        assert "registration ended" in find(evs, "host-left", "h2")[0]["why"]
        # the others are still observed
        dl.ping(vm(dl, "web1"), vm(dl, "web3"), count=1)
        stream.until(lambda evs: bool(icmp_between(evs, "h1", "10.0.0.11", "10.0.0.31")),
                     "web1's ping to web3 on h1 after h2 left")

        # and when it comes back it is observed again
        dl.start_agent("h2")
        stream.until(has("started", "h2"), "h2 observed again")
        wait_until(lambda: dl.in_sync("h1", "h2", "h3"), 20, "h2 in sync again")
        wait_until(lambda: dl.ping(vm(dl, "db1"), vm(dl, "web1"), count=1, check=False), 30,
                   "db1 -> web1")
        stream.until(lambda evs: bool(icmp_between(evs, "h2", "10.0.0.22", "10.0.0.11")),
                     "db1's ping on h2 after it came back")
    finally:
        err = stream.stop()
    assert stream.proc.returncode == 0, err
    assert "vspan: observing distributed switch lab" in err
    assert "events shown" in err
    joins = [e["host"] for e in stream.seen if e["type"] == "host-joined"]
    assert joins == ["h1", "h2", "h3", "h2"], joins
    # no event without its host
    assert all(e.get("host") in ("h1", "h2", "h3") for e in stream.seen), \
        [short(e) for e in stream.seen if e.get("host") not in ("h1", "h2", "h3")]


class _Lines:
    """A process's stdout lines, read by a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self.lines.extend, args=(proc.stdout,),
                                       daemon=True)
        self.thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def wait(self, done: Callable[[str], bool], timeout: float = 30) -> None:
        """Until ``done(the text so far)``; an AssertionError with it after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self.text()):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError(f"not seen within {timeout} s; so far:\n{self.text()}")
            time.sleep(0.05)


def test_human_stream_names_hosts_and_members(dlab: DvsLab) -> None:
    dl = dlab
    wait_until(lambda: dl.ping(vm(dl, "web1"), vm(dl, "db1"), count=1, check=False), 30,
               "web1 -> db1")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", dl.router, *VSPAN, "observe", "--dvs", "--etcd", dl.etcd_url,
         "--verdict", "forwarded", "--count", "2", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    stdout = _Lines(proc)
    try:
        # both hosts joined (their readers started); the pings go on until two frames were
        # shown, so a stream that opens a while later on a loaded machine still sees them
        stdout.wait(lambda seen: all(f" -- host {h} joined" in seen for h in ("h1", "h2")))
        pinger = dl.lab.popen(vm(dl, "web1").ns, "ping", "-i", "0.3", "10.0.0.22",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=60)
        finally:
            pinger.terminate()
            pinger.wait(timeout=10)
        stdout.thread.join(10)
        out = stdout.text()
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert any(" -- host h1 joined, underlay 198.18.1.2: observing its agent at " in x
               for x in lines), out
    assert any(" -- host h2 joined, underlay 198.18.2.2" in x for x in lines), out
    frames = [x for x in lines if " forwarded " in x]
    assert len(frames) == 2, out
    assert all(x.split()[1] in ("h1", "h2") for x in frames), out
    assert "2 events shown" in err


def test_no_such_switch_and_no_agent(dlab: DvsLab) -> None:
    """A misspelt switch is an error (not a silent wait); a switch without running agents
    says it waits for one."""
    dl = dlab
    proc = subprocess.run(["ip", "netns", "exec", dl.router, *VSPAN, "observe", "--dvs",
                           "nosuch", "--etcd", dl.etcd_url, "--duration", "5"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    assert "no distributed switch named 'nosuch'" in proc.stderr
    dl.kill_agent("h1", signal.SIGTERM)  # deregisters at once
    dl.kill_agent("h2", signal.SIGTERM)
    proc = subprocess.run(["ip", "netns", "exec", dl.router, *VSPAN, "observe", "--dvs",
                           "--etcd", dl.etcd_url, "--duration", "2"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "no agent of lab is running now: waiting for one to register" in proc.stderr
    assert proc.stdout == ""
    proc = subprocess.run(["ip", "netns", "exec", dl.router, *VSPAN, "observe", "--dvs",
                           "--agent", "h1", "--etcd", dl.etcd_url, "--duration", "2"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1 and "--agent 'h1': give HOST=SOCKET or HOST=URL" in proc.stderr
