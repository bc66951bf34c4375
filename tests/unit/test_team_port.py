"""TeamPort on memory members: member choice, failover, standby, flowlets, ARP monitor."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from vspan.config.team import LoadBalancing, TeamConfig
from vspan.ports.base import Frame, Port, PortError
from vspan.ports.linkwatch import (
    IFF_LOWER_UP,
    IFF_UP,
    RTM_DELLINK,
    RTM_NEWLINK,
    LinkEvent,
    parse_link_messages,
)
from vspan.ports.memory import MemoryPort
from vspan.ports.team import TeamPort, arp_probe
from vspan.ports.teamhash import layer2, layer3_4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def mac(i: int) -> bytes:
    return bytes((2, 0, 0, 0, 0xEE, i))


class Members:
    """A member factory of memory ports, kept by interface name."""

    def __init__(self) -> None:
        self.ports: dict[str, MemoryPort] = {}

    def __call__(self, team: str, ifname: str) -> Port:
        self.ports[ifname] = MemoryPort(ifname, mac=mac(len(self.ports) + 1), vnet_hdr=True)
        return self.ports[ifname]

    def sent(self, ifname: str) -> list[bytes]:
        return self.ports[ifname].take_bytes()


def team(cfg: dict[str, object], clock: Clock | None = None) -> tuple[TeamPort, Members]:
    members = Members()
    t = TeamPort("t0", TeamConfig.model_validate(cfg), members, clock or Clock())
    t.open()
    return t, members


@pytest.fixture
def two() -> Iterator[tuple[TeamPort, Members]]:
    t, m = team({"members": ["m1", "m2"]})
    yield t, m
    t.close()


def tcp(sport: int, dst: str = "10.0.0.2") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.0.0.1", dst=dst) / TCP(sport=sport, dport=5201))


def test_each_frame_goes_to_the_member_its_hash_picks(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    frames = [tcp(40000 + i) for i in range(40)]
    assert t.send_batch([Frame(f) for f in frames]) == 40
    got = (m.sent("m1"), m.sent("m2"))
    for f in frames:
        want = layer3_4(f) % 2
        assert f in got[want] and f not in got[1 - want]
    assert got[0] and got[1]  # both members carry some


def test_a_failed_member_sheds_its_flows_to_the_survivor(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    m.ports["m2"].set_link(False)
    assert t.poll_links()
    frames = [tcp(40000 + i) for i in range(20)]
    assert t.send_batch([Frame(f) for f in frames]) == 20
    assert m.sent("m1") == frames and m.sent("m2") == []
    st = t.status()
    assert st["failovers"] == 1 and st["active"] == ["m1"]
    m2 = next(x for x in st["members"] if x["name"] == "m2")
    assert m2["state"] == "down (no carrier)" and m2["failovers"] == 1
    m.ports["m2"].set_link(True)
    t.poll_links()
    t.send_batch([Frame(f) for f in frames])
    assert m.sent("m2")  # back in use


def test_no_usable_member_counts_the_frames(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    for p in m.ports.values():
        p.set_link(False)
    t.poll_links()
    assert not t.link_up()
    assert t.send_batch([Frame(tcp(1)), Frame(tcp(2))]) == 0
    assert t.no_member_drops == 2 and t.counters.as_dict()["tx_errors"] == 2


def test_layer2_keeps_one_mac_pair_on_one_member() -> None:
    t, m = team({"members": ["m1", "m2"], "load_balancing": "layer2"})
    frames = [tcp(40000 + i) for i in range(10)]
    t.send_batch([Frame(f) for f in frames])
    want = "m1" if layer2(frames[0]) % 2 == 0 else "m2"
    assert m.sent(want) == frames
    t.close()


def test_hyperv_port_goes_by_ingress_port() -> None:
    t, m = team({"members": ["m1", "m2", "m3"], "load_balancing": "hyperv-port"})
    assert t.wants_source_port
    frames = [Frame(tcp(40000 + i), port=p) for i, p in enumerate([1, 2, 3, 4, 5, 6])]
    t.send_batch(frames)
    assert m.sent("m1") == [frames[2].data, frames[5].data]  # ports 3, 6
    assert m.sent("m2") == [frames[0].data, frames[3].data]  # ports 1, 4
    assert m.sent("m3") == [frames[1].data, frames[4].data]  # ports 2, 5
    t.close()


def test_active_standby_uses_the_primary_until_it_fails_and_takes_it_back() -> None:
    t, m = team({"members": ["m1", "m2"], "mode": "active-standby", "primary": "m2"})
    frames = [Frame(tcp(40000 + i)) for i in range(10)]
    t.send_batch(frames)
    assert len(m.sent("m2")) == 10 and m.sent("m1") == []
    # frames arriving on the standby member are dropped and counted
    m.ports["m1"].inject(tcp(7))
    m.ports["m2"].inject(tcp(8))
    assert [f.data for f in t.recv_batch()] == [tcp(8)]
    assert t.members[0].rx_inactive == 1
    m.ports["m2"].set_link(False)
    t.poll_links()
    t.send_batch(frames)
    assert len(m.sent("m1")) == 10 and m.sent("m2") == []
    assert t.status()["active"] == ["m1"] and t.failovers == 1
    m.ports["m2"].set_link(True)
    t.poll_links()  # the primary is taken back as soon as it is usable
    t.send_batch(frames)
    assert len(m.sent("m2")) == 10
    t.close()


def test_active_standby_without_primary_stays_on_the_survivor() -> None:
    t, m = team({"members": ["m1", "m2"], "mode": "active-standby"})
    m.ports["m1"].set_link(False)
    t.poll_links()
    m.ports["m1"].set_link(True)
    t.poll_links()
    t.send_batch([Frame(tcp(1))])
    assert m.sent("m2") and not m.sent("m1")
    t.close()


def test_one_member_team() -> None:
    t, m = team({"members": ["m1"]})
    m.ports["m1"].inject(tcp(1), tcp(2))
    assert len(t.recv_batch()) == 2
    assert t.send_batch([Frame(tcp(3))]) == 1 and m.sent("m1") == [tcp(3)]
    t.close()


def test_receives_from_all_members_and_taps_see_each(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    seen: list[tuple[str, bool, bytes]] = []
    t.tap = lambda member, inbound, f: seen.append((member, inbound, f.data))
    m.ports["m1"].inject(tcp(1))
    m.ports["m2"].inject(tcp(2), tcp(3))
    got = sorted(f.data for f in t.recv_batch())
    assert got == sorted([tcp(1), tcp(2), tcp(3)])
    assert sorted(seen) == sorted([("m1", True, tcp(1)), ("m2", True, tcp(2)),
                                   ("m2", True, tcp(3))])
    seen.clear()
    t.send_batch([Frame(tcp(9))])
    assert [(s[0], s[1]) for s in seen] == [("m1" if layer3_4(tcp(9)) % 2 == 0 else "m2",
                                            False)]


def test_receive_budget_is_respected(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    m.ports["m1"].inject(*[tcp(i) for i in range(10)])
    m.ports["m2"].inject(*[tcp(100 + i) for i in range(10)])
    first = t.recv_batch(8)
    assert len(first) == 8
    rest: list[Frame] = []
    for _ in range(5):
        rest += t.recv_batch(8)
    assert len(first) + len(rest) == 20


def test_dynamic_keeps_a_busy_flow_and_moves_it_after_a_pause() -> None:
    clock = Clock()
    t, m = team({"members": ["m1", "m2"], "load_balancing": "dynamic",
                 "dynamic_idle_ms": 20}, clock)
    flow_a, flow_b = tcp(1000), tcp(2000)
    t.send_batch([Frame(flow_a)])
    assert m.sent("m1") == [flow_a]  # equal loads: the first member
    t.send_batch([Frame(flow_b)])
    assert m.sent("m2") == [flow_b]  # a new flow takes the less loaded member
    # A sends a lot without pausing: it stays on m1 although m1 is now far busier
    big = flow_a + b"\0" * 9000
    for _ in range(10):
        clock.now += 0.005
        t.send_batch([Frame(big)])
    assert len(m.sent("m1")) == 10 and m.sent("m2") == []
    assert t.members[0].load > t.members[1].load
    # A pauses longer than the flowlet gap: its next burst goes to the lighter member
    clock.now += 0.03
    t.send_batch([Frame(flow_a)])
    assert m.sent("m2") == [flow_a] and m.sent("m1") == []
    assert t.flowlet_moves == 1
    t.close()


def test_dynamic_moves_flows_off_a_failed_member() -> None:
    t, m = team({"members": ["m1", "m2"], "load_balancing": "dynamic"})
    flows = [tcp(3000 + i) for i in range(8)]
    t.send_batch([Frame(f) for f in flows])
    assert m.sent("m1") and m.sent("m2")
    m.ports["m1"].set_link(False)
    t.poll_links()
    t.send_batch([Frame(f) for f in flows])
    assert m.sent("m2") == flows and m.sent("m1") == []
    t.close()


def reply(member_mac: bytes, target: str) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:99", dst=member_mac)
                 / ARP(op=2, hwsrc="02:00:00:00:00:99", psrc=target,
                       hwdst=member_mac, pdst="0.0.0.0"))


def test_arp_monitor_probes_and_takes_a_silent_member_down() -> None:
    clock = Clock()
    t, m = team({"members": ["m1", "m2"], "miimon_ms": 0,
                 "arp_monitor": {"targets": ["10.0.0.9"], "interval_ms": 100,
                                 "missed_max": 2}}, clock)
    t.tick(clock.now)
    probes = m.sent("m1")
    assert len(probes) == 1 and len(m.sent("m2")) == 1
    p = ARP(probes[0][14:])
    assert p.op == 1 and p.pdst == "10.0.0.9" and p.psrc == "0.0.0.0"
    assert probes[0][:6] == b"\xff" * 6 and probes[0][6:12] == mac(1)
    for _ in range(3):  # m1's probes are answered (the reply may come in on m2), m2's not
        clock.now += 0.1
        m.ports["m2"].inject(reply(mac(1), "10.0.0.9"))
        assert t.recv_batch() == []  # consumed: never switched
        t.tick(clock.now)
    st = t.status()
    states = {x["name"]: x["state"] for x in st["members"]}
    assert states == {"m1": "active", "m2": "down (ARP targets silent)"}
    m.sent("m1")
    m.sent("m2")
    t.send_batch([Frame(tcp(i)) for i in range(10)])
    assert len(m.sent("m1")) == 10
    # a reply from something that is not a target does not count
    m.ports["m1"].inject(reply(mac(2), "10.0.0.77"))
    assert len(t.recv_batch()) == 1
    m.ports["m1"].inject(reply(mac(2), "10.0.0.9"))
    assert t.recv_batch() == []
    assert t.members[1].usable
    t.close()


def test_arp_monitor_in_active_standby_judges_the_active_member() -> None:
    clock = Clock()
    t, m = team({"members": ["m1", "m2"], "mode": "active-standby", "primary": "m1",
                 "miimon_ms": 0, "arp_monitor": {"targets": ["10.0.0.9"], "interval_ms": 100,
                                                 "missed_max": 2}}, clock)
    for _ in range(3):  # only m1 (active) is answered; m2's probes go unanswered
        clock.now += 0.1
        m.ports["m1"].inject(reply(mac(1), "10.0.0.9"))
        t.recv_batch()
        t.tick(clock.now)
    assert [t.member_state(x) for x in t.members] == ["active", "standby"]
    for _ in range(3):  # now m1's targets fall silent: m2 takes over, with a grace period
        clock.now += 0.1
        t.tick(clock.now)
    assert [t.member_state(x) for x in t.members] == ["down (ARP targets silent)", "active"]
    for _ in range(3):  # ... which runs out without replies for m2: the team is down
        clock.now += 0.1
        t.tick(clock.now)
    assert not t.link_up() and t.failovers == 2
    m.ports["m2"].inject(reply(mac(1), "10.0.0.9"))  # m1 answered again: the primary is back
    t.recv_batch()
    assert [t.member_state(x) for x in t.members] == ["active", "down (ARP targets silent)"]
    t.close()


def test_arp_probe_with_vlan_and_source() -> None:
    f = arp_probe(mac(3), "10.0.0.50", "10.0.0.1", vlan=42)
    pkt = Ether(f)
    assert pkt.vlan == 42 and pkt[ARP].psrc == "10.0.0.50" and pkt[ARP].hwsrc == \
        "02:00:00:00:ee:03" and len(f) >= 60


def nl(mtype: int, index: int, flags: int) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF) + b"\x08\x00\x03\x00eth\x00"
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def test_netlink_link_messages_are_parsed() -> None:
    buf = nl(RTM_NEWLINK, 7, IFF_UP | IFF_LOWER_UP) + nl(RTM_NEWLINK, 8, IFF_UP) \
        + nl(RTM_DELLINK, 9, 0) + nl(3, 10, 0)
    evs = parse_link_messages(buf)
    assert evs == [LinkEvent(7, True, True), LinkEvent(8, True, False),
                   LinkEvent(9, False, False, True)]
    assert [e.usable for e in evs] == [True, False, False]
    assert parse_link_messages(buf[:-3] + b"\xff\xff\xff") == evs[:3]  # cut tail ignored
    assert parse_link_messages(b"\x01\x00") == []


def test_link_events_fail_members_over(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    t.members[1].ifindex = 42
    t._by_ifindex[42] = t.members[1]  # as an AF_PACKET member would report
    t.link_event(LinkEvent(42, True, False))
    t.send_batch([Frame(tcp(i)) for i in range(6)])
    assert len(m.sent("m1")) == 6
    t.link_event(LinkEvent(42, True, True))
    assert t.members[1].usable
    t.link_event(LinkEvent(42, False, False, deleted=True))
    t.link_event(LinkEvent(42, True, True))  # a new interface may reuse the number: not ours
    assert not t.members[1].usable and t.member_state(t.members[1]) == "down (deleted)"


def test_a_member_that_cannot_open_fails_the_team_and_closes_the_rest() -> None:
    opened: list[MemoryPort] = []

    def factory(team: str, ifname: str) -> Port:
        if ifname == "bad":
            raise PortError("interface 'bad' does not exist in this network namespace")
        p = MemoryPort(ifname)
        opened.append(p)
        return p

    t = TeamPort("t0", TeamConfig(members=("ok", "bad")), factory)
    with pytest.raises(PortError, match="team t0: interface 'bad' does not exist"):
        t.open()
    assert opened and all(p._fd < 0 for p in opened)


def test_malformed_frames_are_sent_not_crashed_on(two: tuple[TeamPort, Members]) -> None:
    t, m = two
    junk = [b"", b"\x01", b"\xff" * 13, b"\x00" * 12 + b"\x08\x00\x45", tcp(1)[:30],
            b"\x00" * 12 + b"\x86\xdd" + b"\x60" * 30]
    for policy in (LoadBalancing.LAYER2, LoadBalancing.LAYER2_3, LoadBalancing.LAYER3_4,
                   LoadBalancing.DYNAMIC):
        t.policy = policy
        assert t.send_batch([Frame(j) for j in junk]) == len(junk)
        assert len(m.sent("m1") + m.sent("m2")) == len(junk)
