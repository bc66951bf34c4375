"""Remote mirroring between two "hosts", each running its own vspan switch.

Topology (every namespace and interface starts with ``vp7`` + 4 hex chars)::

    vm1 (10.0.0.1, web client) ──┐                        ┌── snf  (sniffer, tcpdump)
    vm2 (10.0.0.2, http.server) ─┤ h1: vspan up           │   h2: vspan up
                                 ├─ up  ══ trunk ══ up ───┤── trk  (trunk, VLAN 999 allowed)
                                 │                        └── vm3  (untagged)
      h1 u0 192.0.2.1/30 ════ underlay veth ════ u0 192.0.2.2/30 h2 (vspan collect)

h1's switch mirrors vm1 (both directions) twice: over ERSPAN III from h1's own
network stack (raw GRE socket, source 192.0.2.1) to the collector on h2, and
over RSPAN (VLAN 999) out of the trunk uplink. h2's switch has a "remote
mirroring destination" session taking VLAN 999 from its uplink to the sniffer
port. vm1 fetches a page from vm2 with urllib; the HTTP exchange must be in the
collector's file (tshark, ``vspan follow``) and in the sniffer's capture
(untagged), and nowhere else on h2. The underlay has MTU 1600 so a full-size
frame fits in ERSPAN III without being cut.

The second test (an expected failure, strict) fetches a 200 KB page: vm2's TCP
hands the veth GSO super-frames, and the ERSPAN copies of those are cut to the
path MTU instead of being segmented (see its reason).
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from tests.helpers.netns import Lab, lab, require_tools, requires_root, sh
from tests.system.capture import Capture, tcpdump
from tests.system.switchproc import VSPAN, SwitchProcess
from vspan.capture.pcapng import DIR_INBOUND, DIR_OUTBOUND, CaptureReader

pytestmark = [pytest.mark.system, requires_root]

REPO = Path(__file__).resolve().parents[2]
VM1_IP, VM2_IP = "10.0.0.1", "10.0.0.2"
VM1_MAC, VM2_MAC, VM3_MAC = "02:00:07:00:00:01", "02:00:07:00:00:02", "02:00:07:00:00:03"
H1_U, H2_U = "192.0.2.1", "192.0.2.2"
MIRROR_VLAN = 999
SESSION_ID = 42


class NsSwitch(SwitchProcess):
    """``vspan up`` run inside a network namespace (``ip netns exec`` execs it)."""

    def __init__(self, ns: str, workdir: Path, yaml_text: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, yaml_text)
        self.ns = ns

    def start(self) -> None:
        """Start inside the namespace and wait until the control socket answers."""
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *VSPAN, "up", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vspan up in {self.ns} exited: {self.log.read_text()}")
            if os.path.exists(self.socket) and self.answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"vspan up in {self.ns} did not answer: {self.log.read_text()}")

    def mirrors(self) -> dict[str, dict[str, Any]]:
        """``show mirrors`` by session name."""
        return {m["name"]: m for m in self.show("mirrors")}


@dataclass
class Hosts:
    lab: Lab
    h1: str
    h2: str
    vm1: str
    vm2: str
    vm3: str
    snf: str
    trk: str

    def ifname(self, short: str) -> str:
        return self.lab.name(short)


def _quiet(ns: str, ifname: str) -> None:
    """Up, without IPv6 (no router solicitations or DAD in the captures)."""
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1",
       check=False)
    sh("ip", "-n", ns, "link", "set", ifname, "up")


def wire(the_lab: Lab, short: str, a: tuple[str, str], b: tuple[str, str],
         mac_b: str | None = None, addr_a: str | None = None, addr_b: str | None = None) -> None:
    """A veth pair between namespaces: ``a = (ns, ifname)`` and ``b = (ns, ifname)``."""
    end_a, end_b = the_lab.name(short + "a"), the_lab.name(short + "b")
    sh("ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b)
    the_lab.links.append(end_a)  # deleted by the cleanup if a move below fails
    for end, (ns, ifname), mac, addr in ((end_a, a, None, addr_a), (end_b, b, mac_b, addr_b)):
        sh("ip", "link", "set", end, "netns", ns)
        sh("ip", "-n", ns, "link", "set", end, "name", ifname)
        if mac:
            sh("ip", "-n", ns, "link", "set", ifname, "address", mac)
        if addr:
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
        _quiet(ns, ifname)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    require_tools("tshark", "tcpdump", "ss")
    with lab(prefix=f"vp7{secrets.token_hex(2)}") as the_lab:
        h1, h2 = the_lab.netns("h1"), the_lab.netns("h2")
        vm1, vm2, vm3 = the_lab.netns("vm1"), the_lab.netns("vm2"), the_lab.netns("vm3")
        snf, trk = the_lab.netns("snf"), the_lab.netns("trk")
        n = the_lab.name
        wire(the_lab, "w1", (h1, n("vm1")), (vm1, "eth0"), VM1_MAC, addr_b=f"{VM1_IP}/24")
        wire(the_lab, "w2", (h1, n("vm2")), (vm2, "eth0"), VM2_MAC, addr_b=f"{VM2_IP}/24")
        wire(the_lab, "w3", (h2, n("vm3")), (vm3, "eth0"), VM3_MAC, addr_b="10.0.0.3/24")
        wire(the_lab, "ws", (h2, n("snf")), (snf, "eth0"))
        wire(the_lab, "wt", (h2, n("trk")), (trk, "eth0"))
        wire(the_lab, "ut", (h1, n("up")), (h2, n("up")))  # RSPAN trunk between the switches
        wire(the_lab, "ul", (h1, n("u0")), (h2, n("u0")),  # IP underlay for ERSPAN
             addr_a=f"{H1_U}/30", addr_b=f"{H2_U}/30")
        for ns in (h1, h2):  # room for a full-size frame plus the 40 bytes of ERSPAN III
            sh("ip", "-n", ns, "link", "set", n("u0"), "mtu", "1600")
        for ns, other, mac in ((vm1, VM2_IP, VM2_MAC), (vm2, VM1_IP, VM1_MAC)):
            the_lab.exec(ns, "ip", "neigh", "replace", other, "lladdr", mac, "dev", "eth0",
                         "nud", "permanent")
        the_lab.exec(h1, "ping", "-c", "1", "-W", "5", H2_U)  # underlay up, neighbour known
        yield Hosts(the_lab, h1, h2, vm1, vm2, vm3, snf, trk)


def h1_yaml(h: Hosts) -> str:
    n = h.ifname
    return f"""\
