"""Demo 6 (field story 002): VLAN and ACL troubleshooting on a Hyper-V-style switch.

The switch ``docked`` has two application VMs on VLAN 10 (``app1``, ``app2``)
and a new VM, ``guest``, whose vNIC was left untagged. Two classic failures,
each shown the way the story's ETW trace shows it, then fixed with one
command:

1. guest and app1 cannot reach each other. Hyper-V's trace says "dropped ...
   Reason: Packet does not match the packet filter set on the destination
   NIC"; vspan's capture with drops, counters and trace say the guest's
   frames are in the untagged network where no other port is
   (``no-destination``), and app1's ARP floods VLAN 10 without reaching guest.
   Fix: the guest's vNIC goes on VLAN 10 (``vspan reload``).
2. guest still cannot reach app2: someone left a port ACL on app2 that allows
   only app1. Hyper-V says "Reason: Failed Security Policy"; vspan says
   ``acl-deny`` with the entry's id. Fix: ``vspan acl remove``.
"""

from __future__ import annotations

import signal
import time

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError
from vspan.demos.switch import DemoSwitch, shown
from vspan.demos.tools import PingResult, ping, ping_command, tshark_fields

VLAN = 10
VMS = {  # name -> (address, MAC)
    "app1": ("10.10.0.11", "02:00:0a:0a:00:0b"),
    "app2": ("10.10.0.12", "02:00:0a:0a:00:0c"),
    "guest": ("10.10.0.13", "02:00:0a:0a:00:0d"),
}
ACCESS = f"vlan: {{mode: access, id: {VLAN}}}"
GUEST_BROKEN = "  guest: {interface: guest}             # the new VM's vNIC: its VLAN never set"
GUEST_FIXED = f"  guest: {{interface: guest, {ACCESS}}}"

CONFIG = f"""\
ports:
  app1:  {{interface: app1, {ACCESS}}}
  app2:
    interface: app2
    vlan: {{mode: access, id: {VLAN}}}
    policy:                             # set months ago by another admin
      acls:
        - {{id: only-app1, action: allow, direction: both, remote_ip: {VMS["app1"][0]}}}
        - {{id: deny-all, action: deny, direction: both, remote_ip: any}}
{GUEST_BROKEN}
"""
PINGS = 2


class DropCapture:
    """``vspan capture PORT --drops -w FILE`` running while a failure is reproduced."""

    def __init__(self, ctx: DemoContext, sw: DemoSwitch, port: str, name: str) -> None:
        self.path = ctx.path(f"{name}.pcapng")
        self.ctx = ctx
        ctx.say.command("docked", f"vspan capture {port} --drops -w {name}.pcapng &")
        self.proc = ctx.lab.spawn(sw.capture_argv(port, "--drops", "-w", str(self.path)),
                                  stderr_pipe=True)
        deadline = time.monotonic() + 20
        while not self.path.exists():  # the switch opens the file when the capture starts
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"vspan capture {port} did not start: "
                                f"{ctx.lab.stop(self.proc).strip()}")
            time.sleep(0.05)

    def stop(self) -> list[list[str]]:
        """Stop it; the dropped frames: (summary, comment) rows as tshark decodes them."""
        time.sleep(0.3)
        said = self.ctx.lab.stop(self.proc, signal.SIGINT).strip()
        self.ctx.say.block(said)
        return tshark_fields(self.path, 'frame.comment contains "dropped"', "_ws.col.Info",
                             "frame.comment")


def _show_drops(ctx: DemoContext, name: str, rows: list[list[str]]) -> None:
    ctx.say.command("docked", f"tshark -r {name}.pcapng -Y 'frame.comment contains \"dropped\"' "
                              "-T fields -e _ws.col.Info -e frame.comment")
    ctx.say.block([f"{info}    [{comment}]" for info, comment in rows] or ["(no drops)"])


def _ping(ctx: DemoContext, src: str, dst: str) -> PingResult:
    ctx.say.command(src, ping_command(VMS[dst][0], PINGS))
    result = ping(f"{ctx.lab.tag}-{src}", VMS[dst][0], PINGS)
    ctx.say.block(result.output)
    return result


