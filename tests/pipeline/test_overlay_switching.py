"""The switch side of the overlay port, on memory ports (the overlay backend is stood in by
a memory port that records reconfigurations): VLAN tagging toward the port, split horizon,
the egress MTU check (per frame, GSO by segment size, trace verdict), live reconfiguration."""

from __future__ import annotations

from dataclasses import dataclass, field

from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.pipeline.harness import FakeClock
from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.control.assemble import build_engine
from vspan.datapath.engine import Engine
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT

CONFIG = """
ports:
  vm1: {}
  vm2: {}
  web: {vlan: {mode: access, id: 10}}
  ov:
    type: vxlan
    vxlan: {local_ip: 192.0.2.1, vnis: {0: 5000, 10: 5010}, flood: {0: [192.0.2.2]}}
"""
VM1, VM2, WEB = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:10"
REMOTE, REMOTE10 = "02:00:00:00:99:01", "02:00:00:00:99:10"
BCAST = "ff:ff:ff:ff:ff:ff"


class RecordingPort(MemoryPort):
    """A memory port that remembers the configurations handed to it while open."""

    def __init__(self, name: str) -> None:
        super().__init__(name, vnet_hdr=True)
        self.reconfigured: list[PortConfig] = []

    def reconfigure(self, cfg: PortConfig) -> None:
        self.reconfigured.append(cfg)


@dataclass
class Rig:
    engine: Engine
    ports: dict[str, RecordingPort] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)

    def send(self, port: str, *frames: bytes | Frame) -> None:
        idx = self.engine.state.by_name[port]
        self.engine.process(idx, [f if isinstance(f, Frame) else Frame(f) for f in frames])

    def got(self, port: str) -> list[Frame]:
        return self.ports[port].take()

    def drops(self, reason: str, port: str) -> int:
        st = self.engine.state
        return sum(n for (p, r, _), n in st.drops.by_key.items()
                   if r == reason and st.port_names[p] == port)


    def drain(self) -> None:
        for p in self.ports.values():
            p.take()


def make(text: str = CONFIG) -> Rig:
    ports: dict[str, RecordingPort] = {}
    opened: list[str] = []

    def factory(name: str, _cfg: PortConfig) -> Port:
        ports[name] = RecordingPort(name)
        opened.append(name)
        return ports[name]

    rig = Rig(build_engine(load_text(text), factory, clock=FakeClock()), ports, opened)
    rig.engine.open()
    return rig


def arp(src: str, vlan: int | None = None) -> bytes:
    e = Ether(src=src, dst=BCAST)
    return raw((e / Dot1Q(vlan=vlan) if vlan else e) / ARP(hwsrc=src, psrc="10.0.0.1"))


def ping(src: str, dst: str, size: int = 56, vlan: int | None = None) -> bytes:
    e = Ether(src=src, dst=dst)
    ip = IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / (b"p" * size)
    return raw((e / Dot1Q(vlan=vlan) if vlan else e) / ip)


def test_vlans_toward_the_overlay_and_split_horizon() -> None:
    rig = make()
    rig.send("vm1", arp(VM1))  # untagged network: leaves to the overlay untagged
    out = rig.got("ov")
    assert [f.data for f in out] == [arp(VM1)]
    rig.send("web", arp(WEB))  # VLAN 10: leaves to the overlay with its tag
    assert [Ether(f.data)[Dot1Q].vlan for f in rig.got("ov")] == [10]
    rig.drain()
    # from the overlay: tag 10 reaches the VLAN 10 access port untagged, never the overlay
    rig.send("ov", arp(REMOTE10, 10))
    assert [f.data for f in rig.got("web")] == [arp(REMOTE10)]
    assert rig.got("ov") == [] and rig.got("vm1") == []
    # untagged from the overlay: the untagged network, not VLAN 10
    rig.send("ov", arp(REMOTE))
    assert len(rig.got("vm1")) == 1 and rig.got("web") == [] and rig.got("ov") == []
    # a VLAN the port does not map is refused at the switch
    rig.send("ov", arp(REMOTE, 30))
    assert rig.drops("vlan-not-allowed", "ov") == 1
    # the switch learned the remote MACs on the overlay port
    fdb = rig.engine.state.fdb
    ov = rig.engine.state.by_name["ov"]
    assert fdb.lookup(10, bytes.fromhex(REMOTE10.replace(":", ""))).port == ov  # type: ignore[union-attr]


