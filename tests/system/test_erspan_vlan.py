"""ERSPAN II and III copies carry the frame's VLAN, checked by tshark (issue 7, item 2).

The switch runs inside a host namespace with no default route; the collector is
a namespace behind an underlay veth where tcpdump records the GRE packets and
tshark decodes them. ``vm`` is an access port of VLAN 10 pinging ``peer`` (also
VLAN 10): its copies are untagged on the wire and must say VLAN 10 in the
ERSPAN header (Type II with En=0). ``t`` is a trunk where scapy sends frames
tagged 20 (PCP 3): their copies keep the tag (inner ``vlan.id`` 20) and the
header says VLAN 20 (En=3).
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.capture import tcpdump
from tests.system.test_capture_port import tshark_fields
from tests.system.test_switch import ping
from tests.system.test_two_hosts import NsSwitch, wire

pytestmark = pytest.mark.system

VM_MAC, PEER_MAC, T_MAC, P20_MAC = ("02:00:00:00:0f:01", "02:00:00:00:0f:02",
                                     "02:00:00:00:0f:03", "02:00:00:00:0f:04")
SEND_TAGGED = """
import sys
from scapy.all import Dot1Q, Ether, IP, UDP, sendp
frames = [Ether(src=sys.argv[1], dst=sys.argv[2]) / Dot1Q(vlan=20, prio=3)
          / IP(src="10.20.0.9", dst="10.20.0.4") / UDP(sport=4000, dport=4001) / b"tagged"
          for _ in range(3)]
sendp(frames, iface="eth0", inter=0.05, verbose=False)
"""


def test_erspan_copies_carry_the_vlan(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump", "tshark")
    host, vm, peer, t, p20, col = (netlab.netns(n) for n in ("h", "vm", "pe", "t", "p20", "col"))
    n = netlab.name
    wire(netlab, "wv", (host, n("pv")), (vm, "eth0"), VM_MAC, addr_b="10.15.0.1/24")
    wire(netlab, "wp", (host, n("pp")), (peer, "eth0"), PEER_MAC, addr_b="10.15.0.2/24")
    wire(netlab, "wt", (host, n("pt")), (t, "eth0"), T_MAC)
    wire(netlab, "w2", (host, n("p2")), (p20, "eth0"), P20_MAC)
    wire(netlab, "wc", (host, n("u0")), (col, "eth0"), addr_a="198.18.9.1/30",
         addr_b="198.18.9.2/30")
    for ns, ifname in ((host, n("pv")), (host, n("pp")), (host, n("pt")), (host, n("p2")),
                       (host, n("u0"))):
        netlab.exec(ns, "ip", "link", "set", ifname, "up")
    routes = netlab.exec(host, "ip", "route", "show", "default").stdout
    assert routes.strip() == "", f"the switch namespace must have no default route: {routes}"
    erspan = "remote_ip: 198.18.9.2"
    cfg = ("ports:\n"
           f"  vm: {{interface: {n('pv')}, vlan: {{mode: access, id: 10}}}}\n"
           f"  peer: {{interface: {n('pp')}, vlan: {{mode: access, id: 10}}}}\n"
           f"  t: {{interface: {n('pt')}, vlan: {{mode: trunk, allowed: [10, 20]}}}}\n"
           f"  p20: {{interface: {n('p2')}, vlan: {{mode: access, id: 20}}}}\n"
           "mirrors:\n"
           f"  v2: {{sources: [vm], erspan: {{type: erspan2, session_id: 1, {erspan}}}}}\n"
           f"  v3: {{sources: [vm], erspan: {{type: erspan3, session_id: 2, {erspan}}}}}\n"
           f"  t2: {{sources: [{{port: t, direction: ingress}}], "
           f"erspan: {{type: erspan2, session_id: 3, {erspan}}}}}\n"
           f"  t3: {{sources: [{{port: t, direction: ingress}}], "
           f"erspan: {{type: erspan3, session_id: 4, {erspan}}}}}\n")
    script = tmp_path / "send_tagged.py"
    script.write_text(SEND_TAGGED, encoding="utf-8")
    sw = NsSwitch(host, tmp_path / "h", cfg)
    try:
        sw.start()
        assert all(m["status"] == "ok" for m in sw.mirrors().values()), sw.mirrors()
        with tcpdump(col, "eth0", tmp_path / "col.pcap", "ip proto 47") as cap:
            ping(netlab, vm, "10.15.0.2", count=2)
            subprocess.run(["ip", "netns", "exec", t, sys.executable, str(script), T_MAC,
                            P20_MAC], check=True, timeout=60, capture_output=True)
        counters = {name: m["counters"] for name, m in sw.mirrors().items()}
    finally:
        sw.stop()
    assert cap.packets, "no ERSPAN packet reached the collector"
    rows = tshark_fields(cap.path, "erspan.version", "erspan.spanid", "erspan.vlan",
                         "erspan.encap", "vlan.id")
    by_session: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for version, spanid, vlan, encap, inner in rows:
        by_session[spanid].append((version, vlan, encap, inner))
    # vm: ARP request/reply and 2 echo requests/replies, every one untagged in VLAN 10
    for spanid, version in (("1", "1"), ("2", "2")):
        copies = by_session[spanid]
        assert len(copies) >= 6, (spanid, copies, counters)
        assert {c[0] for c in copies} == {version}
        assert {c[1] for c in copies} == {"10"}, (spanid, copies)
        assert {c[3] for c in copies} == {""}, (spanid, copies)  # no tag inside
        if version == "1":
            assert {c[2] for c in copies} == {"0"}  # En=0: the VLAN is in the header only
    # t: three frames tagged 20, their tag kept in the copy
    for spanid, version in (("3", "1"), ("4", "2")):
        copies = by_session[spanid]
        assert len(copies) == 3, (spanid, copies, counters)
        assert {(c[0], c[1], c[3]) for c in copies} == {(version, "20", "20")}, copies
        if version == "1":
            assert {c[2] for c in copies} == {"3"}  # En=3: the tag is in the frame
    # the first copies went by the raw socket while 198.18.9.2 was not in the neighbour
    # table (the kernel resolved it), later ones as Ethernet frames on the AF_PACKET
    # socket (mirror.l2path; by the native replay unless VSPAN_FASTPATH=python): tshark
    # decoded both above, and none was lost
    assert sum(c["encap_unresolved"] for c in counters.values()) > 0, counters
    assert sum(c["encap_link_layer"] for c in counters.values()) > 0, counters
    assert all(c["encap_sent"] == c["mirrored"] and c["encap_errors"] == 0
               for c in counters.values()), counters
