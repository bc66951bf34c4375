"""Demo 2 (field story 003): vDS remote port mirroring over a mirror VLAN.

Two ESXi-style hosts, ``esx1`` and ``esx2``, each run the part of the
distributed switch dvSwitchCloud that serves its VMs (a vspan switch in the
host's namespace); their uplinks ``dvUplink1`` are joined by a trunk carrying
the DMZ VLAN 24 (port group dvPgDMZ) and the mirroring VLAN 205 (dvPgMirror).
Ports are named by their dvPort ids. The session copies source port 448 (the
F5 load balancer on dvPgDMZ, on esx1) in both directions, cut to 60 bytes
("mirrored packet length"), tagged with VLAN 205 ("VLAN encapsulation") out of
the uplink; on esx2 the VLAN 205 copies go to destination port 2258 (the
monitor VM MGTSRVR003UX). The VM 172.24.4.52 (on esx2) pings the load balancer
while another DMZ VM does too; the monitor captures with a filter on
172.24.4.52 and sees exactly its pings, 60 bytes each.
"""

from __future__ import annotations

import re

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.switch import shown
from vspan.demos.tools import ping, ping_command, tshark_fields

DMZ_VLAN, MIRROR_VLAN, LENGTH = 24, 205, 60
F5 = ("f5-lb", "172.24.4.10", "02:00:ac:18:04:0a", "448")
DMZ_WEB = ("dmz-web", "172.24.4.60", "02:00:ac:18:04:3c", "460")
VM52 = ("vm52", "172.24.4.52", "02:00:ac:18:04:34", "452")
MONITOR = ("mgtsrvr003ux", "02:00:00:00:22:58", "2258")
PINGS = 4

ESX1 = f"""\
# dvSwitchCloud on esx1; ports are named by their dvPort ids
ports:
  "{F5[3]}": {{interface: {F5[0]}, vlan: {{mode: access, id: {DMZ_VLAN}}},
           description: "F5 load balancer on dvPgDMZ"}}
  "{DMZ_WEB[3]}": {{interface: {DMZ_WEB[0]}, vlan: {{mode: access, id: {DMZ_VLAN}}},
           description: "dmz-web on dvPgDMZ"}}
  dvUplink1: {{interface: dvUplink1, vlan: {{mode: trunk, allowed: [{DMZ_VLAN}, {MIRROR_VLAN}]}},
              description: "to the physical switch: trunk allowed vlan {DMZ_VLAN},{MIRROR_VLAN}"}}
mirrors:
  f5-dmz:                               # the port mirroring session
    sources: [{{port: "{F5[3]}", direction: both}}]       # ingress and egress
    rspan: {{port: dvUplink1, vlan: {MIRROR_VLAN}}}        # VLAN encapsulation: VLAN {MIRROR_VLAN}
    mirrored_packet_length: {LENGTH}
"""

ESX2 = f"""\
# dvSwitchCloud on esx2
ports:
  "{VM52[3]}": {{interface: {VM52[0]}, vlan: {{mode: access, id: {DMZ_VLAN}}},
           description: "172.24.4.52 on dvPgDMZ"}}
  "{MONITOR[2]}": {{interface: {MONITOR[0]}, vlan: {{mode: access, id: {MIRROR_VLAN}}},
           description: "MGTSRVR003UX, network monitor, on dvPgMirror"}}
  dvUplink1: {{interface: dvUplink1, vlan: {{mode: trunk, allowed: [{DMZ_VLAN}, {MIRROR_VLAN}]}}}}
mirrors:
  f5-dmz:                               # the mirror VLAN's copies to port {MONITOR[2]}
    rspan_source: {{port: dvUplink1, vlan: {MIRROR_VLAN}}}
    destinations: ["{MONITOR[2]}"]
"""

_VLAN_LINE = re.compile(r"length (\d+): vlan (\d+)")