ports:
  vm1: {{interface: {n("vm1")}}}
  vm2: {{interface: {n("vm2")}}}
  uplink: {{interface: {n("up")}, vlan: {{mode: trunk, allowed: [{MIRROR_VLAN}]}}}}
mirrors:
  to-collector:
    sources: [{{port: vm1, direction: both}}]
    erspan: {{type: erspan3, remote_ip: {H2_U}, source_ip: {H1_U}, session_id: {SESSION_ID},
              timestamp_granularity: ns}}
  to-h2-vlan:
    sources: [{{port: vm1, direction: both}}]
    rspan: {{port: uplink, vlan: {MIRROR_VLAN}}}
"""


def h2_yaml(h: Hosts) -> str:
    n = h.ifname
    return f"""\
ports:
  uplink: {{interface: {n("up")}, vlan: {{mode: trunk, allowed: [{MIRROR_VLAN}]}}}}
  sniffer: {{interface: {n("snf")}}}
  trk: {{interface: {n("trk")}, vlan: {{mode: trunk, allowed: [{MIRROR_VLAN}]}}}}
  vm3: {{interface: {n("vm3")}}}
mirrors:
  from-h1:
    rspan_source: {{port: uplink, vlan: {MIRROR_VLAN}}}
    destinations: [sniffer]
