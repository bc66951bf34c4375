"""`vspan trace` names the ports a flood leaves out because of their VLAN.

Hyper-V's ETW trace says "dropped ... Reason: Packet does not match the packet
filter set on the destination NIC" when a vNIC is left untagged among VLAN
peers. vspan never hands such a frame to the port at all; its trace says so:
which ports a flood skipped, which VLANs they are in, and where an unknown
destination MAC was learned on another VLAN.
"""

from __future__ import annotations

from tests.pipeline.harness import make_switch
from vspan.packet import build

CFG = """
ports:
  app1: {type: memory, vlan: {mode: access, id: 10}}
  app2: {type: memory, vlan: {mode: access, id: 10}}
  guest: {type: memory}
  trunk: {type: memory, vlan: {mode: trunk, allowed: [20, 30]}}
  snf: {type: memory}
mirrors:
  m: {sources: [app1], destinations: [snf]}
"""
APP1, GUEST = "02:00:00:00:00:0b", "02:00:00:00:00:0d"


def trace_text(port: str, frame: bytes, sw_cfg: str = CFG, warmup: tuple[str, bytes] | None
               = None) -> str:
    sw = make_switch(sw_cfg)
    if warmup is not None:
        sw.send(*warmup)
    _decision, _outcome, tracer = sw.engine.trace(port, frame)
    return tracer.render()


def test_flood_names_ports_outside_the_vlan() -> None:
    arp = build.arp_request(APP1, "10.10.0.11", "10.10.0.13", pad=True)
    text = trace_text("app1", arp)
    assert "flood      to app2\n" in text, text
    assert ("flood      not to guest: not a member of VLAN 10 "
            "(member of: untagged network (VLAN 0))") in text, text
    assert "not to trunk: not a member of VLAN 10 (member of: VLAN 20, VLAN 30)" in text, text
    assert "not to snf" not in text  # a mirror destination takes no normal traffic anyway


def test_untagged_vnic_alone_in_its_network() -> None:
    arp = build.arp_request(GUEST, "10.10.0.13", "10.10.0.11", pad=True)
    text = trace_text("guest", arp)
    lines = text.splitlines()
    assert "flood      not to app1: not a member of untagged network (VLAN 0) "\
           "(member of: VLAN 10)" in lines, text
    decided = lines[:lines.index("replay     per frame (checks peeked, nothing changed):")]
    assert decided[-1] == "flood      no other port in VLAN 0: drop", text


def test_unknown_unicast_says_where_the_mac_lives() -> None:
    # guest spoke first: its MAC is learned on the untagged network, not on VLAN 10
    hello = build.arp_request(GUEST, "10.10.0.13", "10.10.0.11", pad=True)
    echo = build.icmp_echo(APP1, GUEST, "10.10.0.11", "10.10.0.13", 1, 1, b"x", pad=True)
    text = trace_text("app1", echo, warmup=("guest", hello))
    assert (f"{GUEST} unknown on VLAN 10 (learned on untagged network (VLAN 0) at port guest:"
            " another VLAN): flood") in text, text


def test_many_ports_outside_are_summed_up() -> None:
    extra = "".join(f"  o{i}: {{type: memory, vlan: {{mode: access, id: 99}}}}\n"
                    for i in range(6))
    arp = build.arp_request(APP1, "10.10.0.11", "10.10.0.13", pad=True)
    text = trace_text("app1", arp, CFG.replace("mirrors:", extra + "mirrors:"))
    assert len([ln for ln in text.splitlines() if "flood      not to " in ln]) == 5, text
    assert "not to 4 more ports outside VLAN 10" in text, text