def run(ctx: DemoContext) -> None:
    """Two hosts, one session, a filtered capture on the monitor."""
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step("two hosts of dvSwitchCloud, their uplinks trunked "
             f"(VLAN {DMZ_VLAN} dvPgDMZ, VLAN {MIRROR_VLAN} dvPgMirror)")
    esx1, esx2 = lab.netns("esx1"), lab.netns("esx2")
    f5 = lab.vm(esx1, F5[0], F5[1], F5[2])
    dmz_web = lab.vm(esx1, DMZ_WEB[0], DMZ_WEB[1], DMZ_WEB[2])
    vm52 = lab.vm(esx2, VM52[0], VM52[1], VM52[2])
    mon_ns = lab.netns(MONITOR[0])
    lab.wire((esx2, MONITOR[0]), (mon_ns, "eth0"), mac_b=MONITOR[1])
    lab.wire((esx1, "dvUplink1"), (esx2, "dvUplink1"))
    for host, port, name, ip in (("esx1", F5[3], F5[0], F5[1]),
                                 ("esx1", DMZ_WEB[3], DMZ_WEB[0], DMZ_WEB[1]),
                                 ("esx2", VM52[3], VM52[0], VM52[1]),
                                 ("esx2", MONITOR[2], MONITOR[0], "(the mirror adapter)")):
        say.say(f"  {host}  dvPort {port:>4}  VM {name:13} {ip}")
    sw1, sw2 = ctx.switches((esx1, "esx1", ESX1), (esx2, "esx2", ESX2))

    say.step("the monitor captures on its dvPgMirror adapter; the trunk is watched too")
    say.command(MONITOR[0], "tcpdump -i eth0 -w monitor.pcap")
    monitor = ctx.tcpdump(mon_ns, "eth0", "monitor")
    trunk = ctx.tcpdump(esx2, "dvUplink1", "trunk")

    say.step(f"{vm52.ip} pings the load balancer (and dmz-web does too)")
    say.command(VM52[0], ping_command(f5.ip, PINGS))
    noise = lab.spawn(["ping", "-c", str(PINGS), "-i", "0.2", "-W", "1", f5.ip],
                      ns=dmz_web.ns)
    p52 = ping(vm52.ns, f5.ip, PINGS)
    say.block(p52.output)
    noise.wait(timeout=30)
    monitor.stop()
    trunk.stop()

    say.step(f"the monitor's capture, filtered on {vm52.ip} (not the monitor's own address)")
    flt = f"host {vm52.ip}"
    say.command(MONITOR[0], f"tcpdump -r monitor.pcap -n -e {flt}")
    lines = monitor.lines(flt)
    say.block(lines or ["(nothing)"])
    rows = tshark_fields(monitor.path, "icmp", "ip.src", "ip.dst", "icmp.type", "frame.len")
    of52 = [r for r in rows if vm52.ip in (r[0], r[1])]
    requests = [r for r in of52 if r[:3] == [vm52.ip, f5.ip, "8"]]
    replies = [r for r in of52 if r[:3] == [f5.ip, vm52.ip, "0"]]
    others = [r for r in rows if dmz_web.ip in (r[0], r[1])]
    say.say(f"(without the filter the capture also holds {len(others)} frames of "
            f"{dmz_web.ip}'s pings: port {F5[3]}'s whole traffic is mirrored)")

    say.step(f"on the trunk between the hosts: the copies in VLAN {MIRROR_VLAN}")
    say.command("esx2", f"tcpdump -r trunk.pcap -n -e vlan {MIRROR_VLAN} and host {vm52.ip}")
    trunk_lines = trunk.lines(f"vlan {MIRROR_VLAN} and host {vm52.ip}")
    say.block(trunk_lines or ["(nothing)"], limit=4)
    tagged = [(int(m.group(1)), int(m.group(2))) for m in
              (_VLAN_LINE.search(ln) for ln in trunk_lines if "ICMP" in ln) if m]

    say.step("the session on both hosts")
    say.command("esx1", "vspan show mirrors")
    say.block(sw1.cli("show", "mirrors"))
    say.command("esx2", "vspan show mirrors")
    say.block(sw2.cli("show", "mirrors"))
    trace = ["trace", "-i", "dvUplink1", "--vlan", str(DMZ_VLAN), "--src-mac", vm52.mac,
             "--dst-mac", f5.mac, "--src-ip", vm52.ip, "--dst-ip", f5.ip, "--proto", "icmp"]
    say.command("esx1", shown(trace) + f"   # {vm52.ip}'s echo request arriving at esx1")
    trace_out = sw1.cli(*trace)
    say.block(trace_out)
    m1 = sw1.mirrors()["f5-dmz"]["counters"]

    ev.expect(p52.ok, f"{vm52.ip} reached the load balancer ({p52.received}/{p52.transmitted})",
              f"{vm52.ip}'s ping to the load balancer failed ({p52.received}/"
              f"{p52.transmitted})")
    ev.expect(len(requests) == p52.transmitted > 0 and len(replies) == p52.received,
              f"the monitor (port {MONITOR[2]}) saw {vm52.ip}'s {len(requests)} echo requests "
              f"and {len(replies)} replies",
              f"the monitor saw {len(requests)} of {p52.transmitted} echo requests and "
              f"{len(replies)} of {p52.received} replies of {vm52.ip}")
    lengths = sorted({r[3] for r in of52})
    ev.expect(bool(of52) and lengths == [str(LENGTH)],
              f"every one of them {LENGTH} bytes long (mirrored packet length)",
              f"the monitor's frames of {vm52.ip} are {', '.join(lengths) or 'absent'} bytes "
              f"long, not {LENGTH}")
    ev.expect(len(tagged) == len(requests) + len(replies) > 0
              and all(t == (LENGTH + 4, MIRROR_VLAN) for t in tagged),
              f"the trunk carried them tagged VLAN {MIRROR_VLAN} ({LENGTH + 4} bytes with the tag)",
              f"the trunk did not carry the echo copies as {LENGTH + 4}-byte VLAN {MIRROR_VLAN} "
              f"frames: (length, VLAN) {tagged}")
    echo_copies = len(rows)  # every ICMP frame the monitor got, of both pinging VMs
    ev.expect(m1["truncated"] >= echo_copies > 0,
              f"esx1 cut {m1['truncated']} of its {m1['mirrored']} copies to {LENGTH} bytes "
              "(the others, ARP, were shorter)",
              f"esx1 cut {m1['truncated']} copies to {LENGTH} bytes, but the monitor got "
              f"{echo_copies} echo frames")
    ev.expect(f"RSPAN VLAN {MIRROR_VLAN} via dvUplink1 (truncate {LENGTH})" in trace_out,
              "vspan trace shows the copy to the mirror VLAN, cut to 60 bytes",
              "vspan trace does not show the RSPAN copy")

    say.explain([
        f"Port {F5[3]}'s traffic (the load balancer) was copied on esx1, cut to {LENGTH} bytes, "
        f"tagged with mirror VLAN {MIRROR_VLAN}",
        f"and carried over the trunk to esx2, where VLAN {MIRROR_VLAN} goes to port "
        f"{MONITOR[2]}: the monitor, filtering on",
        f"{vm52.ip} (another VM's address), saw that VM's pings to the load balancer, "
        f"{LENGTH} bytes each.",
    ])


DEMO = DemoSpec(
    name="rspan", number=2, seed="003", title="vDS remote mirroring over a mirror VLAN",
    summary="source port 448 on one host mirrored over VLAN 205 to monitor port 2258 on "
            "another, cut to 60 bytes",
    tools=("ping", "tcpdump", "tshark"), run=run)
