"""Demo 1 (field story 000): Hyper-V port mirroring, many sources to one destination.

The VMs ``columbia`` (192.168.2.122), ``atlantis`` (192.168.2.123), ``crusader``
(192.168.2.32) and ``pegasus`` (192.168.2.50, plus a second vNIC ``sniffie``)
hang off one vspan switch in the host namespace ``hyperv``. One mirror session
has columbia and atlantis as sources (both directions, Hyper-V "Source") and
sniffie as its destination (Hyper-V "Destination"). columbia and atlantis ping
crusader; tcpdump on sniffie inside pegasus sees every echo request and reply
of both.
"""

from __future__ import annotations

import re

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.lab import Vm
from vspan.demos.switch import shown
from vspan.demos.tools import ping, ping_command

VMS = {  # name -> (address, MAC)
    "columbia": ("192.168.2.122", "02:00:c0:a8:02:7a"),
    "atlantis": ("192.168.2.123", "02:00:c0:a8:02:7b"),
    "crusader": ("192.168.2.32", "02:00:c0:a8:02:20"),
    "pegasus": ("192.168.2.50", "02:00:c0:a8:02:32"),
}
SNIFFIE_MAC = "02:00:00:5a:1f:f1"
SOURCES = ("columbia", "atlantis")
PINGS = 4

CONFIG = """\
# the field story: columbia's vNIC (and now atlantis's too) set to mirroring mode
# "Source", pegasus's second vNIC "sniffie" to "Destination"
ports:
  columbia: {interface: columbia}
  atlantis: {interface: atlantis}
  crusader: {interface: crusader}
  pegasus:  {interface: pegasus}
  sniffie:  {interface: sniffie}
mirrors:
  to-sniffie:
    sources: [{port: columbia, direction: both}, {port: atlantis, direction: both}]
    destinations: [sniffie]
"""

_ICMP = re.compile(r"(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): ICMP echo (request|reply)")


def echo_lines(lines: list[str]) -> list[tuple[str, str, str]]:
    """(source, destination, request|reply) of each ICMP echo line tcpdump printed."""
    out = []
    for line in lines:
        m = _ICMP.search(line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def run(ctx: DemoContext) -> None:
    """Build, ping, show what sniffie saw, check it."""
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step("the topology: one Hyper-V-style host running a vspan switch")
    host = lab.netns("hyperv")
    vms: dict[str, Vm] = {n: lab.vm(host, n, ip, mac) for n, (ip, mac) in VMS.items()}
    lab.wire((host, "sniffie"), (vms["pegasus"].ns, "sniffie"), mac_b=SNIFFIE_MAC)
    for n, vm in vms.items():
        extra = " + a second vNIC 'sniffie' (no address)" if n == "pegasus" else ""
        say.say(f"  VM {n:9} {vm.ip:15} {vm.mac}{extra}")
    say.say("switch configuration (switch.yaml):")
    say.block(CONFIG)
    sw = ctx.switch(host, "hyperv", CONFIG)
    say.command("hyperv", "vspan up -c switch.yaml")
    say.block("(running)")

    say.step("pegasus captures on its vNIC 'sniffie' (the mirror destination)")
    say.command("pegasus", "tcpdump -i sniffie -n -e icmp")
    dump = ctx.tcpdump(vms["pegasus"].ns, "sniffie", "sniffie", "icmp")
    crusader = vms["crusader"].ip
    pings = {}
    for src in SOURCES:
        say.step(f"{src} pings crusader")
        say.command(src, ping_command(crusader, PINGS))
        pings[src] = ping(vms[src].ns, crusader, PINGS)
        say.block(pings[src].output)
    dump.stop()
    lines = dump.lines("icmp")
    say.step("what tcpdump on pegasus/sniffie printed")
    say.block(lines or ["(nothing)"])
    seen = echo_lines(lines)

    say.step("the switch's view")
    for args in (["show", "mirrors"], ["show", "counters"]):
        say.command("hyperv", shown(args))
        say.block(sw.cli(*args))
    trace = ["trace", "--in-port", "columbia", "--src-mac", vms["columbia"].mac,
             "--dst-mac", vms["crusader"].mac, "--src-ip", vms["columbia"].ip,
             "--dst-ip", crusader, "--proto", "icmp"]
    say.command("hyperv", shown(trace) + "   # one echo request to crusader")
    trace_out = sw.cli(*trace)
    say.block(trace_out)

    for src in SOURCES:
        ip, p = vms[src].ip, pings[src]
        ev.expect(p.ok, f"{src} reached crusader ({p.received}/{p.transmitted} replies)",
                  f"{src}'s ping to crusader failed ({p.received}/{p.transmitted})")
        requests = seen.count((ip, crusader, "request"))
        replies = seen.count((crusader, ip, "reply"))
        ev.expect(p.transmitted > 0 and requests == p.transmitted and replies == p.received,
                  f"sniffie saw {src}'s {requests} echo requests and {replies} replies",
                  f"sniffie saw {requests} of {src}'s {p.transmitted} echo requests and "
                  f"{replies} of its {p.received} replies")
    ev.expect("session to-sniffie: ingress copy -> sniffie" in trace_out,
              "vspan trace shows the ingress copy to sniffie",
              "vspan trace does not show the mirror copy to sniffie")

    say.explain([
        "Two VMs' vNICs are mirroring sources and pegasus's vNIC 'sniffie' the destination:",
        "tcpdump inside pegasus saw every echo request and reply of both columbia and",
        "atlantis, though none of it was addressed to pegasus. Many sources, one sniffer.",
    ])


DEMO = DemoSpec(
    name="mirror", number=1, seed="000", title="Hyper-V port mirroring",
    summary="two VMs' vNICs mirrored (Source) to a sniffer vNIC (Destination) on one host",
    tools=("ping", "tcpdump"), run=run)
