"""Private VLANs on memory ports: the full reachability matrix (unicast, broadcast, unknown
unicast) on one switch and across a trunk between two, shared MAC learning, the drop
reasons, the trace, cache invalidation, and hostile tags from an isolated port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.pipeline.harness import Switch, make_switch
from vspan.config.load import load_text

BCAST = "ff:ff:ff:ff:ff:ff"
UNKNOWN = "02:00:00:00:99:99"


@dataclass(frozen=True)
class Role:
    """A PVLAN port's mode and VLAN, as the test's own oracle sees it."""

    mode: str
    vid: int


# one domain: primary 200, isolated 201, communities 202 and 203
ROLES = {
    "p": Role("promiscuous", 200),
    "i1": Role("isolated", 201),
    "i2": Role("isolated", 201),
    "c1": Role("community", 202),
    "c2": Role("community", 202),
    "d1": Role("community", 203),
}


def reachable(src: str, dst: str) -> bool:
    """The field notes' table: promiscuous talks to all; a community to itself and the
    promiscuous; isolated only to the promiscuous."""
    a, b = ROLES[src], ROLES[dst]
    if "promiscuous" in (a.mode, b.mode):
        return True
    return a.mode == b.mode == "community" and a.vid == b.vid


def pvlan_ports(names: list[str], suffix: str = "") -> str:
    lines = []
    for n in names:
        r = ROLES[n]
        sec = "" if r.mode == "promiscuous" else f", secondary: {r.vid}"
        lines.append(f"  {n}{suffix}: {{type: memory, pvlan: {{primary: 200, mode: {r.mode}"
                     f"{sec}}}}}")
    return "\n".join(lines)


TRUNK = "  t: {type: memory, vlan: {mode: trunk, allowed: [200-203]}}\n"
ONE = "ports:\n" + pvlan_ports(list(ROLES)) + "\n" + TRUNK


def mac(name: str) -> str:
    """Each port's VM MAC."""
    return f"02:00:00:00:01:{list(ROLES).index(name) + 1:02x}"


