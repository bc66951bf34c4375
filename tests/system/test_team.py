"""Teams between two real vspan switches (see tests/system/teamlab.py for the topology).

Oracles: iperf3 and ping for the traffic, tcpdump on switch B's member interfaces
for what switch A put on each wire (``-Q in``: B sends with qdisc bypass, so those
captures hold only what came from A), scapy and the reference hash of
tests/unit/test_team_hash.py for which member a connection must use, tshark for
the capture file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.helpers.dvslab import wait_until
from tests.helpers.netns import Lab, require_tools
from tests.system.capture import tcpdump
from tests.system.switchproc import VSPAN
from tests.system.teamlab import (
    VM1_IP,
    VM1_MAC,
    VM2_IP,
    VM2_MAC,
    TeamLab,
    build,
    iperf3_result,
    iperf3_start,
    switches,
    team_yaml,
)
from tests.system.test_switch import ping
from tests.system.test_two_hosts import wire
from tests.unit.test_team_hash import ref_layer3_4

pytestmark = pytest.mark.system

SYN_ONLY = "-Q in tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0"
SEND = ("import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('eth0', 0))\n"
        "for h in sys.argv[1:]:\n"
        "    s.send(bytes.fromhex(h))\n")


def tx(t: TeamLab, host: str, member: str) -> int:
    """Frames switch ``host``'s team sent out of ``member``."""
    return t.tx(host)[member]


def test_two_member_team_spreads_by_hash_and_survives_a_member_failure(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("iperf3", "tcpdump", "ss", "ping")
    t = build(netlab)
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"]),
                  team_yaml("vm2", ["b1", "b2"])):
        ping(netlab, t.vm1, VM2_IP, count=2)
        with tcpdump(t.hb, "b1", tmp_path / "b1.pcap", SYN_ONLY) as syn1, \
                tcpdump(t.hb, "b2", tmp_path / "b2.pcap", SYN_ONLY) as syn2:
            server, client = iperf3_start(t, seconds=10, streams=16)
            started = time.monotonic()
            # both members carry the stream (iperf3 sends once its 16 streams connected)
            wait_until(lambda: min(t.tx("a").values()) > 100, 30, "frames on a1 and a2")
            spread = t.tx("a")
            t.link(t.ha, "a2", False)  # b2 loses carrier too: both teams fail over
            failed_at = time.monotonic() - started
            t.wait_state("a", "a2", "down")
            failed = t.tx("a")
            assert client.poll() is None, "iperf3 ended before the member failed"
            result = iperf3_result(server, client)
        end = t.tx("a")
        team_a, team_b = t.team("a"), t.team("b")
    # each member carried frames while both were up (layer3+4 over 17 connections)
    assert spread["a1"] > 100 and spread["a2"] > 100, spread
    # the transfer went on over a1 alone, every second after the failure, and completed
    assert end["a1"] > failed["a1"] + 1000 and end["a2"] == failed["a2"], (failed, end)
    later = [i["sum"] for i in result["intervals"] if i["sum"]["start"] > failed_at + 1]
    assert later and all(s["bytes"] > 0 for s in later), later
    assert team_a["active"] == ["a1"] and team_a["failovers"] >= 1
    assert team_b["active"] == ["b1"]
    assert next(m for m in team_a["members"] if m["name"] == "a2")["failovers"] == 1
    # every connection's SYN came over the member its layer3+4 hash picks
    syns = [(0, p) for p in syn1.packets] + [(1, p) for p in syn2.packets]
    assert len(syns) >= 17, len(syns)
    for member, pkt in syns:
        assert pkt[IP].src == VM1_IP
        assert ref_layer3_4(pkt) % 2 == member, pkt.summary()


def test_active_standby_uses_only_the_active_member_until_it_fails(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("iperf3", "ss", "ping")
    t = build(netlab)
    standby = "mode: active-standby, primary: {}"
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"], standby.format("a1")),
                  team_yaml("vm2", ["b1", "b2"], standby.format("b1"))):
        ping(netlab, t.vm1, VM2_IP, count=3)
        iperf3_result(*iperf3_start(t, seconds=2, streams=4))
        assert t.team("a")["active"] == ["a1"] and t.team("b")["active"] == ["b1"]
        assert tx(t, "a", "a1") > 1000 and tx(t, "a", "a2") == 0
        assert tx(t, "b", "b1") > 1000 and tx(t, "b", "b2") == 0
        assert t.member("a", "a2")["state"] == "standby"
        t.link(t.ha, "a1", False)
        t.wait_state("a", "a1", "down")
        t.wait_state("b", "b1", "down")
        ping(netlab, t.vm1, VM2_IP, count=3)
        iperf3_result(*iperf3_start(t, seconds=2, streams=2))
        assert t.team("a")["active"] == ["a2"] and t.team("a")["failovers"] == 1
        assert tx(t, "a", "a2") > 1000 and tx(t, "b", "b2") > 1000
        t.link(t.ha, "a1", True)  # the primary comes back and is taken back
        t.wait_state("a", "a1", "active")
        t.wait_state("b", "b1", "active")
        before = tx(t, "a", "a2")
        ping(netlab, t.vm1, VM2_IP, count=3)
        assert tx(t, "a", "a2") == before


