"""Port policy in the running switch: the seed's two-tier app behind the distributed
firewall, an asymmetric flow (per-port firewall vs. a firewall on one uplink), and the
port guards (MAC spoofing, DHCP guard, router guard) with scapy-crafted frames.

Everything runs for real: ``vspan up`` with the policy in its YAML, namespaces joined
to it by veth pairs, ``python -m http.server`` and socket listeners, ping, tcpdump
(read back by scapy), ``vspan capture --drops`` read by tshark. Every name starts
with ``vp6`` + 4 random hex digits and is removed afterwards.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.helpers.netns import Lab, is_root, lab, require_tools, sh
from tests.system.capture import tcpdump
from tests.system.switchproc import VSPAN, SwitchProcess, running_switch
from vspan.demos.firewall import tier_ports, two_tier_firewall

pytestmark = pytest.mark.system

PY = sys.executable

# A server answering each connection with "<tag>:<what it received> from <peer ip>".
LISTENER = r"""
import socket, sys
tag, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
while True:
    c, peer = s.accept()
    c.settimeout(3)
    try:
        data = c.recv(1024)
        c.sendall(f"{tag}:{data.decode(errors='replace')} from {peer[0]}".encode())
    except OSError:
        pass
    c.close()
"""

# A client: connect, send, read until the server closes. Prints what happened as JSON:
# {"stage": "done"|"connect"|"recv", "error": ..., "reply": ...}.
PROBE = r"""
import json, socket, sys
host, port, payload, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
out = {"stage": "connect"}
s = socket.socket()
s.settimeout(timeout)
try:
    s.connect((host, port))
    out["stage"] = "recv"
    s.sendall(payload.encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    out["stage"] = "done"
    out["reply"] = data.decode(errors="replace")
except ConnectionRefusedError:
    out["error"] = "refused"
except TimeoutError:
    out["error"] = "timeout"
except OSError as err:
    out["error"] = type(err).__name__ + ": " + str(err)
print(json.dumps(out))
"""

HTTP_GET = r"""
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(r.status, r.read().decode())
"""


@pytest.fixture
def vlab() -> Iterator[Lab]:
    """A namespace lab with this file's prefix (``vp6`` + 4 hex digits), always removed."""
    if not is_root():
        pytest.skip("needs root to create network namespaces and veth pairs")
    with lab(prefix=f"vp6{secrets.token_hex(2)}") as the_lab:
        yield the_lab


def node(lb: Lab, short: str, addr: str | None, mac: str) -> tuple[str, str]:
    """A namespace ``short`` with eth0 (``addr``, ``mac``) on a veth; (ns, root end)."""
    ns = lb.netns(short)
    return ns, lb.veth(f"v{short}", ns, addr=addr, mac=mac)


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def wait_listening(lb: Lab, ns: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lb.exec(ns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on TCP port {port} in {ns}")


def probe(lb: Lab, ns: str, probe_py: str, host: str, port: int, payload: str,
          timeout: float = 3) -> dict[str, Any]:
    """Run the TCP client in ``ns``; its JSON outcome."""
    out = lb.exec(ns, PY, probe_py, host, str(port), payload, str(timeout),
                  timeout=timeout * 3 + 10)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def ping(lb: Lab, ns: str, dst: str, count: int = 2) -> subprocess.CompletedProcess[str]:
    """``ping -c COUNT`` from ``ns``; the finished process (check its returncode)."""
    return lb.exec(ns, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", dst,
                   check=False, timeout=30)


def drop_table(sw: SwitchProcess) -> dict[tuple[str, str, str], int]:
    """(port, reason, rule) -> frames, from ``vspan show counters --json``."""
    return {(d["port"], d["reason"], d["rule"]): d["frames"]
            for d in sw.show("counters")["drops"]}


def policy_drops(sw: SwitchProcess) -> dict[tuple[str, str, str], int]:
    """Only the policy reasons of :func:`drop_table`."""
    policy = ("acl", "ext-acl", "firewall", "mac-spoof", "dhcp-guard", "router-guard", "storm")
    return {k: v for k, v in drop_table(sw).items() if k[1].startswith(policy)}


class PortCapture:
    """``vspan capture PORT --drops -w FILE`` running in the background."""

    def __init__(self, sw: SwitchProcess, out: Path, *ports: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [*VSPAN, "capture", *ports, "-w", str(out), "--drops", "--socket", sw.socket],
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        assert "capturing on" in first, first

    def stop(self) -> None:
        time.sleep(0.3)
        self.proc.send_signal(2)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err


def tshark_rows(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


# --------------------------------------------------------------------------- (a)
TIER = {  # name: (address, MAC)
    "cl": ("10.60.0.10", "02:06:60:00:00:10"),
    "web": ("10.60.0.20", "02:06:60:00:00:20"),
    "db": ("10.60.0.30", "02:06:60:00:00:30"),
    "bad": ("10.60.0.66", "02:06:60:00:00:66"),
}
SNIFFER_MAC = "02:06:60:00:00:99"
DB_PORT = 5432

# the demo's policy (vspan.demos.firewall) for this test's ports: shared setup, while the
# checks below are this test's own
TIER_POLICY = two_tier_firewall("cl", "web", "db", "bad", "snf", db_port=DB_PORT,
                                section="two-tier")


def test_two_tier_app_behind_distributed_firewall(vlab: Lab, tmp_path: Path) -> None:
    """The seed's App Firewall demo: client -> web:80 and web -> db:5432 only.

    One VLAN (access 10) holds a client, a web server (``python -m http.server``),
    a database (a TCP listener on 5432) and a compromised host. Firewall rules:
    1001 allow client -> web tcp/80, 1002 allow web -> db tcp/5432, 1003 reject
    any -> db; default rule drop. The compromised host's connects to the db are
    refused (TCP RST from the switch) and its pings are answered "administratively
    prohibited" - both counted as firewall-reject with rule 1003 at its port; its
    ping to web falls through to the default rule (firewall-deny, rule "default").
    A mirror session copies what the compromised port sends and receives to a
    sniffer: the refused SYNs show up there, never at the db, and so do the
    switch's own answers the port receives (RSTs, ICMP unreachables). ``vspan
    capture --drops`` marks each dropped frame with reason and rule.
    """
    require_tools("ping", "tcpdump", "tshark", "ss")
    h = {n: node(vlab, n, f"{ip}/24", mac) for n, (ip, mac) in TIER.items()}
    snf_ns, snf_veth = node(vlab, "snf", None, SNIFFER_MAC)
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("two-tier web tier\n", encoding="utf-8")
    listener = script(tmp_path, "listener.py", LISTENER)
    probe_py = script(tmp_path, "probe.py", PROBE)
    http_get = script(tmp_path, "http_get.py", HTTP_GET)

    cfg = tier_ports({n: (veth, TIER[n][0]) for n, (_ns, veth) in h.items()},
                     ("snf", snf_veth)) + TIER_POLICY

    web_srv = vlab.popen(h["web"][0], PY, "-m", "http.server", "80", "--bind", TIER["web"][0],
                         "--directory", str(docroot), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    db_srv = vlab.popen(h["db"][0], PY, listener, "db", TIER["db"][0], str(DB_PORT))
    try:
        wait_listening(vlab, h["web"][0], 80)
        wait_listening(vlab, h["db"][0], DB_PORT)
        with running_switch(tmp_path, cfg) as sw:
            # allowed: client -> web over HTTP, web -> db
            got = vlab.exec(h["cl"][0], PY, http_get, f"http://{TIER['web'][0]}/index.html")
            assert got.stdout.startswith("200 two-tier web tier"), got.stdout
            r = probe(vlab, h["web"][0], probe_py, TIER["db"][0], DB_PORT, "select 1")
            assert r == {"stage": "done", "reply": f"db:select 1 from {TIER['web'][0]}"}, r
            assert policy_drops(sw) == {}

            # the compromised host: refused and counted, seen by the mirror, never by db
            with ExitStack() as stack:
                mirror = stack.enter_context(
                    tcpdump(snf_ns, "eth0", tmp_path / "mirror.pcap", "ip"))
                at_db = stack.enter_context(
                    tcpdump(h["db"][0], "eth0", tmp_path / "db.pcap",
                            f"ip host {TIER['bad'][0]}"))
                cap = PortCapture(sw, tmp_path / "bad.pcapng", "bad")
                try:
                    outcomes = [probe(vlab, h["bad"][0], probe_py, TIER["db"][0], DB_PORT,
                                      "drop table") for _ in range(3)]
                    db_ping = ping(vlab, h["bad"][0], TIER["db"][0])
                    web_ping = ping(vlab, h["bad"][0], TIER["web"][0])
                finally:
                    cap.stop()
            assert outcomes == [{"stage": "connect", "error": "refused"}] * 3, outcomes
            # rejected: ICMP 3/13 "administratively prohibited" comes back (from db's address)
            assert db_ping.returncode != 0
            assert db_ping.stdout.count(f"From {TIER['db'][0]} icmp_seq=") == 2, db_ping.stdout
            assert "Packet filtered" in db_ping.stdout, db_ping.stdout
            # dropped by the default rule: silence
            assert web_ping.returncode != 0 and "From " not in web_ping.stdout, web_ping.stdout
            # web -> db still works after the attack
            r = probe(vlab, h["web"][0], probe_py, TIER["db"][0], DB_PORT, "select 2")
            assert r.get("reply") == f"db:select 2 from {TIER['web'][0]}", r

            drops = policy_drops(sw)
            trace = sw.cli("trace", "-i", "bad", "--src-mac", TIER["bad"][1], "--dst-mac",
                           TIER["db"][1], "--src-ip", TIER["bad"][0], "--dst-ip",
                           TIER["db"][0], "--proto", "tcp", "--dport", str(DB_PORT)).stdout
    finally:
        web_srv.kill()
        db_srv.kill()
        web_srv.wait()
        db_srv.wait()

    # 3 SYNs + 2 echo requests to db rejected by 1003, 2 echo requests to web by default
    assert drops == {("bad", "firewall-reject", "1003"): 5,
                     ("bad", "firewall-deny", "default"): 2}, drops
    assert "firewall out at bad: rule 1003 (section two-tier) -> reject" in trace, trace
    assert trace.rstrip().endswith("verdict: dropped: firewall-reject (rule 1003) at bad"), trace

    bad_ip, db_ip = TIER["bad"][0], TIER["db"][0]
    syns = [p for p in mirror.packets if p.haslayer(TCP) and p[IP].src == bad_ip
            and p[IP].dst == db_ip and p[TCP].dport == DB_PORT and p[TCP].flags == "S"]
    assert len(syns) == 3, [p.summary() for p in mirror.packets]
    assert all(p[Ether].src == TIER["bad"][1] for p in syns)
    # the switch's answers delivered to bad are in the mirror too (egress)
    rsts = [p for p in mirror.packets if p.haslayer(TCP) and p[IP].src == db_ip
            and p[IP].dst == bad_ip and p[TCP].sport == DB_PORT and p[TCP].flags.R]
    assert len(rsts) == 3, [p.summary() for p in mirror.packets]
    assert all(p[Ether].dst == TIER["bad"][1] for p in rsts)
    echo = [(p[IP].dst, p[ICMP].type) for p in mirror.packets if p.haslayer(ICMP)]
    assert sorted(echo) == sorted([(db_ip, 8)] * 2 + [(TIER["web"][0], 8)] * 2
                                  + [(bad_ip, 3)] * 2), echo
    assert at_db.packets == [], [p.summary() for p in at_db.packets]

    rows = tshark_rows(tmp_path / "bad.pcapng", "frame.comment", "tcp.flags.syn", "icmp.type",
                       "ip.dst")
    dropped = [r for r in rows if r[0].startswith("vspan: dropped")]
    syn_comments = {r[0] for r in dropped if r[1] in ("1", "True")}
    assert len([r for r in dropped if r[1] in ("1", "True")]) == 3, rows
    assert all(c.startswith("vspan: dropped: firewall-reject, rule 1003") for c in
               syn_comments), syn_comments
    icmp_comments = sorted((r[3], r[0].split(" (")[0]) for r in dropped if r[2] == "8")
    assert icmp_comments == sorted(
        [(db_ip, "vspan: dropped: firewall-reject, rule 1003, at bad")] * 2
        + [(TIER["web"][0], "vspan: dropped: firewall-deny, rule default, at bad")] * 2
    ), icmp_comments


# --------------------------------------------------------------------------- (b)
VM_IP, VM_MAC = "10.61.0.10", "02:06:61:00:00:10"
GW_A_IP, GW_A_MAC = "10.61.0.1", "02:06:61:00:0a:01"  # the router's leg on uplink A (DC1)
GW_B_IP, GW_B_MAC = "10.61.0.2", "02:06:61:00:0b:01"  # the router's leg on uplink B (DC2)
CLIENT_IP, CLIENT_GW = "10.62.0.1", "10.62.0.254"
APP_PORT = 8080

PER_PORT_FW = f"""
firewall:
  default_action: drop
  exclude: [upa, upb]
  groups: {{app: {{ports: [vm]}}}}
  sections:
    - name: app
      tcp_strict: true
      applied_to: [app]
      rules:
        - {{id: app-in, destinations: [app], services: ["tcp/{APP_PORT}"], action: allow,
           direction: in}}
"""

UPLINK_A_FW = f"""
firewall:
  default_action: drop
  exclude: [vm, upb]
  sections:
    - name: perimeter-dc1
      tcp_strict: true
      applied_to: [upa]
      rules:
        - {{id: edge-app, destinations: [{VM_IP}/32], services: ["tcp/{APP_PORT}"],
           action: allow}}
"""


def build_asymmetric(lb: Lab) -> dict[str, str]:
    """The topology of :func:`test_asymmetric_flow_per_port_vs_one_uplink`."""
    vm, vm_veth = node(lb, "vm", f"{VM_IP}/24", VM_MAC)
    rt = lb.netns("rt")
    cl = lb.netns("cl")
    upa = lb.veth("vua", rt, inner_name="etha", mac=GW_A_MAC)
    upb = lb.veth("vub", rt, inner_name="ethb", mac=GW_B_MAC)
    # client <-> router: a direct veth pair, not through the switch
    a_end, b_end = lb.name("cr"), lb.name("rc")
    sh("ip", "link", "add", a_end, "netns", cl, "type", "veth", "peer", "name", b_end,
       "netns", rt)
    lb.exec(cl, "ip", "link", "set", a_end, "name", "eth0")
    lb.exec(rt, "ip", "link", "set", b_end, "name", "ethc")
    lb.exec(cl, "ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    lb.exec(cl, "ip", "link", "set", "eth0", "up")
    lb.exec(cl, "ip", "route", "add", "default", "via", CLIENT_GW)
    # the router: requests to the VM leave through etha (DC1), the VM's replies arrive
    # on ethb (DC2, the VM's gateway); no reverse-path filter, each leg answers ARP only
    # for its own address
    for key, val in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                     ("net.ipv4.conf.default.rp_filter", "0"),
                     ("net.ipv4.conf.all.arp_ignore", "1")):
        lb.exec(rt, "sysctl", "-qw", f"{key}={val}")
    for ifn in ("etha", "ethb", "ethc"):
        lb.exec(rt, "sysctl", "-qw", f"net.ipv4.conf.{ifn}.rp_filter=0")
    lb.exec(rt, "ip", "addr", "add", f"{GW_A_IP}/32", "dev", "etha")
    lb.exec(rt, "ip", "addr", "add", f"{GW_B_IP}/32", "dev", "ethb")
    lb.exec(rt, "ip", "addr", "add", f"{CLIENT_GW}/24", "dev", "ethc")
    lb.exec(rt, "ip", "link", "set", "ethc", "up")
    lb.exec(rt, "ip", "route", "add", f"{VM_IP}/32", "dev", "etha")
    lb.exec(rt, "ip", "neigh", "replace", VM_IP, "lladdr", VM_MAC, "dev", "etha", "nud",
            "permanent")
    lb.exec(vm, "ip", "route", "add", "default", "via", GW_B_IP)
    return {"vm": vm, "rt": rt, "cl": cl, "vm_veth": vm_veth, "upa": upa, "upb": upb}


def test_asymmetric_flow_per_port_vs_one_uplink(vlab: Lab, tmp_path: Path) -> None:
    """The metro-cluster case of the seed, with real TCP.

    Topology (one VLAN on the switch; the client is routed)::

        client 10.62.0.1 --- ethc [router] etha 10.61.0.1 --- port upa  (DC1)
                                           ethb 10.61.0.2 --- port upb  (DC2)   vspan
                                        VM 10.61.0.10 eth0 --- port vm

    The router sends traffic for the VM out of etha (a /32 route with a static
    neighbour), so requests enter the switch on ``upa``; the VM's default gateway
    is 10.61.0.2, so its replies go to ethb's MAC and leave on ``upb`` (the switch
    learnt that MAC on upb from ethb's ARP reply). Both legs' tcpdumps prove it.

    1. Firewall at the VM's port (uplinks excluded), TCP strict: the port sees
       SYN in, SYN-ACK out, ACK in - one connection; the request is answered
       (and a port no rule allows is dropped there by the default rule).
    2. Firewall applied to uplink A only (VM port and upb excluded), TCP strict:
       upa sees the SYN but never the SYN-ACK, so the client's ACK and data are
       invalid there (``firewall-state-invalid``, rule edge-app). The client's
       connect() succeeds (the SYN-ACK came back via upb) and then hangs: a half flow.
    """
    require_tools("tcpdump", "ss")
    t = build_asymmetric(vlab)
    listener = script(tmp_path, "listener.py", LISTENER)
    probe_py = script(tmp_path, "probe.py", PROBE)
    ports = (f"ports:\n  vm: {{interface: {t['vm_veth']}, policy: {{addresses: [{VM_IP}]}}}}\n"
             f"  upa: {{interface: {t['upa']}}}\n  upb: {{interface: {t['upb']}}}\n")
    srv = vlab.popen(t["vm"], PY, listener, "app", VM_IP, str(APP_PORT))
    try:
        wait_listening(vlab, t["vm"], APP_PORT)

        # 1. the firewall at the VM's port
        (tmp_path / "dfw").mkdir()
        with running_switch(tmp_path / "dfw", ports + PER_PORT_FW) as sw, ExitStack() as st:
            leg_a = st.enter_context(tcpdump(t["rt"], "etha", tmp_path / "a.pcap", "tcp"))
            leg_b = st.enter_context(tcpdump(t["rt"], "ethb", tmp_path / "b.pcap", "tcp"))
            r = probe(vlab, t["cl"], probe_py, VM_IP, APP_PORT, "GET /")
            st.close()
            fdb = {(e["mac"], e["port"]) for e in sw.show("fdb")}
            dfw_drops = policy_drops(sw)
            # the VM's firewall is live: a port no rule allows is dropped by the default rule
            blocked = probe(vlab, t["cl"], probe_py, VM_IP, 22, "ssh", timeout=1)
            dfw_after = policy_drops(sw)
        assert r == {"stage": "done", "reply": f"app:GET / from {CLIENT_IP}"}, r
        assert dfw_drops == {}
        assert blocked == {"stage": "connect", "error": "timeout"}, blocked
        assert set(dfw_after) == {("vm", "firewall-deny", "default")}, dfw_after
        assert {(GW_A_MAC, "upa"), (GW_B_MAC, "upb"), (VM_MAC, "vm")} <= fdb
        # asymmetric for real: client->VM only via etha, VM->client only via ethb
        to_vm_a = [p for p in leg_a.packets if p[IP].dst == VM_IP and p[Ether].src == GW_A_MAC]
        from_vm_a = [p for p in leg_a.packets if p[IP].src == VM_IP]
        from_vm_b = [p for p in leg_b.packets if p[IP].src == VM_IP
                     and p[Ether].dst == GW_B_MAC]
        to_vm_b = [p for p in leg_b.packets if p[IP].dst == VM_IP
                   and p[Ether].src == GW_B_MAC]
        assert [p[TCP].flags for p in to_vm_a][:2] == ["S", "A"], leg_a.packets
        assert any(p[TCP].flags == "SA" for p in from_vm_b), leg_b.packets
        assert any(p.haslayer(Raw) and p[Raw].load == b"GET /" for p in to_vm_a)
        assert any(p.haslayer(Raw) and p[Raw].load.startswith(b"app:") for p in from_vm_b)
        assert from_vm_a == [] and to_vm_b == []

        # 2. the same flow with a (strict) firewall on uplink A only
        vlab.exec(t["vm"], "ip", "neigh", "flush", "dev", "eth0")  # re-ARP: upb learns ethb
        (tmp_path / "edge").mkdir()
        with running_switch(tmp_path / "edge", ports + UPLINK_A_FW) as sw:
            r = probe(vlab, t["cl"], probe_py, VM_IP, APP_PORT, "GET /", timeout=2)
            fdb = {(e["mac"], e["port"]) for e in sw.show("fdb")}
            edge_drops = policy_drops(sw)
    finally:
        srv.kill()
        srv.wait()
    assert (GW_B_MAC, "upb") in fdb  # the SYN-ACK left on upb, never crossing upa
    assert r == {"stage": "recv", "error": "timeout"}, r  # handshake "done", data lost
    assert set(edge_drops) == {("upa", "firewall-state-invalid", "edge-app")}, edge_drops
    assert edge_drops[("upa", "firewall-state-invalid", "edge-app")] >= 2  # ACK, data, ...


# --------------------------------------------------------------------------- (c)
G_VM_MAC, G_PEER_MAC = "02:06:63:00:00:01", "02:06:63:00:00:02"
SPOOF_MAC = "02:06:63:00:00:bb"

SEND_GUARDED = r"""
import sys
from scapy.all import Ether, IP, IPv6, UDP, ICMP, Raw, sendp
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6EchoRequest
vm, spoof, peer = sys.argv[1], sys.argv[2], sys.argv[3]
bc = "ff:ff:ff:ff:ff:ff"
mac_bytes = bytes.fromhex(vm.replace(":", ""))
def bootp(op, mtype, xid):
    return BOOTP(op=op, chaddr=mac_bytes, xid=xid) / DHCP(
        options=[("message-type", mtype), "end"])
frames = []
for i in range(3):  # spoofed source MAC: mac-spoof
    frames.append(Ether(src=spoof, dst=peer) / IP(src="10.63.0.1", dst="10.63.0.2")
                  / UDP(sport=40000, dport=9999) / Raw(f"spoof-{i}".encode()))
for i in range(2):  # the assigned MAC: passes
    frames.append(Ether(src=vm, dst=peer) / IP(src="10.63.0.1", dst="10.63.0.2")
                  / UDP(sport=40000, dport=9999) / Raw(f"legit-{i}".encode()))
for i in range(2):  # DHCP OFFER from the VM (a rogue DHCP server): dhcp-guard
    frames.append(Ether(src=vm, dst=bc) / IP(src="10.63.0.1", dst="255.255.255.255")
                  / UDP(sport=67, dport=68) / bootp(2, "offer", 0x1000 + i))
# DHCP DISCOVER from the VM (a client): passes
frames.append(Ether(src=vm, dst=bc) / IP(src="0.0.0.0", dst="255.255.255.255")
              / UDP(sport=68, dport=67) / bootp(1, "discover", 0x2000))
# DHCPv6 ADVERTISE (server 547 -> client 546): dhcp-guard
frames.append(Ether(src=vm, dst="33:33:00:01:00:02") / IPv6(src="fe80::1", dst="ff02::1:2")
              / UDP(sport=547, dport=546) / Raw(b"\x02\x00\x00\x01"))
for i in range(2):  # ICMPv6 router advertisement: router-guard
    frames.append(Ether(src=vm, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1")
                  / ICMPv6ND_RA(routerlifetime=1800))
# ICMPv4 redirect: router-guard
frames.append(Ether(src=vm, dst=peer) / IP(src="10.63.0.1", dst="10.63.0.2")
              / ICMP(type=5, code=1, gw="10.63.0.1") / IP(src="10.63.0.2", dst="10.9.9.9")
              / UDP(sport=1, dport=2))
# an ICMPv6 echo request: passes
frames.append(Ether(src=vm, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1")
              / ICMPv6EchoRequest(id=0x63, seq=1))
sendp(frames, iface="eth0", inter=0.02, verbose=False)
"""


def test_guards_drop_spoofed_mac_rogue_dhcp_and_router_advertisements(
        vlab: Lab, tmp_path: Path) -> None:
    """Scapy frames from a VM whose port has MAC spoofing off, DHCP guard and router guard.

    The peer's tcpdump is the oracle for what crossed the switch; the switch's
    counters say why the rest did not.
    """
    require_tools("tcpdump")
    vm_ns, vm_veth = node(vlab, "vm", "10.63.0.1/24", G_VM_MAC)
    peer_ns, peer_veth = node(vlab, "peer", "10.63.0.2/24", G_PEER_MAC)
    cfg = (f"ports:\n"
           f"  vm:\n    interface: {vm_veth}\n    policy:\n      guards:\n"
           f"        mac_spoofing: false\n        macs: [\"{G_VM_MAC}\"]\n"
           f"        dhcp_guard: true\n        router_guard: true\n"
           f"  peer: {{interface: {peer_veth}}}\n")
    sender = script(tmp_path, "send_guarded.py", SEND_GUARDED)
    with running_switch(tmp_path, cfg) as sw, \
            tcpdump(peer_ns, "eth0", tmp_path / "peer.pcap") as cap:
        vlab.exec(vm_ns, PY, sender, G_VM_MAC, SPOOF_MAC, G_PEER_MAC, timeout=60)
        time.sleep(0.2)
        drops = policy_drops(sw)
        fdb = {(e["mac"], e["port"]) for e in sw.show("fdb")}
    assert drops == {("vm", "mac-spoof", ""): 3, ("vm", "dhcp-guard", ""): 3,
                     ("vm", "router-guard", ""): 3}, drops
    assert (SPOOF_MAC, "vm") not in fdb  # a spoofed frame teaches the switch nothing

    got = [p for p in cap.packets if p[Ether].src in (G_VM_MAC, SPOOF_MAC)]
    payloads = sorted(bytes(p[Raw].load) for p in got
                      if p.haslayer(UDP) and p[UDP].dport == 9999)
    assert payloads == [b"legit-0", b"legit-1"], [p.summary() for p in got]
    dhcp = [(p[UDP].sport, p[UDP].dport) for p in got if p.haslayer(UDP)
            and p[UDP].dport != 9999]
    assert dhcp == [(68, 67)], [p.summary() for p in got]
    v6 = [p for p in got if p.haslayer(IPv6)]
    assert [p[IPv6].nh for p in v6] == [58] and v6[0].getlayer(2).type == 128, v6
    assert not [p for p in got if p.haslayer(ICMP)], [p.summary() for p in got]
    assert not [p for p in cap.packets if p[Ether].src == SPOOF_MAC]