def ping(src: str, dst_mac: str) -> bytes:
    return bytes(Ether(src=mac(src), dst=dst_mac) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


def arp(src: str) -> bytes:
    return bytes(Ether(src=mac(src), dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(ONE)
    yield s
    s.engine.close()


def pvlan_drops(s: Switch) -> dict[str, int]:
    return {r: s.drops(r) for r in ("pvlan-isolated", "pvlan-community")}


def drain(s: Switch) -> dict[str, list[bytes]]:
    return {n: s.got(n) for n in s.ports}


def learn_all(s: Switch) -> None:
    for n in ROLES:
        s.send(n, ping(n, UNKNOWN))
    drain(s)


PAIRS = [(a, b) for a in ROLES for b in ROLES if a != b]


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_known_unicast_matrix(sw: Switch, src: str, dst: str) -> None:
    learn_all(sw)
    before = pvlan_drops(sw)
    frame = ping(src, mac(dst))
    for _ in range(3):  # the first decides, the others replay the cached decision
        sw.send(src, frame)
    got = drain(sw)
    assert got[dst] == ([frame] * 3 if reachable(src, dst) else [])
    assert all(got[n] == [] for n in got if n != dst), "a known unicast went elsewhere"
    grown = {r: n - before[r] for r, n in pvlan_drops(sw).items() if n != before[r]}
    if reachable(src, dst):
        assert grown == {}
    else:
        isolated = "isolated" in (ROLES[src].mode, ROLES[dst].mode)
        assert grown == {"pvlan-isolated" if isolated else "pvlan-community": 3}
    assert sw.engine.cache.hits >= 2


@pytest.mark.parametrize("kind", ["broadcast", "unknown-unicast"])
@pytest.mark.parametrize("src", list(ROLES))
def test_flood_matrix(sw: Switch, src: str, kind: str) -> None:
    learn_all(sw)
    frame = arp(src) if kind == "broadcast" else ping(src, UNKNOWN)
    sw.send(src, frame, frame)
    got = drain(sw)
    want = {n for n in ROLES if n != src and reachable(src, n)} | {"t"}
    assert {n for n, fs in got.items() if fs} == want
    tag = ROLES[src].vid
    for n in want - {"t"}:
        assert got[n] == [frame, frame]  # untagged to a PVLAN port
    trunk = [Ether(f) for f in got["t"]]
    assert len(trunk) == 2 and all(f[Dot1Q].vlan == tag for f in trunk), \
        "the trunk carries the frame on the sender's PVLAN VID"


def test_mac_learned_in_a_secondary_is_in_the_primary_table(sw: Switch) -> None:
    sw.send("i1", ping("i1", UNKNOWN))
    fdb = sw.engine.state.fdb
    assert fdb.lookup(200, bytes.fromhex(mac("i1").replace(":", ""))) is not None
    assert fdb.lookup(201, bytes.fromhex(mac("i1").replace(":", ""))) is None
    drain(sw)
    sw.send("p", ping("p", mac("i1")))  # the promiscuous port's lookup finds it: no flood
    got = drain(sw)
    assert len(got["i1"]) == 1 and all(got[n] == [] for n in got if n != "i1")


@pytest.mark.parametrize("vid", [200, 201, 202, 203, 10])
def test_isolated_port_sending_tagged_frames_reaches_nobody(sw: Switch, vid: int) -> None:
    """Hostile: an isolated VM tags its frames with the primary's or a community's VID (or
    any other) to hop out of isolation. A PVLAN port is untagged on the wire: dropped."""
    learn_all(sw)
    for dst in (BCAST, mac("c1"), mac("i2"), mac("p")):
        f = bytes(Ether(src=mac("i1"), dst=dst) / Dot1Q(vlan=vid) / IP() / ICMP())
        sw.send("i1", f)
        # double tag: outer priority tag hiding the hop
        f2 = bytes(Ether(src=mac("i1"), dst=dst) / Dot1Q(vlan=0) / Dot1Q(vlan=vid) / IP())
        sw.send("i1", f2)
    got = drain(sw)
    assert all(fs == [] for fs in got.values())
    assert sw.drops("vlan-not-allowed") == 4 and sw.drops("vlan-inner-tag") == 4


def test_trace_names_primary_secondary_and_mode(sw: Switch) -> None:
    learn_all(sw)
    _d, outcome, tracer = sw.engine.trace("i1", ping("i1", mac("i2")))
    text = tracer.render()
    assert "port i1 is isolated in VLAN 201 of primary 200" in text
    assert "isolated VLAN 201 of primary 200 -> port i2 (isolated in VLAN 201 of primary 200)" \
        in text and "drop (pvlan-isolated)" in text
    assert [d.reason.value for d in outcome.drops] == ["pvlan-isolated"]
    assert not outcome.outputs
    _d, outcome, tracer = sw.engine.trace("c1", ping("c1", mac("c2")))
    assert [sw.engine.state.port_names[p] for p, _ in outcome.outputs] == ["c2"]
    assert "same community" in tracer.render()


@pytest.mark.parametrize("src", list(ROLES))
@pytest.mark.parametrize("kind", ["broadcast", "unknown"])
def test_flood_trace_names_the_ports_left_out_and_why(sw: Switch, src: str, kind: str) -> None:
    """A flood's trace says where it goes and, by the PVLAN rule, which members of the
    frame's VLAN it leaves out and why; both agree with what the switch then does."""
    frame = arp(src) if kind == "broadcast" else ping(src, UNKNOWN)
    _d, outcome, tracer = sw.engine.trace(src, frame)
    names = sw.engine.state.port_names
    floods = [n for n in tracer.root.children if n.stage == "flood"]
    reached = floods[0].data["ports"]
    assert floods[0].message == "to " + ", ".join(reached)
    assert sorted(reached) == sorted(names[p] for p, _ in outcome.outputs)
    assert set(reached) == {d for d in ROLES if d != src and reachable(src, d)} | {"t"}
    left = {p: (n.data["reason"], n.data["why"]) for n in floods[1:] if "reason" in n.data
            for p in n.data["ports"]}
    assert set(left) == {d for d in ROLES if d != src and not reachable(src, d)}
    for dst, (reason, why) in left.items():
        isolated = "isolated" in (ROLES[src].mode, ROLES[dst].mode)
        assert reason == ("pvlan-isolated" if isolated else "pvlan-community")
        assert why in tracer.render()
        line = next(n.message for n in floods if dst in n.data.get("ports", ()))
        assert f"{dst} ({ROLES[dst].mode} VLAN {ROLES[dst].vid})" in line
        assert f"the frame is in {ROLES[src].mode} VLAN {ROLES[src].vid} of primary 200" in line
    assert {names[d.port]: d.reason.value for d in outcome.drops} == {
        p: r for p, (r, _) in left.items()}


def test_reload_invalidates_cached_pvlan_decisions(sw: Switch) -> None:
    learn_all(sw)
    frame = ping("c1", mac("d1"))
    sw.send("c1", frame)
    assert drain(sw)["d1"] == []
    # d1 joins community 202: the cached drop must be forgotten
    text = ONE.replace("d1: {type: memory, pvlan: {primary: 200, mode: community, "
                       "secondary: 203}}", "d1: {type: memory, pvlan: {primary: 200, "
                       "mode: community, secondary: 202}}")
    assert text != ONE
    sw.engine.reload(load_text(text))
    sw.send("d1", ping("d1", UNKNOWN))  # relearn (its port changed)
    drain(sw)
    sw.send("c1", frame)
    assert drain(sw)["d1"] == [frame]


# --- two switches joined by a trunk -------------------------------------------------------

LEFT = ["p", "i1", "c1", "d1"]
RIGHT = ["i2", "c2"]


@dataclass
class Pair:
    """Two switches whose trunks ``t`` are wired together (frames moved by hand)."""

    a: Switch
    b: Switch

    def pump(self) -> dict[str, list[bytes]]:
        """Carry trunk frames across until quiet; what every PVLAN port got."""
        got: dict[str, list[bytes]] = {n: [] for n in ROLES}
        for _ in range(10):
            moved = False
            for here, there in ((self.a, self.b), (self.b, self.a)):
                for n, fs in drain(here).items():
                    if n == "t":
                        if fs:
                            moved = True
                            there.send("t", *fs)
                    else:
                        got[n] += fs
            if not moved:
                return got
        raise AssertionError("frames loop between the switches")

    def side(self, port: str) -> Switch:
        return self.a if port in LEFT else self.b


@pytest.fixture
def pair() -> Iterator[Pair]:
    a = make_switch("ports:\n" + pvlan_ports(LEFT) + "\n" + TRUNK)
    b = make_switch("ports:\n" + pvlan_ports(RIGHT) + "\n" + TRUNK)
    yield Pair(a, b)
    a.engine.close()
    b.engine.close()


def learn_pair(pr: Pair) -> None:
    for n in ROLES:
        pr.side(n).send(n, ping(n, UNKNOWN))
    pr.pump()


PAIR_PAIRS = [(a, b) for a in ROLES for b in ROLES if a != b and (a in LEFT) != (b in LEFT)]


@pytest.mark.parametrize(("src", "dst"), PAIR_PAIRS, ids=[f"{a}->{b}" for a, b in PAIR_PAIRS])
def test_across_trunk_unicast_matrix(pair: Pair, src: str, dst: str) -> None:
    learn_pair(pair)
    frame = ping(src, mac(dst))
    pair.side(src).send(src, frame)
    got = pair.pump()
    assert got[dst] == ([frame] if reachable(src, dst) else [])
    assert all(got[n] == [] for n in got if n != dst)


@pytest.mark.parametrize("kind", ["broadcast", "unknown-unicast"])
@pytest.mark.parametrize("src", list(ROLES))
def test_across_trunk_flood_matrix(pair: Pair, src: str, kind: str) -> None:
    learn_pair(pair)
    frame = arp(src) if kind == "broadcast" else ping(src, UNKNOWN)
    pair.side(src).send(src, frame)
    got = pair.pump()
    want = {n for n in ROLES if n != src and reachable(src, n)}
    assert {n for n, fs in got.items() if fs} == want
    assert all(got[n] == [frame] for n in want)


def test_isolated_drop_happens_on_the_far_switch(pair: Pair) -> None:
    learn_pair(pair)
    a0, b0 = pair.a.drops("pvlan-isolated"), pair.b.drops("pvlan-isolated")
    pair.a.send("i1", ping("i1", mac("i2")))
    got = pair.pump()
    assert got["i2"] == []
    assert pair.b.drops("pvlan-isolated") == b0 + 1  # carried on VID 201, refused at i2
    assert pair.a.drops("pvlan-isolated") == a0



def test_a_vid_joining_a_domain_forgets_its_table_and_cached_decisions() -> None:
    """VID 205 is a plain VLAN between two trunks until the promiscuous port lists it as a
    secondary behind a trunk: its MACs move to the primary's table, so the cached unicast
    between the trunks (which read neither the promiscuous port nor its table) must go."""
    text = """ports:
  p: {type: memory, pvlan: {primary: 200, mode: promiscuous}}
  t1: {type: memory, vlan: {mode: trunk, allowed: [200, 205]}}
  t2: {type: memory, vlan: {mode: trunk, allowed: [200, 205]}}
"""
    s = make_switch(text)
    try:
        x, y = "02:00:00:00:05:01", "02:00:00:00:05:02"

        def tagged(src: str, dst: str) -> bytes:
            return bytes(Ether(src=src, dst=dst) / Dot1Q(vlan=205) / IP() / ICMP())

        s.send("t2", tagged(x, y))
        s.send("t1", tagged(y, x), tagged(y, x))  # known unicast, then from the cache
        got = drain(s)
        assert len(got["t2"]) == 2 and len(got["t1"]) == 1 and got["p"] == []
        s.engine.reload(load_text(text.replace("promiscuous}", "promiscuous, "
                                               "secondaries: [205]}")))
        assert s.engine.state.fdb.lookup(205, bytes.fromhex(x.replace(":", ""))) is None
        s.send("t1", tagged(y, x))  # x unknown in the primary's table: flood, p included
        got = drain(s)
        assert len(got["t2"]) == 1 and len(got["p"]) == 1 and Dot1Q not in Ether(got["p"][0])
    finally:
        s.engine.close()