"""


def _wait_stderr(proc: subprocess.Popen[str], needle: str, timeout: float = 15) -> None:
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if needle in line:
                return
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"{needle!r} not seen; got:\n{seen}")


class Collector:
    """``vspan collect --listen 192.0.2.2`` running inside h2."""

    def __init__(self, ns: str, path: Path) -> None:
        self.path = path
        self.summary = ""
        self.proc: subprocess.Popen[str] | None = subprocess.Popen(
            ["ip", "netns", "exec", ns, *VSPAN, "collect", "--listen", H2_U, "-w", str(path),
             "--progress", "60"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
        _wait_stderr(self.proc, "listening on")

    def stop(self) -> str:
        """SIGINT (``ip netns exec`` execs, so this is the collector); its summary."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.summary
        proc.send_signal(signal.SIGINT)
        try:
            _, self.summary = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, self.summary = proc.communicate()
        return self.summary


@pytest.fixture
def collector(hosts: Hosts, tmp_path: Path) -> Iterator[Collector]:
    """A collector in h2 while the test runs (stopped by the test or, at the latest, here)."""
    col = Collector(hosts.h2, tmp_path / "c.pcapng")
    try:
        yield col
    finally:
        col.stop()


@dataclass
class Pages:
    small: str  # /page.txt: fits one segment
    big: str  # /big.txt: 200 KB, sent by vm2's TCP as GSO super-frames (veth offloads on)


@pytest.fixture
def web_server(hosts: Hosts, tmp_path: Path) -> Iterator[Pages]:
    """``python3 -m http.server 80`` in vm2 serving two pages."""
    root = tmp_path / "www"
    root.mkdir()
    pages = Pages(f"hello from vm2 through two vspan switches {secrets.token_hex(8)}\n",
                  "".join(f"line {i:06d} {secrets.token_hex(20)}\n" for i in range(4000)))
    (root / "page.txt").write_text(pages.small, encoding="ascii")
    (root / "big.txt").write_text(pages.big, encoding="ascii")
    proc = hosts.lab.popen(hosts.vm2, sys.executable, "-m", "http.server", "80", "--bind",
                           VM2_IP, "--directory", str(root), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if hosts.lab.exec(hosts.vm2, "ss", "-Hltn", "sport = :80").stdout.strip():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("http.server did not listen on port 80")
        yield pages
    finally:
        proc.kill()
        proc.wait()


GET = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
    "    sys.stdout.write(f'{r.status}\\n' + r.read().decode())\n"
)


def http_frames(packets: list[Any]) -> list[bytes]:
    """The frames of the vm1 <-> vm2:80 TCP exchange in capture order, TCP checksum zeroed.

    (Copies of checksum-offloaded frames may carry the partial checksum, or the
    completed one where the copy was finalized; everything else must be equal.)
    """
    out = []
    for p in packets:
        if p.haslayer(TCP) and p.haslayer(IP) and 80 in (p[TCP].sport, p[TCP].dport) and \
                {p[IP].src, p[IP].dst} == {VM1_IP, VM2_IP}:
            q = p.copy()
            q[TCP].chksum = 0
            out.append(bytes(q))
    return out


def follow(path: Path) -> tuple[str, bytes, bytes]:
    """``vspan follow``: its ascii output, and what the client and the server sent (raw)."""
    ascii_out = subprocess.run([*VSPAN, "follow", str(path)], capture_output=True, text=True,
                               cwd=REPO, timeout=30)
    assert ascii_out.returncode == 0, ascii_out.stderr
    raw = subprocess.run([*VSPAN, "follow", "--format", "raw", str(path)],
                         capture_output=True, text=True, cwd=REPO, timeout=30)
    assert raw.returncode == 0, raw.stderr
    assert "not in the capture" not in raw.stderr, raw.stderr
    sent: dict[bool, bytes] = {False: b"", True: b""}
    for line in raw.stdout.splitlines():
        text = line.strip()
        if text and all(c in "0123456789abcdef" for c in text):
            sent[line.startswith("\t")] += bytes.fromhex(text)
    return ascii_out.stdout, sent[False], sent[True]