def test_one_member_team_against_a_plain_port(netlab: Lab, tmp_path: Path) -> None:
    require_tools("iperf3", "ss", "ping")
    t = build(netlab)
    plain_b = "ports:\n  vm2: {interface: vm2}\n  up: {interface: b1}\n"
    with switches(t, tmp_path, team_yaml("vm1", ["a1"]), plain_b):
        ping(netlab, t.vm1, VM2_IP, count=3)
        result = iperf3_result(*iperf3_start(t, seconds=2))
        a1 = t.member("a", "a1")
        assert result["end"]["sum_received"]["bytes"] > 1_000_000
        assert a1["state"] == "active" and a1["counters"]["tx_frames"] > 1000
        assert a1["counters"]["rx_frames"] > 100


def marked(src_mac: str, src_ip: str, dport: int, n: int) -> list[bytes]:
    return [bytes(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
                  / IP(src=src_ip, dst="255.255.255.255")
                  / UDP(sport=20000 + i, dport=dport) / Raw(f"team-mark-{i:03d}".encode()))
            for i in range(n)]


def marks(packets: list[object], dport: int) -> Counter[bytes]:
    return Counter(bytes(p[Raw].load) for p in packets  # type: ignore[index]
                   if UDP in p and p[UDP].dport == dport)  # type: ignore[operator, index]


def test_flooding_uses_one_member_and_never_returns_by_another(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("tcpdump")
    t = build(netlab)
    out, back = marked(VM1_MAC, VM1_IP, 9, 24), marked(VM2_MAC, VM2_IP, 10, 24)
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"]),
                  team_yaml("vm2", ["b1", "b2"])):
        b_before = {m: tx(t, "b", m) for m in ("b1", "b2")}
        with tcpdump(t.hb, "b1", tmp_path / "b1.pcap", "-Q in udp") as w1, \
                tcpdump(t.hb, "b2", tmp_path / "b2.pcap", "-Q in udp") as w2, \
                tcpdump(t.vm1, "eth0", tmp_path / "vm1.pcap", "-Q in udp") as at_vm1, \
                tcpdump(t.vm2, "eth0", tmp_path / "vm2.pcap", "-Q in udp") as at_vm2:
            netlab.exec(t.vm1, sys.executable, "-c", SEND, *(f.hex() for f in out))
            netlab.exec(t.vm2, sys.executable, "-c", SEND, *(f.hex() for f in back))
            time.sleep(0.5)
        b_after = {m: tx(t, "b", m) for m in ("b1", "b2")}
    names = Counter(f"team-mark-{i:03d}".encode() for i in range(24))
    # vm1's broadcasts: each left switch A by exactly one member, spread over both
    on1, on2 = marks(w1.packets, 9), marks(w2.packets, 9)
    assert on1 + on2 == names and on1 and on2
    assert marks(at_vm2.packets, 9) == names
    # vm2's broadcasts came into A over both members (B spreads them) and A never sent
    # one back out of the other member; vm1 got each once
    assert b_after["b1"] > b_before["b1"] and b_after["b2"] > b_before["b2"]
    assert marks(w1.packets, 10) == Counter() and marks(w2.packets, 10) == Counter()
    assert marks(at_vm1.packets, 10) == names


