"""The firewall's TCP state machine, run through the switch on memory ports.

Port ``vm`` is the protected VM (10.0.0.5); port ``net`` is an uplink
(excluded from the firewall) where the remote host 10.1.1.1 lives.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether

from tests.helpers.policy_frames import PEER_MAC, VM_MAC, tcp, udp
from tests.pipeline.policy_harness import PolicySwitch, make_policy_switch
from vspan.config.load import parse_config
from vspan.policy.tcp import TcpStateName

VM, R = "10.0.0.5", "10.1.1.1"
CISN, SISN = 1000, 5000  # client (remote) and server (VM) initial sequence numbers

POLICY = """
ports:
  vm: {addresses: [10.0.0.5, "2001:db8::5"]}
firewall:
  default_action: drop
  exclude: [net]
  groups: {vms: {ports: [vm]}}
  timeouts: {tcp_established: 3600}
  sections:
    - name: strict
      tcp_strict: true
      rules:
        - {id: web, destinations: [vms], services: ["tcp/80"], action: allow, direction: in}
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
        - {id: discard, services: ["udp/9"], action: reject, direction: in}
    - name: loose
      rules:
        - {id: alt, destinations: [vms], services: ["tcp/8080"], action: allow, direction: in}
"""


@pytest.fixture
def ps() -> Iterator[PolicySwitch]:
    s = make_policy_switch(["vm", "net"], POLICY)
    yield s
    s.close()


def c2s(ps: PolicySwitch, flags: str, seq: int, ack: int = 0, payload: bytes = b"",
        dport: int = 80, sport: int = 40000, win: int = 65535,
        wscale: int | None = None) -> bool:
    """Remote client -> VM through the uplink; True if the VM got it."""
    ps.send("net", tcp(R, VM, sport, dport, flags, seq, ack, win, payload, wscale,
                       src_mac=PEER_MAC, dst_mac=VM_MAC))
    return len(ps.got("vm")) == 1


def s2c(ps: PolicySwitch, flags: str, seq: int, ack: int = 0, payload: bytes = b"",
        sport: int = 80, dport: int = 40000, win: int = 65535,
        wscale: int | None = None) -> bool:
    """VM -> remote client; True if it left through the uplink."""
    ps.send("vm", tcp(VM, R, sport, dport, flags, seq, ack, win, payload, wscale,
                      src_mac=VM_MAC, dst_mac=PEER_MAC))
    return len(ps.got("net")) == 1


def handshake(ps: PolicySwitch, dport: int = 80) -> None:
    assert c2s(ps, "S", CISN, dport=dport)
    assert s2c(ps, "SA", SISN, CISN + 1, sport=dport)
    assert c2s(ps, "A", CISN + 1, SISN + 1, dport=dport)


def state(ps: PolicySwitch) -> str:
    (conn,) = ps.conns("vm")
    return str(conn.state)


def test_full_connection_lifecycle(ps: PolicySwitch) -> None:
    assert c2s(ps, "S", CISN)
    assert state(ps) == TcpStateName.SYN_SENT
    assert s2c(ps, "SA", SISN, CISN + 1)
    assert state(ps) == TcpStateName.SYN_RECV
    assert c2s(ps, "A", CISN + 1, SISN + 1)
    assert state(ps) == TcpStateName.ESTABLISHED
    assert c2s(ps, "PA", CISN + 1, SISN + 1, b"GET / HTTP/1.0\r\n\r\n")
    assert s2c(ps, "PA", SISN + 1, CISN + 19, b"HTTP/1.0 200 OK\r\n\r\n")
    assert s2c(ps, "FA", SISN + 20, CISN + 19)
    assert state(ps) == TcpStateName.FIN_WAIT
    assert c2s(ps, "A", CISN + 19, SISN + 21)
    assert state(ps) == TcpStateName.CLOSE_WAIT
    assert c2s(ps, "FA", CISN + 19, SISN + 21)
    assert state(ps) == TcpStateName.LAST_ACK
    assert s2c(ps, "A", SISN + 21, CISN + 20)
    assert state(ps) == TcpStateName.TIME_WAIT
    (conn,) = ps.conns("vm")
    assert conn.rule_id == "web" and conn.origin == "in"
    assert conn.packets == [5, 4]
    ps.clock.now += 46  # TIME_WAIT lasts 45 s
    assert ps.policy.firewall is not None
    assert ps.policy.firewall.expire(ps.clock.now) == 1
    assert ps.conns("vm") == []
    assert ps.drops("firewall-state-invalid") == 0


def test_return_traffic_needs_state_and_rules_decide_new(ps: PolicySwitch) -> None:
    # the VM may not open connections (no outbound rule, default drop)
    assert not s2c(ps, "S", SISN, sport=40001, dport=443)
    # a service without rule is dropped by the default rule
    assert not c2s(ps, "S", CISN, dport=22)
    assert ps.drops_by_rule("firewall-deny") == {"default": 2}
    # an unsolicited SYN-ACK from the VM is not return traffic of anything
    assert not s2c(ps, "SA", SISN, CISN + 1)
    assert ps.drops("firewall-deny") == 3


def test_flow_cache_hits_still_update_state(ps: PolicySwitch) -> None:
    handshake(ps)
    cache = ps.sw.engine.cache
    hits = cache.hits
    for i in range(5):
        assert c2s(ps, "PA", CISN + 1 + 10 * i, SISN + 1, b"0123456789")
    assert cache.hits >= hits + 4  # same flow key: decided once, hooks run per frame
    (conn,) = ps.conns("vm")
    assert conn.packets[0] == 7
    assert conn.tcp is not None and conn.tcp.peers[0].end == CISN + 51


def test_out_of_window_segments_strict(ps: PolicySwitch) -> None:
    handshake(ps)
    # far beyond what the VM advertised (its window is 65535 from SISN+1 ack CISN+1)
    assert not c2s(ps, "PA", CISN + 1 + 200_000, SISN + 1, b"x")
    # acknowledging data the VM never sent
    assert not c2s(ps, "A", CISN + 1, SISN + 1 + 100_000)
    # old data (more than a window behind) is dropped too
    assert c2s(ps, "PA", CISN + 1, SISN + 1, b"y" * 1000)
    assert not c2s(ps, "PA", (CISN + 1 - 100_000) & 0xFFFFFFFF, SISN + 1, b"z")
    assert ps.drops("firewall-state-invalid") == 3
    # in-window traffic keeps flowing and the connection is intact
    assert c2s(ps, "PA", CISN + 1001, SISN + 1, b"ok")
    assert state(ps) == TcpStateName.ESTABLISHED


def test_out_of_window_passes_when_not_strict(ps: PolicySwitch) -> None:
    handshake(ps, dport=8080)  # section 'loose'
    assert c2s(ps, "PA", CISN + 1 + 200_000, SISN + 1, b"x", dport=8080)
    (conn,) = ps.conns("vm")
    assert conn.tcp is not None and conn.tcp.oow == 1
    assert ps.drops("firewall-state-invalid") == 0


def test_window_scaling_is_honoured(ps: PolicySwitch) -> None:
    assert c2s(ps, "S", CISN, wscale=7)
    assert s2c(ps, "SA", SISN, CISN + 1, wscale=7)
    assert c2s(ps, "A", CISN + 1, SISN + 1, win=512)
    # the VM advertises 512 << 7 = 65536 bytes
    assert s2c(ps, "A", SISN + 1, CISN + 1, win=512)
    assert c2s(ps, "PA", CISN + 1 + 60_000, SISN + 1, b"x", win=512)
    assert not c2s(ps, "PA", CISN + 1 + 70_000, SISN + 1, b"x", win=512)


def test_rst_in_window_closes(ps: PolicySwitch) -> None:
    handshake(ps)
    assert c2s(ps, "R", CISN + 1)
    assert state(ps) == TcpStateName.CLOSE
    # after the reset only a new SYN may follow
    assert not s2c(ps, "PA", SISN + 1, CISN + 1, b"late")
    assert ps.drops("firewall-state-invalid") == 1


def test_rst_out_of_window_is_dropped_and_connection_survives(ps: PolicySwitch) -> None:
    handshake(ps)
    assert not c2s(ps, "R", CISN + 1 + 1_000_000)  # blind reset attempt
    assert not c2s(ps, "R", (CISN - 100_000) & 0xFFFFFFFF)
    assert state(ps) == TcpStateName.ESTABLISHED
    assert ps.drops("firewall-state-invalid") == 2
    assert c2s(ps, "PA", CISN + 1, SISN + 1, b"still here")
    # a reset from the VM's side, in window, is accepted
    assert s2c(ps, "R", SISN + 1)
    assert state(ps) == TcpStateName.CLOSE


def test_rst_answering_a_syn_must_acknowledge_it(ps: PolicySwitch) -> None:
    assert c2s(ps, "S", CISN)
    assert not s2c(ps, "RA", 0, CISN + 7)  # wrong ack: not a reset for this SYN
    assert state(ps) == TcpStateName.SYN_SENT
    assert s2c(ps, "RA", 0, CISN + 1)  # connection refused
    assert state(ps) == TcpStateName.CLOSE


def test_syn_to_a_closed_flow_is_checked_as_new(ps: PolicySwitch) -> None:
    handshake(ps)
    assert c2s(ps, "R", CISN + 1)
    assert state(ps) == TcpStateName.CLOSE
    # same 5-tuple, new connection: forgotten and re-admitted by the rule
    assert c2s(ps, "S", 777_000)
    assert state(ps) == TcpStateName.SYN_SENT
    (conn,) = ps.conns("vm")
    assert conn.tcp is not None and conn.tcp.peers[0].end == 777_001
    assert ps.policy.firewall is not None
    assert ps.policy.firewall.port("vm").conntrack.counters["reopened"] == 1  # type: ignore[union-attr]


def test_syn_in_time_wait_reopens_but_rules_are_rechecked(ps: PolicySwitch) -> None:
    handshake(ps, dport=8080)
    assert s2c(ps, "FA", SISN + 1, CISN + 1, sport=8080)
    assert c2s(ps, "FA", CISN + 1, SISN + 2, dport=8080)
    assert s2c(ps, "A", SISN + 2, CISN + 2, sport=8080)
    assert state(ps) == TcpStateName.TIME_WAIT
    # the rule admitting port 8080 goes away (a live reload): the new SYN is judged by the rules
    engine = ps.sw.engine
    data = engine.state.config.model_dump(mode="json", exclude_none=True)
    data["firewall"]["sections"][1]["rules"] = []
    engine.reload(parse_config(data))
    assert not c2s(ps, "S", 900_000, dport=8080)
    assert ps.drops_by_rule("firewall-deny") == {"default": 1}


def test_no_handshake_in_strict_mode(ps: PolicySwitch) -> None:
    # mid-stream ACK for port 80 (strict section): the rule allows, the state does not
    assert not c2s(ps, "A", CISN + 1, SISN + 1)
    assert ps.drops_by_rule("firewall-state-invalid") == {"web": 1}
    # a stray RST for an unknown connection in strict mode is dropped too
    assert not c2s(ps, "R", CISN + 1)
    assert ps.conns("vm") == []


def test_mid_stream_pickup_when_not_strict(ps: PolicySwitch) -> None:
    assert c2s(ps, "PA", CISN + 1, SISN + 1, b"hello", dport=8080)
    assert state(ps) == TcpStateName.ESTABLISHED
    assert s2c(ps, "A", SISN + 1, CISN + 6, sport=8080)
    assert c2s(ps, "PA", CISN + 6, SISN + 1, b"again", dport=8080)
    assert ps.drops("firewall-state-invalid") == 0


def test_syn_sent_times_out(ps: PolicySwitch) -> None:
    assert c2s(ps, "S", CISN)
    ps.clock.now += 119
    assert s2c(ps, "SA", SISN, CISN + 1)  # within the 120 s "first packet" timeout
    ps.clock.now += 31  # SYN_RECV ("opening") lasts 30 s
    assert not c2s(ps, "A", CISN + 1, SISN + 1)  # state gone: a bare ACK in strict mode
    assert ps.drops("firewall-state-invalid") == 1


def test_syn_sent_expired_then_syn_ack_is_not_return_traffic(ps: PolicySwitch) -> None:
    assert c2s(ps, "S", CISN)
    ps.clock.now += 121
    assert not s2c(ps, "SA", SISN, CISN + 1)
    assert ps.drops_by_rule("firewall-deny") == {"default": 1}


def test_established_idle_timeout(ps: PolicySwitch) -> None:
    handshake(ps)
    ps.clock.now += 3599  # configured tcp_established: 3600
    assert c2s(ps, "PA", CISN + 1, SISN + 1, b"a")  # refreshes
    ps.clock.now += 3599
    assert s2c(ps, "A", SISN + 1, CISN + 2)
    ps.clock.now += 3600
    assert not c2s(ps, "PA", CISN + 2, SISN + 1, b"b")  # expired; strict: no pickup
    assert ps.conns("vm") == []


def test_close_state_timeout(ps: PolicySwitch) -> None:
    handshake(ps)
    assert c2s(ps, "R", CISN + 1)
    ps.clock.now += 19
    assert ps.policy.firewall is not None
    assert ps.policy.firewall.expire(ps.clock.now) == 0
    ps.clock.now += 1  # CLOSE lasts 20 s
    assert ps.policy.firewall.expire(ps.clock.now) == 1


def test_reject_tcp_answers_with_rst(ps: PolicySwitch) -> None:
    assert not c2s(ps, "S", 4242, dport=23)
    assert ps.drops_by_rule("firewall-reject") == {"telnet": 1}
    # the engine injected the RST as if the VM had answered: it reaches the peer's port
    (data,) = ps.got("net")
    p = Ether(data)
    assert p[Ether].src == VM_MAC and p[Ether].dst == PEER_MAC
    assert p[IP].src == VM and p[IP].dst == R
    assert p[TCP].sport == 23 and p[TCP].dport == 40000
    assert p[TCP].flags == "RA" and p[TCP].ack == 4243
    # checksums as scapy computes them
    p2 = Ether(data)
    del p2[IP].chksum, p2[TCP].chksum
    assert bytes(p2) == data


def test_reject_udp_answers_with_icmp_unreachable(ps: PolicySwitch) -> None:
    frame = udp(R, VM, 5555, 9, b"discard me", src_mac=PEER_MAC, dst_mac=VM_MAC)
    ps.send("net", frame)
    assert ps.got("vm") == []
    (data,) = ps.got("net")  # the ICMP error goes back where the datagram came from
    p = Ether(data)
    assert p[IP].src == VM and p[IP].dst == R
    assert p[ICMP].type == 3 and p[ICMP].code == 13
    assert p[UDPerror].dport == 9


def test_reject_udp_v6_answers_with_icmpv6_admin_prohibited(ps: PolicySwitch) -> None:
    frame = udp("2001:db8:1::1", "2001:db8::5", 5555, 9, src_mac=PEER_MAC, dst_mac=VM_MAC)
    ps.send("net", frame)
    (data,) = ps.got("net")
    p = Ether(data)
    assert p[IPv6].dst == "2001:db8:1::1"
    assert p[ICMPv6DestUnreach].code == 1


def test_reject_never_answers_a_rst(ps: PolicySwitch) -> None:
    assert not c2s(ps, "R", 1, dport=23)
    assert ps.got("net") == []
    assert ps.drops_by_rule("firewall-reject") == {"telnet": 1}