def tshark_fields(path: Path, display_filter: str, *fields: str,
                  options: tuple[str, ...] = ()) -> list[list[str]]:
    """``tshark -T fields`` rows (first occurrence of each field), split on ``|``."""
    argv = ["tshark", "-r", str(path), *options, "-Y", display_filter, "-T", "fields",
            "-E", "separator=|", "-E", "occurrence=f"]
    for f in fields:
        argv += ["-e", f]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [line.split("|") for line in proc.stdout.splitlines()]


def test_vm_mirrored_over_erspan_and_rspan_to_second_host(
        hosts: Hosts, tmp_path: Path, web_server: Pages, collector: Collector) -> None:
    h = hosts
    body = web_server.small
    sw1 = NsSwitch(h.h1, tmp_path / "h1", h1_yaml(h))
    sw2 = NsSwitch(h.h2, tmp_path / "h2", h2_yaml(h))
    caps: dict[str, Capture] = {}
    try:
        sw2.start()
        sw1.start()
        with tcpdump(h.snf, "eth0", tmp_path / "snf.pcap") as snf_cap, \
                tcpdump(h.trk, "eth0", tmp_path / "trk.pcap") as trk_cap, \
                tcpdump(h.vm3, "eth0", tmp_path / "vm3.pcap") as vm3_cap, \
                tcpdump(h.h2, h.ifname("up"), tmp_path / "uplink.pcap") as up_cap:
            caps = {"snf": snf_cap, "trk": trk_cap, "vm3": vm3_cap, "up": up_cap}
            got = h.lab.exec(h.vm1, sys.executable, "-c", GET,
                             f"http://{VM2_IP}/page.txt", timeout=30)
            time.sleep(0.5)  # copies in flight reach the collector and the sniffer
        summary = collector.stop()
        m1 = sw1.mirrors()
        m2 = sw2.mirrors()
        fdb2 = sw2.show("fdb")
        ports2 = sw2.show("counters")["ports"]
    finally:
        sw1.stop()
        sw2.stop()
    # -- the GET itself worked through h1's switch
    assert got.stdout == "200\n" + body

    # -- h1's mirror sessions copied and sent; nothing lost or skipped by the loop guard
    er, rs = m1["to-collector"], m1["to-h2-vlan"]
    assert er["status"] == "ok" and rs["status"] == "ok", (er, rs)
    assert er["counters"]["mirrored"] > 0 and rs["counters"]["mirrored"] > 0
    assert er["counters"]["encap_sent"] == er["counters"]["mirrored"]
    assert er["counters"]["encap_errors"] == 0 and er["counters"]["loop_skipped"] == 0
    assert er["counters"]["dropped"] == 0 and rs["counters"]["dropped"] == 0
    assert er["counters"]["mirrored"] == rs["counters"]["mirrored"]  # same frames, two ways
    # h2's receiving session delivered every RSPAN copy to the sniffer
    assert m2["from-h1"]["counters"]["mirrored"] == rs["counters"]["mirrored"]

    # -- the collector: every copy arrived, decoded, with direction and interface per session
    assert "lost on the way 0" in summary and "malformed 0" in summary, summary
    recs = list(CaptureReader(str(collector.path)))
    assert len(recs) == er["counters"]["mirrored"], summary
    names = {r.interface_name for r in recs}
    assert names == {f"erspan3-{SESSION_ID}-ingress@{H1_U}",
                     f"erspan3-{SESSION_ID}-egress@{H1_U}"}, names
    for r in recs:  # vm1's own frames came in on the source port (ingress), replies egress
        src_vm1 = r.data[6:12] == bytes.fromhex(VM1_MAC.replace(":", ""))
        assert r.direction == (DIR_INBOUND if src_vm1 else DIR_OUTBOUND)
    # tshark reads the collected file: the request and the response
    req = tshark_fields(collector.path, "http.request", "ip.src", "http.request.method",
                        "http.request.uri")
    assert req == [[VM1_IP, "GET", "/page.txt"]]
    resp = tshark_fields(collector.path, "http.response", "ip.src", "http.response.code",
                         "http.file_data")
    assert len(resp) == 1 and resp[0][:2] == [VM2_IP, "200"]
    assert body.strip() in resp[0][2], resp  # tshark 4.0 prints text bodies as text
    # vspan follow: the GET line and the body, like Wireshark's Follow TCP Stream
    text, client, server = follow(collector.path)
    assert "GET /page.txt HTTP/1.1" in text and body.strip() in text
    assert client.startswith(b"GET /page.txt HTTP/1.1\r\n")
    assert server.startswith(b"HTTP/1.0 200 OK\r\n") and server.endswith(body.encode())

    # -- the sniffer on h2 saw the same TCP flow, untagged, byte for byte
    snf_frames = http_frames(caps["snf"].packets)
    col_frames = [r.data for r in recs]
    col_http = http_frames([Ether(d) for d in col_frames])
    assert snf_frames, "the sniffer saw no HTTP frames"
    assert not any(p.haslayer(Dot1Q) for p in caps["snf"].packets)
    assert snf_frames == col_http
    assert any(b"GET /page.txt" in f for f in snf_frames)
    assert any(body.strip().encode() in f for f in snf_frames)
    # ... and the wire between the switches carried them in VLAN 999
    up_vlans = {p[Dot1Q].vlan for p in caps["up"].packets if p.haslayer(Dot1Q)}
    assert up_vlans == {MIRROR_VLAN}

    # -- nothing of the mirror VLAN leaked anywhere else on h2
    for name in ("trk", "vm3"):
        leaked = [p.summary() for p in caps[name].packets
                  if p[Ether].src in (VM1_MAC, VM2_MAC) or p.haslayer(Dot1Q)]
        assert leaked == [], (name, leaked)
    assert not {e["mac"] for e in fdb2} & {VM1_MAC, VM2_MAC}, fdb2
    assert ports2["trk"]["tx_frames"] == 0 and ports2["vm3"]["tx_frames"] == 0, ports2