def _trace(ctx: DemoContext, sw: DemoSwitch, args: list[str], note: str) -> str:
    ctx.say.command("docked", shown(["trace", *args]) + f"   # {note}")
    out = sw.cli("trace", *args)
    ctx.say.block(out)
    return out


def _vlan_failure(ctx: DemoContext, sw: DemoSwitch) -> None:
    say, ev = ctx.say, ctx.evidence
    say.step("1. the new VM 'guest' cannot reach app1, and app1 cannot reach it")
    cap = DropCapture(ctx, sw, "guest", "vlan")
    out_ping = _ping(ctx, "guest", "app1")
    in_ping = _ping(ctx, "app1", "guest")
    rows = cap.stop()
    say.step("what the switch says")
    say.say("(Hyper-V's ETW trace would say: NBL destined to Nic (Friendly Name: guest) was "
            "dropped in switch (Friendly Name: docked), Reason Packet does not match the "
            "packet filter set on the destination NIC)")
    say.command("docked", "vspan show ports")
    say.block(sw.cli("show", "ports"))
    say.command("docked", "vspan show counters")
    say.block(sw.cli("show", "counters"))
    _show_drops(ctx, "vlan", rows)
    (g_ip, g_mac), (a_ip, a_mac) = VMS["guest"], VMS["app1"]
    guest_trace = _trace(ctx, sw, ["-i", "guest", "--proto", "arp", "--src-mac", g_mac,
                                   "--src-ip", g_ip, "--dst-ip", a_ip],
                         "guest asks who has app1's address")
    app1_trace = _trace(ctx, sw, ["-i", "app1", "--proto", "arp", "--src-mac", a_mac,
                                  "--src-ip", a_ip, "--dst-ip", g_ip],
                        "app1 asks who has guest's address")
    no_dest = sw.drops().get(("guest", "no-destination", ""), 0)
    ev.expect(out_ping.received == 0 and in_ping.received == 0,
              "guest <-> app1 failed while guest's vNIC was untagged",
              f"guest <-> app1 worked though guest was untagged ({out_ping.received}, "
              f"{in_ping.received} replies)")
    ev.expect(no_dest > 0 and any("no-destination" in r[1] for r in rows),
              f"the switch dropped guest's frames as no-destination ({no_dest}), and the "
              "capture marks each one",
              f"no no-destination drops at guest (counted {no_dest}; capture {rows})")
    ev.expect("untagged network" in guest_trace
              and "verdict: dropped: no-destination at guest" in guest_trace,
              "vspan trace: guest's frames join the untagged network, where no other port is",
              "vspan trace of guest's ARP does not show the untagged network / no-destination")
    skipped = f"not to guest: not a member of VLAN {VLAN}"
    ev.expect(skipped in app1_trace and "flood      to app2" in app1_trace,
              f"vspan trace: app1's ARP floods VLAN {VLAN} to app2 and says '{skipped}'",
              f"vspan trace of app1's ARP does not say '{skipped}'")


def _vlan_fix(ctx: DemoContext, sw: DemoSwitch) -> None:
    say, ev = ctx.say, ctx.evidence
    say.step(f"fix 1: put guest's vNIC on VLAN {VLAN} (like Set-VMNetworkAdapterVlan -Access "
             f"-VlanId {VLAN})")
    say.say("switch.yaml, changed:")
    say.block([f"- {GUEST_BROKEN.strip()}", f"+ {GUEST_FIXED.strip()}"])
    sw.write_config(CONFIG.replace(GUEST_BROKEN, GUEST_FIXED))
    say.command("docked", "vspan reload")
    out = sw.cli("reload")
    say.block(out)
    after = _ping(ctx, "guest", "app1")
    ev.expect(after.ok, f"after vspan reload guest reaches app1 ({after.received}/"
                        f"{after.transmitted})",
              f"after the reload guest still cannot reach app1 ({after.received}/"
              f"{after.transmitted}): {out.strip()}")


