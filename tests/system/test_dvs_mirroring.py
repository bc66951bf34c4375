"""Cross-host mirroring of a distributed switch, with each host's switch compiled as its
agent would and the overlay on real VXLAN sockets (tests/helpers/dvscluster.py).

Every destination kind with sources on other hosts: a local port on another host
(RSPAN over the overlay on the session's own mirror VLAN/VNI, flooded only to the
destination's host, the copy as seen there), an RSPAN uplink on another host (the
same bytes a local RSPAN session would put on the wire), ERSPAN (sent by every host
with sources). Direction, filter, sampling and truncation keep their meaning;
counters add up over hosts; a copy never reaches a host that is not a destination.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from tests.helpers.dvscluster import Cluster, cluster
from tests.helpers.netns import requires_root
from vspan.control.dvs.mirrorplan import summed_counters
from vspan.mirror.encap import rspan_copy
from vspan.ports.vxlan import VxlanPort

pytestmark = [pytest.mark.system, requires_root]

A, B, T, C, SNF = ("02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:01:02",
                   "02:00:00:00:03:01", "02:00:00:00:03:09")
BCAST = "ff:ff:ff:ff:ff:ff"

DVS = """\
switch: {name: mir}
hosts: {h1: {}, h2: {}, h3: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
ports:
  a: {type: memory, host: h1, port_group: web}
  t: {type: memory, host: h1, vlan: {mode: trunk, allowed: [10, 20]}}
  b: {type: memory, host: h2, port_group: web}
  c: {type: memory, host: h3, port_group: web}
  snf: {type: memory, host: h3}
  snf2: {type: memory, host: h3}
  up: {type: memory, host: h3, vlan: {mode: trunk, allowed: [300]}}
mirrors:
  to-port:
    sources: [{port: a, direction: ingress}, {port: t, direction: both}, c]
    destinations: [snf]
  cut:
    sources: [b]
    destinations: [snf2]
    mirrored_packet_length: 64
    sampling_rate: 2
    filter: udp
  to-uplink:
    sources: [b]
    rspan: {port: up, vlan: 300, keep_original_tag: true}
  to-erspan:
    sources: [a, b]
    erspan: {remote_ip: 127.0.0.9, session_id: 77}
"""


def udp(src: str, dst: str, sport: int, size: int = 0, vlan: int | None = None) -> bytes:
    eth = Ether(src=src, dst=dst)
    pkt = (eth / Dot1Q(vlan=vlan) if vlan is not None else eth) / IP(
        src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport, dport=7) / (b"x" * size)
    return raw(pkt)


@pytest.fixture
def cl() -> Iterator[Cluster]:
    with cluster(DVS) as c:
        yield c


def test_each_host_runs_only_its_parts_and_the_mirror_vlan_floods_to_receivers(
        cl: Cluster) -> None:
    vlan = cl.dvs.mirrors["to-port"].overlay_vlan
    assert vlan is not None and 4000 <= vlan <= 4094
    parts = {h: sorted(ch.plan.mirror_parts) for h, ch in cl.hosts.items()}
    assert parts["h1"] == ["to-erspan", "to-port.tx"]
    assert parts["h2"] == ["cut.tx", "to-erspan", "to-uplink.tx"]
    assert parts["h3"] == ["cut.rx", "to-port", "to-port.rx", "to-uplink.rx"]
    ov1 = cl.hosts["h1"].plan.config.ports["overlay"].vxlan
    assert ov1 is not None
    assert ov1.flood[vlan] == ("127.0.0.3",) and vlan in ov1.mirror_vlans
    assert ov1.vnis[vlan] == 10000 + vlan
    ov2 = cl.hosts["h2"].plan.config.ports["overlay"].vxlan
    assert ov2 is not None and vlan not in ov2.vnis  # h2 neither sends nor gets to-port


def test_copies_reach_a_port_on_another_host_as_seen_and_nowhere_else(cl: Cluster) -> None:
    h2_overlay = cl.hosts["h2"].engine.backends[
        cl.hosts["h2"].engine.state.by_name["overlay"]]
    before = h2_overlay.counters.rx_frames
    untagged = udp(A, B, 1000, 30)
    cl.send("a", untagged)  # a -> b over the overlay; a's ingress is copied
    tagged = udp(T, "02:00:00:00:77:77", 1001, 30, vlan=20)  # VLAN 20 lives on h1 only
    cl.send("t", tagged)
    cl.pump(lambda: cl.delivered("snf") >= 3)
    got = [f.data for f in cl.got("snf")]
    # a's frame as a sent it (copied on h1) and a tagged frame with its tag; b's MAC was
    # unknown, so a's frame was also flooded to h3, where it left c (a source too): that
    # egress copy is made on h3 -- one copy per host, as two switches' SPAN ports give
    assert sorted(got) == sorted([untagged, tagged, untagged])
    assert [f.data for f in cl.got("b")] == [untagged]  # the data frame itself, once
    cl.pump()
    # the flooded VLAN-20 frame never left h1; the copies went to h3 only
    assert h2_overlay.counters.rx_frames - before == 1  # just the a -> b data frame
    # direction: frames *to* a are not copied (a is an ingress source)
    cl.send("b", udp(B, A, 1002, 10))
    cl.pump()
    assert cl.got("a") and not cl.got("snf")
    tx = cl.mirror("h1", "to-port.tx")
    rx = cl.mirror("h3", "to-port.rx")
    assert tx["mirrored"] == 2 and rx["mirrored"] == 2 and rx["offered"] == 2
    # a source on the destination's own host is copied locally
    local = udp(C, BCAST, 1003, 10)
    cl.send("c", local)
    cl.pump(lambda: cl.delivered("snf") >= 2)
    cl.pump()
    got = [f.data for f in cl.got("snf")]
    # c's broadcast is copied on h3 (c's ingress) and, flooded over the overlay, on h1 as
    # it leaves the trunk t tagged with VLAN 10 (t's egress): both copies, each once
    assert sorted(got) == sorted([local, udp(C, BCAST, 1003, 10, vlan=10)])
    total = summed_counters({
        h: {role: cl.mirror(h, part) for part, (s, role) in ch.plan.mirror_parts.items()
            if s == "to-port"} for h, ch in cl.hosts.items()})
    assert total["mirrored"] == 5 and total["overlay_sent"] == 3
    assert total["overlay_received"] == 3 and total["dropped"] == 0


def test_filter_sampling_and_truncation_apply_where_the_copy_is_made(cl: Cluster) -> None:
    frames = [udp(B, A, 2000 + i, 200) for i in range(10)]
    cl.send("b", *frames)
    cl.pump(lambda: cl.delivered("snf2") >= 5)
    cl.pump()
    got = [f.data for f in cl.got("snf2")]
    assert got == [f[:64] for f in frames[1::2]]  # 1 in 2, cut to 64 bytes
    tx = cl.mirror("h2", "cut.tx")
    assert (tx["offered"], tx["sampled_out"], tx["truncated"]) == (10, 5, 5)
    # the filter: ARP is not udp, never offered
    arp = raw(Ether(src=B, dst=BCAST, type=0x0806) / (b"\x00" * 28))
    cl.send("b", arp)
    cl.pump()
    assert not cl.got("snf2") and cl.mirror("h2", "cut.tx")["offered"] == 10


def test_rspan_uplink_on_another_host_carries_what_a_local_session_would(
        cl: Cluster) -> None:
    frame = udp(B, A, 3000, 40)
    cl.send("b", frame)
    cl.pump(lambda: cl.delivered("up") >= 1)
    out = [f.data for f in cl.got("up")]
    # b is an access port of VLAN 10: keep_original_tag keeps VLAN 10 inside VLAN 300
    assert out == [rspan_copy(frame, 300, True, original_vlan=10)]
    pkt = Ether(out[0])
    assert pkt[Dot1Q].vlan == 300 and pkt[Dot1Q].payload.vlan == 10
    assert cl.mirror("h3", "to-uplink.rx")["mirrored"] == 1


def test_erspan_is_sent_by_every_host_with_sources() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    rx.bind(("127.0.0.9", 0))
    rx.settimeout(0.2)
    try:
        with cluster(DVS) as cl:
            fa, fb = udp(A, B, 4000, 10), udp(B, A, 4001, 10)
            cl.send("b", fb)  # only h2's copy of it can exist: a is an ingress source
            cl.pump()
            cl.send("a", fa)
            cl.pump()
            inner = []
            for _ in range(20):
                try:
                    data = rx.recv(65535)
                except TimeoutError:
                    break
                if data[9] == 47 and data[16:20] == socket.inet_aton("127.0.0.9"):
                    inner.append(data)
            assert any(fb in d for d in inner)  # sent by h2 (b's ingress)
            assert any(fa in d for d in inner)  # sent by h1 (a's ingress)
            assert cl.mirror("h1", "to-erspan")["encap_sent"] >= 1
            assert cl.mirror("h2", "to-erspan")["encap_sent"] >= 1
    finally:
        rx.close()


def test_a_mirror_vni_from_a_peer_is_dropped_by_a_host_that_does_not_receive_it(
        cl: Cluster) -> None:
    from vspan.packet.vxlan import vxlan_header

    vlan = cl.dvs.mirrors["to-port"].overlay_vlan
    assert vlan is not None
    h2 = cl.hosts["h2"]
    ov = h2.engine.backends[h2.engine.state.by_name["overlay"]]
    assert isinstance(ov, VxlanPort)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))  # an accepted VTEP (h1's address) sending on the wrong VNI
    try:
        s.sendto(vxlan_header(10000 + vlan) + udp(A, B, 5000),
                 ("127.0.0.2", cl.dvs.switch.vxlan_port))
        cl.pump(lambda: ov.rx_drops.get("unknown-vni", 0) >= 1)
    finally:
        s.close()
    assert not cl.got("b")