def test_capture_at_member_team_and_port_links_the_copies(
        netlab: Lab, tmp_path: Path) -> None:
    """The seed's LBFO view on purpose: a TCP connect seen at a member and at the team."""
    require_tools("tshark")
    t = build(netlab)
    path = tmp_path / "points.pcapng"
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"]),
                  team_yaml("vm2", ["b1", "b2"])) as lab_:
        ping(netlab, t.vm1, VM2_IP, count=1)
        sw = lab_.switches["a"]
        cap = subprocess.Popen(
            ["ip", "netns", "exec", t.ha, *VSPAN, "capture", "team0:*", "team0", "vm1",
             "-w", str(path), "--socket", sw.socket], stderr=subprocess.PIPE, text=True)
        try:
            assert cap.stderr is not None
            assert "capturing on" in cap.stderr.readline()
            server = netlab.popen(t.vm2, sys.executable, "-c",
                                  "import socket\ns = socket.socket()\n"
                                  f"s.bind(('{VM2_IP}', 445))\ns.listen()\n"
                                  "c, _ = s.accept()\nc.recv(16)\nc.close()\n")
            time.sleep(0.5)
            netlab.exec(t.vm1, sys.executable, "-c",
                        f"import socket\nc = socket.create_connection(('{VM2_IP}', 445), 5)\n"
                        "c.sendall(b'psping')\nc.close()\n")
            server.wait(10)
            time.sleep(0.3)
        finally:
            cap.send_signal(2)
            _, err = cap.communicate(timeout=20)
        assert cap.returncode == 0, err
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp.port == 445", "-T", "fields", "-E",
         "separator=|", "-e", "frame.interface_name", "-e", "frame.packet_id",
         "-e", "tcp.flags.syn", "-e", "tcp.flags.ack"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    groups: dict[str, list[str]] = {}
    for line in rows:
        iface, pid, _syn, _ack = line.split("|")
        assert pid, f"no packet id: {line}"
        groups.setdefault(pid, []).append(iface)
    assert len(groups) >= 6  # SYN, SYN-ACK, ACK, data, FIN... of one connection
    for pid, ifaces in groups.items():
        # every packet three times: at the VM port, at the team, at exactly one member
        members = [i for i in ifaces if i.startswith("team0:")]
        assert sorted(set(ifaces) - set(members)) == ["team0", "vm1"], (pid, ifaces)
        assert len(members) == 1 and len(ifaces) == 3, (pid, ifaces)
    syn = [r for r in rows if r.endswith("|1|0")]
    assert len(syn) == 3, rows  # the SYN at vm1, at the team and at its member
    # the analysis commands read the copies as copies: duplicates, not retransmissions
    flows = subprocess.run([*VSPAN, "flows", "--json", str(path)], capture_output=True,
                           text=True, check=True).stdout
    conn = next(f for f in map(json.loads, flows.splitlines()) if f.get("resp_p") == 445)
    assert conn["retransmissions"] == 0 and conn["duplicates"] >= 2 * len(groups), conn
    deduped = tmp_path / "dedup.pcapng"
    subprocess.run([*VSPAN, "dedup", str(path), "-w", str(deduped), "--keep-point", "team0",
                    "-q"], capture_output=True, text=True, check=True)
    kept = subprocess.run(["tshark", "-r", str(deduped), "-Y", "tcp.port == 445", "-T",
                           "fields", "-e", "frame.interface_name"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert kept == ["team0"] * len(groups), kept


def test_arp_monitor_takes_members_down_while_carrier_stays_up(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    t = build(netlab)
    arp = f"arp_monitor: {{targets: [{VM2_IP}], interval_ms: 100, missed_max: 2}}"
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"], arp),
                  team_yaml("vm2", ["b1", "b2"])):
        t.wait_state("a", "a1", "active")
        t.wait_state("a", "a2", "active")
        time.sleep(0.5)
        for m in ("a1", "a2"):
            st = t.member("a", m)["arp"]
            assert st["ok"] and st["replies"] > 0 and st["probes"] >= st["replies"] // 2
        netlab.exec(t.vm2, "ip", "addr", "del", f"{VM2_IP}/24", "dev", "eth0")
        t.wait_state("a", "a1", "down (ARP targets silent)")
        t.wait_state("a", "a2", "down (ARP targets silent)")
        assert all(t.member("a", m)["link"] == "up" for m in ("a1", "a2"))  # carrier is up
        netlab.exec(t.vm2, "ip", "addr", "add", f"{VM2_IP}/24", "dev", "eth0")
        t.wait_state("a", "a1", "active")
        t.wait_state("a", "a2", "active")
        # vm1 resolves vm2 first: one lost ARP request costs a 1 s retransmit, so give the
        # pings 1.8 s (five at 0.2 s, 1 s wait) rather than the 1.1 s of two at 0.1 s
        ping(netlab, t.vm1, VM2_IP, count=5, interval="0.2")


def test_a_deleted_member_is_used_again_when_its_interface_returns(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("iperf3", "ss", "ping")
    t = build(netlab)
    with switches(t, tmp_path, team_yaml("vm1", ["a1", "a2"]),
                  team_yaml("vm2", ["b1", "b2"])):
        ping(netlab, t.vm1, VM2_IP, count=2)
        netlab.exec(t.ha, "ip", "link", "del", "a1")  # the pair goes: b1 too
        t.wait_state("a", "a1", "down (deleted)")
        t.wait_state("b", "b1", "down (deleted)")
        ping(netlab, t.vm1, VM2_IP, count=3)  # over a2 alone
        wire(netlab, "l1", (t.ha, "a1"), (t.hb, "b1"))  # new devices, same names
        t.wait_state("a", "a1", "active")
        t.wait_state("b", "b1", "active")
        before = t.tx("a")
        iperf3_result(*iperf3_start(t, seconds=2, streams=8))
        after = t.tx("a")
    assert after["a1"] > before["a1"] + 100 and after["a2"] > before["a2"] + 100, (before, after)