def _acl_failure_and_fix(ctx: DemoContext, sw: DemoSwitch) -> None:
    say, ev = ctx.say, ctx.evidence
    say.step("2. guest reaches app1 now, but app2 does not answer")
    cap = DropCapture(ctx, sw, "app2", "acl")
    failed = _ping(ctx, "guest", "app2")
    rows = cap.stop()
    say.step("what the switch says")
    say.say("(Hyper-V's ETW trace would say: NBL destined to Nic (Friendly Name: app2) was "
            "dropped in switch (Friendly Name: docked), Reason Failed Security Policy)")
    say.command("docked", "vspan show counters")
    say.block(sw.cli("show", "counters"))
    _show_drops(ctx, "acl", rows)
    (g_ip, g_mac), (b_ip, b_mac) = VMS["guest"], VMS["app2"]
    trace = _trace(ctx, sw, ["-i", "guest", "--src-mac", g_mac, "--dst-mac", b_mac,
                             "--src-ip", g_ip, "--dst-ip", b_ip, "--proto", "icmp"],
                   "guest's echo request to app2")
    say.say("the forgotten ACL, found where it lives (Get-VMNetworkAdapterAcl):")
    say.command("docked", "vspan acl show app2")
    say.block(sw.cli("acl", "show", "app2"))
    denied = sw.drops().get(("app2", "acl-deny", "deny-all"), 0)
    ev.expect(failed.received == 0, "guest -> app2 failed while the ACL was there",
              f"guest -> app2 worked despite the ACL ({failed.received} replies)")
    ev.expect(denied > 0 and any("acl-deny, rule deny-all" in r[1] for r in rows),
              f"the switch dropped them as acl-deny by entry deny-all at app2 ({denied}), "
              "and the capture marks each one",
              f"no acl-deny drops by deny-all at app2 (counted {denied}; capture {rows})")
    ev.expect("verdict: dropped: acl-deny (rule deny-all) at app2" in trace,
              "vspan trace names the ACL entry deny-all at app2",
              "vspan trace does not name the ACL entry deny-all")

    say.step("fix 2: remove the forgotten entry")
    say.command("docked", "vspan acl remove app2 deny-all")
    say.block(sw.cli("acl", "remove", "app2", "deny-all"))
    after = _ping(ctx, "guest", "app2")
    ev.expect(after.ok, f"after vspan acl remove guest reaches app2 ({after.received}/"
                        f"{after.transmitted})",
              f"after the ACL removal guest still cannot reach app2 ({after.received}/"
              f"{after.transmitted})")


def run(ctx: DemoContext) -> None:
    """Two failures, their evidence, two one-command fixes."""
    say, lab = ctx.say, ctx.lab
    say.step(f"the switch 'docked': app1 and app2 on VLAN {VLAN}, and a new VM 'guest'")
    host = lab.netns("docked")
    for name, (ip, mac) in VMS.items():
        lab.vm(host, name, ip, mac)
        say.say(f"  VM {name:6} {ip}")
    say.say("switch configuration (switch.yaml):")
    say.block(CONFIG)
    sw = ctx.switch(host, "docked", CONFIG)
    say.command("docked", "vspan up -c switch.yaml")
    _vlan_failure(ctx, sw)
    _vlan_fix(ctx, sw)
    _acl_failure_and_fix(ctx, sw)
    say.explain([
        "Where Hyper-V's trace says 'Packet does not match the packet filter set on the "
        "destination NIC',",
        "vspan's trace says 'not to guest: not a member of VLAN 10' (and guest's own frames "
        "die as no-destination);",
        "for 'Failed Security Policy' it says acl-deny with the entry's id. One command fixed "
        "each.",
    ])


DEMO = DemoSpec(
    name="troubleshoot", number=6, seed="002", title="VLAN and ACL troubleshooting",
    summary="an untagged vNIC among VLAN peers and a forgotten port ACL: drops, traces, "
            "one-command fixes",
    tools=("ping", "tshark"), run=run)