def test_erspan_copies_of_large_tcp_transfers_are_whole(
        hosts: Hosts, tmp_path: Path, web_server: Pages, collector: Collector) -> None:
    """A 200 KB HTTP response mirrored over ERSPAN can be followed from the collected file."""
    h = hosts
    sw1 = NsSwitch(h.h1, tmp_path / "h1", h1_yaml(h))
    try:
        sw1.start()
        got = h.lab.exec(h.vm1, sys.executable, "-c", GET, f"http://{VM2_IP}/big.txt",
                         timeout=30)
        time.sleep(0.5)
        er = sw1.mirrors()["to-collector"]["counters"]
    finally:
        sw1.stop()
    summary = collector.stop()
    assert got.stdout == "200\n" + web_server.big  # the transfer itself is fine
    assert er["mirrored"] > 0 and er["encap_errors"] == 0 and "lost on the way 0" in summary
    _, client, server = follow(collector.path)
    assert client.startswith(b"GET /big.txt HTTP/1.1\r\n")
    assert server.startswith(b"HTTP/1.0 200 OK\r\n") and server.endswith(web_server.big.encode())
    assert er["encap_truncated"] == 0, er
    bad = tshark_fields(collector.path, "tcp.checksum.status == 0", "frame.number",
                        options=("-o", "tcp.check_checksum:TRUE"))
    assert bad == [], f"{len(bad)} collected frames carry a partial TCP checksum"