def test_mtu_is_checked_per_frame_and_explained_by_trace() -> None:
    rig = make()
    rig.send("ov", arp(REMOTE))  # learn the remote MAC behind the overlay
    rig.drain()
    ok = ping(VM1, REMOTE, 1450 - 28)  # IP packet of exactly 1450 bytes
    big = ping(VM1, REMOTE, 1451 - 28)
    rig.send("vm1", ok)
    assert len(rig.got("ov")) == 1
    rig.send("vm1", big)  # same flow, cached decision: the engine checks every frame
    assert rig.got("ov") == []
    assert rig.drops("mtu", "ov") == 1
    assert rig.engine.state.ports[rig.engine.state.by_name["ov"]].counters.dropped == 1
    _d, outcome, tracer = rig.engine.trace("vm1", big)  # one decision for the flow ...
    assert [d.reason.value for d in outcome.drops] == ["mtu"] and not outcome.outputs
    assert "has MTU 1450 (largest packet after the Ethernet header)" in tracer.render()
    assert "mtu at ov: 1451 > 1450" in tracer.render()  # ... the size checked per frame
    _d, outcome, tracer = rig.engine.trace("vm1", ok)
    assert len(outcome.outputs) == 1 and "MTU 1450" in tracer.render()
    # a GSO super-frame is judged by its segments: 1410-byte payloads fit, 1448 do not
    tcp = raw(Ether(src=VM1, dst=REMOTE) / IP(src="10.0.0.1", dst="10.0.0.2") /
              TCP(sport=1, dport=2) / (b"d" * 30000))
    fits = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1410, 34, 16)
    over = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    rig.send("vm1", Frame(tcp, fits), Frame(tcp, over))
    sent = rig.got("ov")
    assert [f.vnet for f in sent] == [fits]
    assert rig.drops("mtu", "ov") == 2
    # ports that are not the overlay are not checked unless they have an mtu
    rig.send("ov", ping(REMOTE, VM1, 3000))
    assert len(rig.got("vm1")) == 1


def test_generic_mtu_setting_of_any_port() -> None:
    rig = make(CONFIG.replace("vm2: {}", "vm2: {mtu: 1000}"))
    rig.send("vm2", arp(VM2))
    rig.drain()
    rig.send("vm1", ping(VM1, VM2, 1000 - 28))
    rig.send("vm1", ping(VM1, VM2, 1001 - 28))
    assert len(rig.got("vm2")) == 1 and rig.drops("mtu", "vm2") == 1


def test_overlay_changes_reconfigure_the_open_backend() -> None:
    rig = make()
    backend = rig.ports["ov"]
    rig.send("ov", arp(REMOTE))
    new = load_text(CONFIG.replace("flood: {0: [192.0.2.2]}", "flood: {0: [192.0.2.3]}"))
    changes = rig.engine.reload(new)
    assert changes.ports_changed == ("ov",) and not changes.ports_reopened
    assert rig.ports["ov"] is backend and rig.opened.count("ov") == 1
    assert [c.vxlan.flood for c in backend.reconfigured if c.vxlan] == [{0: ("192.0.2.3",)}]
    assert len(rig.engine.state.fdb) == 1  # flood lists do not flush what the switch learned
    # a VLAN leaves the overlay: its MACs on the port are forgotten, the port leaves the VLAN
    rig.engine.reload(load_text(CONFIG.replace("vnis: {0: 5000, 10: 5010}", "vnis: {0: 5000}")))
    assert len(rig.engine.state.fdb) == 0
    rig.send("web", arp(WEB))
    assert rig.got("ov") == [] and rig.drops("no-destination", "web") == 1
    # a new local address reopens the port
    changes = rig.engine.reload(load_text(CONFIG.replace("192.0.2.1", "192.0.2.9")))
    assert changes.ports_reopened == ("ov",) and rig.opened.count("ov") == 2
