"""Demo 5 (field story 002, part 4): LBFO, a NIC team captured at its NICs and at itself.

The host ``hv1`` runs a vspan switch whose uplink is a two-member team
``lbfo`` (the LBFO team adapter, "tNIC") over ``pnic1`` and ``pnic2`` (the
physical NICs, "pNICs"); the VM ``contoso01`` is on the switch. The other end
of the cables, ``tor`` (the top-of-rack switch), is another vspan switch with
its own team ``po1`` over ``eth1`` and ``eth2``; the file server ``fs01``
(TCP port 445) is behind it. No bonding, team or bridge kernel device is
involved.

As in the story, a psping to port 445 (a small Python connect loop) is
captured at the pNICs and at the tNIC: every packet shows up twice, once at
the member it crossed and once at the team, and tshark flags the second copies
as retransmissions and duplicate ACKs. ``vspan flows`` counts them as capture
duplicates (no retransmissions), and ``vspan dedup`` writes the capture with
one copy of each. Then an iperf3 transfer runs over the team, the busier pNIC
is set down in the middle of it, and the transfer goes on over the other.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError
from vspan.demos.lab import PYTHON, Lab, run
from vspan.demos.switch import DemoSwitch, shown, vspan_inline
from vspan.demos.tools import python, read_until, tshark_fields, wait_listening

CLIENT = ("contoso01", "10.40.0.1", "02:00:0a:28:00:01")
SERVER = ("fs01", "10.40.0.2", "02:00:0a:28:00:02")
TEAM, MEMBERS = "lbfo", ("pnic1", "pnic2")
FAR_TEAM, FAR_MEMBERS = "po1", ("eth1", "eth2")
POINTS = (f"{TEAM}:*", TEAM)  # what the story captured: every pNIC, and the tNIC
SMB = 445
CONNECTS = 3
STREAMS, TRANSFER_S, FAIL_AT_S, INTERVAL_S = 8, 4, 2.0, 0.5

HV1 = f"""\
ports:
  {CLIENT[0]}: {{interface: {CLIENT[0]}, description: "the VM's vNIC"}}
  {TEAM}:                                 # the LBFO team adapter (tNIC)
    type: team
    team: {{members: [{", ".join(MEMBERS)}], mode: switch-independent, load_balancing: layer3+4}}
"""
TOR = f"""\
ports:
  {SERVER[0]}: {{interface: {SERVER[0]}, description: "the file server"}}
  {FAR_TEAM}: {{type: team, team: {{members: [{", ".join(FAR_MEMBERS)}]}}}}
"""

SERVE = (  # fs01's port 445: accept, wait until the client closes, close
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.recv(1)\n"
    "    c.close()\n"
)

PSPING = (  # psping -n N host:port: N timed TCP connects
    "import socket, sys, time\n"
    "host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "print(f'TCP connect to {host}:{port}:')\n"
    "print(f'{n} iterations')\n"
    "times = []\n"
    "for i in range(n):\n"
    "    t0 = time.perf_counter()\n"
    "    c = socket.create_connection((host, port), 5)\n"
    "    times.append((time.perf_counter() - t0) * 1000)\n"
    "    src = c.getsockname()\n"
    "    print(f'Connecting to {host}:{port} (from {src[0]}:{src[1]}): {times[-1]:.2f}ms')\n"
    "    c.close()\n"
    "    time.sleep(0.2)\n"
    "print(f'  Sent = {n}, Received = {len(times)}, Lost = 0 (0% loss),')\n"
    "print(f'  Minimum = {min(times):.2f}ms, Maximum = {max(times):.2f}ms, '\n"
    "      f'Average = {sum(times) / n:.2f}ms')\n"
)

# what tshark's TCP analysis says about a frame (the flags Wireshark colours black)
ANALYSIS = ("tcp.analysis.retransmission", "tcp.analysis.duplicate_ack",
            "tcp.analysis.keep_alive", "tcp.analysis.spurious_retransmission",
            "tcp.analysis.out_of_order")


@dataclass(frozen=True)
class Hosts:
    """The two switches and the VMs' namespaces."""

    hv1: DemoSwitch
    tor: DemoSwitch
    hv1_ns: str
    client_ns: str
    server_ns: str


def _topology(ctx: DemoContext) -> Hosts:
    say, lab = ctx.say, ctx.lab
    say.step(f"host hv1: VM {CLIENT[0]} on a vspan switch whose uplink is the team {TEAM} of "
             "two NICs")
    hv1, tor = lab.netns("hv1"), lab.netns("tor")
    client = lab.vm(hv1, *CLIENT)
    server = lab.vm(tor, *SERVER)
    cables = list(zip(MEMBERS, FAR_MEMBERS, strict=True))
    for mine, far in cables:
        lab.wire((hv1, mine), (tor, far))
    say.say(f"  hv1: VM {CLIENT[0]} {CLIENT[1]}; team {TEAM} (the tNIC) over "
            f"{' and '.join(MEMBERS)} (the pNICs)")
    say.say(f"  tor: the switch at the other end of the cables, its own team {FAR_TEAM} over "
            f"{' and '.join(FAR_MEMBERS)}; file server {SERVER[0]} {SERVER[1]}")
    say.say("  cables: " + ", ".join(f"hv1 {a} -- tor {b}" for a, b in cables))
    sw_hv1, sw_tor = ctx.switches((hv1, "hv1", HV1), (tor, "tor", TOR))
    _wait_members(sw_hv1, TEAM, "active")
    _wait_members(sw_tor, FAR_TEAM, "active")
    return Hosts(sw_hv1, sw_tor, hv1, client.ns, server.ns)


def _team(sw: DemoSwitch, name: str) -> dict[str, Any]:
    """The team object of port ``name`` in ``vspan show ports --json``."""
    for row in sw.show("ports"):
        if row["name"] == name and row.get("team"):
            team: dict[str, Any] = row["team"]
            return team
    raise DemoError(f"switch {sw.name} has no team port {name}")


def _members(sw: DemoSwitch, name: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in _team(sw, name)["members"]}


def _wait_members(sw: DemoSwitch, team: str, state: str, only: str | None = None,
                  timeout: float = 15.0) -> None:
    """Wait until the members of ``team`` (or member ``only``) are in ``state`` (a prefix)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {n: m["state"] for n, m in _members(sw, team).items()
                  if only is None or n == only}
        if all(s.startswith(state) for s in states.values()):
            return
        time.sleep(0.05)
    raise DemoError(f"team {team} on {sw.name}: members are {states}, not {state!r}")


def _capture(ctx: DemoContext, h: Hosts) -> Path:
    """psping captured at every member and at the team; the pcapng file."""
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step(f"capture at the pNICs and at the tNIC, and psping {SERVER[1]}:{SMB}")
    lab.spawn([PYTHON, "-c", SERVE, SERVER[1], str(SMB)], ns=h.server_ns)
    wait_listening(h.server_ns, SMB)
    path = ctx.path("lbfo.pcapng")
    points = " ".join(f"'{p}'" if "*" in p else p for p in POINTS)
    say.command("hv1", f"vspan capture {points} -w lbfo.pcapng &   # every pNIC, and the tNIC")
    cap = lab.spawn(h.hv1.capture_argv(*POINTS, "-w", str(path)), stderr_pipe=True)
    said = read_until(cap, b"capturing on", 20.0)
    if b"capturing on" not in said:
        raise DemoError(f"vspan capture did not start: {said.decode(errors='replace').strip()}")
    say.command(CLIENT[0], f"psping -n {CONNECTS} {SERVER[1]}:{SMB}   # a Python connect loop")
    got = python(h.client_ns, PSPING, SERVER[1], str(SMB), str(CONNECTS), check=False)
    say.block(got.stdout.strip() or got.stderr.strip())
    time.sleep(0.3)  # the last FIN's ACK
    say.block(lab.stop(cap, signal.SIGINT).strip())
    ev.expect(got.returncode == 0 and f"Received = {CONNECTS}," in got.stdout,
              f"psping connected {CONNECTS} times to {SERVER[0]}:{SMB} over the team",
              f"psping failed: {got.stdout.strip()} {got.stderr.strip()[-300:]}")
    return path


def _two_of_everything(ctx: DemoContext, path: Path) -> int:
    """The story's view of the capture and tshark's verdict; the TCP frames in it."""
    say, ev = ctx.say, ctx.evidence
    flt = f"tcp.port == {SMB}"
    say.step("the capture: two of every packet (tshark; the first connection)")
    say.command("hv1", f"tshark -r lbfo.pcapng -Y '{flt}' -T fields -e frame.number "
                       "-e frame.interface_name -e frame.packet_id -e ip.src -e ip.dst "
                       "-e _ws.col.Info")
    fields = ("frame.number", "frame.interface_name", "frame.packet_id", "ip.src", "ip.dst",
              "tcp.srcport", "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack",
              "tcp.analysis.flags", *ANALYSIS, "_ws.col.Info")  # Info last: it may hold '|'
    n = len(fields) - 1
    rows = [dict(zip(fields, [*r[:n], "|".join(r[n:])], strict=True))
            for r in tshark_fields(path, flt, *fields)]
    if not rows:
        raise DemoError(f"the capture holds no frame of port {SMB}")
    first = {rows[0]["tcp.srcport"], rows[0]["tcp.dstport"]}
    width = max(len(r["frame.interface_name"]) for r in rows)
    say.block([f"{r['frame.number']:>3}  {r['frame.interface_name']:{width}}  "
               f"id {r['frame.packet_id']:>3}  {r['ip.src']} -> {r['ip.dst']}  "
               f"{r['_ws.col.Info']}"
               for r in rows if {r["tcp.srcport"], r["tcp.dstport"]} == first])
    say.say(f"({len(rows)} frames of port {SMB} in all, for {CONNECTS} connections)")

    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(r["frame.packet_id"], []).append(r["frame.interface_name"])
    pairs = [sorted(v) for v in by_id.values()]
    twice = all(len(p) == 2 and p[0] == TEAM and p[1].startswith(f"{TEAM}:") for p in pairs)
    ev.expect(bool(by_id) and "" not in by_id and twice,
              f"every one of the {len(by_id)} packets twice: once at its pNIC ({TEAM}:pnicN), "
              f"once at the tNIC ({TEAM}), with one packet id",
              f"the packets were not each seen once at a member and once at the team: "
              f"{dict(list(by_id.items())[:6])}")
    syns = sum(r["tcp.flags.syn"] == "1" and r["tcp.flags.ack"] == "0" for r in rows)
    synacks = sum(r["tcp.flags.syn"] == "1" and r["tcp.flags.ack"] == "1" for r in rows)
    ev.expect(syns == synacks == 2 * CONNECTS,
              f"two SYN and two SYN-ACK per connection ({syns} and {synacks} for {CONNECTS})",
              f"{syns} SYN and {synacks} SYN-ACK captured for {CONNECTS} connections, not "
              f"{2 * CONNECTS} each")

    say.step("what Wireshark makes of it: TCP analysis flags (the black lines)")
    say.command("hv1", f"tshark -r lbfo.pcapng -Y '{flt}' -T fields "
                + " ".join(f"-e {f}" for f in ANALYSIS) + "   # counted")
    flagged = {f: sum(r[f] == "1" for r in rows) for f in ANALYSIS}
    say.block([f"{f:38} {n:>3} frames" for f, n in flagged.items()])
    any_flag = sum(r["tcp.analysis.flags"] == "1" for r in rows)
    say.say(f"{any_flag} of {len(rows)} frames carry a flag (tcp.analysis.flags): 'massive "
            "packet retransmission' at first sight")
    retrans, dup_acks = flagged[ANALYSIS[0]], flagged[ANALYSIS[1]]
    ev.expect(retrans > 0 and dup_acks > 0,
              f"tshark calls {retrans} copies retransmissions and {dup_acks} duplicate ACKs",
              f"tshark flags {retrans} retransmissions and {dup_acks} duplicate ACKs in the "
              "two-point capture (expected some of each)")
    return len(rows)


def _frames(path: Path) -> list[dict[str, str]]:
    """Every frame of ``path``: its capture point, TCP ports and analysis flag."""
    fields = ("frame.interface_name", "tcp.srcport", "tcp.dstport", "tcp.analysis.flags")
    return [dict(zip(fields, r, strict=True)) for r in tshark_fields(path, "frame", *fields)]


def _flows_and_dedup(ctx: DemoContext, path: Path, frames: int) -> None:
    say, ev = ctx.say, ctx.evidence
    say.step("vspan flows: the copies are capture duplicates, not retransmissions")
    say.command("hv1", "vspan flows lbfo.pcapng")
    rc, table, err = vspan_inline(["flows", str(path)])
    say.block(table or err)
    rc2, lines, err2 = vspan_inline(["flows", "--json", str(path)])
    if rc != 0 or rc2 != 0:
        raise DemoError(f"vspan flows: {err.strip() or err2.strip()}")
    conns = [f for f in map(json.loads, lines.splitlines()) if f.get("resp_p") == SMB]
    dups = sum(f["duplicates"] for f in conns)
    retx = sum(f["retransmissions"] for f in conns)
    packets = sum(f["orig_pkts"] + f["resp_pkts"] for f in conns)
    ev.expect(len(conns) == CONNECTS and all(f["conn_state"] == "SF" for f in conns)
              and retx == 0 and dups == packets == frames // 2,
              f"vspan flows: {len(conns)} connections (SF), {dups} duplicates, "
              f"{retx} retransmissions",
              f"vspan flows found {len(conns)} connections "
              f"({', '.join(f['conn_state'] for f in conns)}), {dups} duplicates and "
              f"{retx} retransmissions in {frames} frames")

    say.step(f"vspan dedup: one copy of each frame, the one seen at the tNIC ({TEAM})")
    once = ctx.path("once.pcapng")
    say.command("hv1", shown(["dedup", "lbfo.pcapng", "-w", "once.pcapng", "--keep-point",
                              TEAM]))
    rc, out, err = vspan_inline(["dedup", str(path), "-w", str(once), "--keep-point", TEAM])
    say.block((out + err).replace(str(once), once.name))
    if rc != 0:
        raise DemoError(f"vspan dedup: {err.strip() or out.strip()}")
    before, after = _frames(path), _frames(once)
    smb = [r for r in after if str(SMB) in (r["tcp.srcport"], r["tcp.dstport"])]
    points = Counter(r["frame.interface_name"] for r in after)
    flags = [sum(r["tcp.analysis.flags"] == "1" for r in f) for f in (before, after)]
    say.command("hv1", "tshark -r lbfo.pcapng | wc -l; tshark -r once.pcapng | wc -l   "
                       "# and the TCP analysis flags in each")
    say.block([f"lbfo.pcapng  {len(before):>3} frames, {flags[0]:>2} flagged by TCP analysis",
               f"once.pcapng  {len(after):>3} frames, {flags[1]:>2} flagged by TCP analysis "
               f"(all from {', '.join(points)})"])
    ev.expect(len(after) * 2 == len(before) and len(smb) * 2 == frames and flags[1] == 0
              and set(points) == {TEAM},
              f"vspan dedup: {len(before)} frames before, {len(after)} after, all from "
              f"{TEAM}; tshark flags none of them",
              f"vspan dedup left {len(after)} of {len(before)} frames ({len(smb)} of {frames} "
              f"TCP, at {dict(points)}), {flags[1]} still flagged")


def _iperf3(lab: Lab, h: Hosts) -> subprocess.Popen[bytes]:
    lab.spawn(["iperf3", "-s", "-1", "-B", SERVER[1]], ns=h.server_ns)
    wait_listening(h.server_ns, 5201)
    return lab.spawn(["iperf3", "-c", SERVER[1], "-t", str(TRANSFER_S), "-P", str(STREAMS),
                      "-i", str(INTERVAL_S), "-J"], ns=h.client_ns,
                     log=lab.workdir / "iperf3.json")


def _failover(ctx: DemoContext, h: Hosts) -> None:
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step("a transfer over the team, and a pNIC fails in the middle of it")
    say.command("hv1", "vspan show ports")
    say.block(h.hv1.cli("show", "ports"))
    say.command(SERVER[0], f"iperf3 -s -1 -B {SERVER[1]}")
    say.command(CLIENT[0], f"iperf3 -c {SERVER[1]} -t {TRANSFER_S} -P {STREAMS} "
                           f"-i {INTERVAL_S}")
    start_tx = {n: m["counters"]["tx_bytes"] for n, m in _members(h.hv1, TEAM).items()}
    client = _iperf3(lab, h)
    started = time.monotonic()
    time.sleep(FAIL_AT_S)
    mid = {n: m["counters"]["tx_bytes"] for n, m in _members(h.hv1, TEAM).items()}
    sent = {n: mid[n] - start_tx[n] for n in MEMBERS}
    victim = max(MEMBERS, key=lambda n: sent[n])
    survivor = next(n for n in MEMBERS if n != victim)
    say.say(f"(after {FAIL_AT_S:.0f} s: " + ", ".join(f"{n} sent {sent[n]:,} bytes"
                                                      for n in MEMBERS)
            + f"; {victim} carried more: its cable goes)")
    say.command("hv1", f"ip link set {victim} down")
    run(["ip", "link", "set", victim, "down"], ns=h.hv1_ns)
    failed_at = time.monotonic() - started
    _wait_members(h.hv1, TEAM, "down", only=victim)
    at_fail = {n: m["counters"]["tx_bytes"] for n, m in _members(h.hv1, TEAM).items()}
    try:
        client.wait(timeout=TRANSFER_S + 30)
    except subprocess.TimeoutExpired as err:
        raise DemoError(f"iperf3 did not finish: {err}") from err
    end = {n: m["counters"]["tx_bytes"] for n, m in _members(h.hv1, TEAM).items()}
    result = _iperf3_result(lab.workdir / "iperf3.json")

    say.step(f"what the transfer did (iperf3's [SUM] per {INTERVAL_S} s; {victim} went down "
             f"at {failed_at:.1f} s)")
    intervals = [i["sum"] for i in result.get("intervals", [])]
    marked = False
    lines = []
    for s in intervals:
        note = ""
        if not marked and s["end"] > failed_at:
            note, marked = f"   <- {victim} down", True
        lines.append(f"[SUM] {s['start']:5.2f}-{s['end']:5.2f} sec  "
                     f"{s['bytes'] / 1e6:8.1f} MB  {s['bits_per_second'] / 1e9:6.2f} Gbit/s{note}")
    say.block(lines or [json.dumps(result)[:300]])
    before_iv = [s for s in intervals if s["end"] <= failed_at]
    after_iv = [s for s in intervals if s["start"] >= failed_at]
    before_b, after_b = (sum(s["bytes"] for s in iv) for iv in (before_iv, after_iv))
    received = result.get("end", {}).get("sum_received", {}).get("bytes", 0)
    say.say(f"iperf3 sent {before_b:,} bytes in the {len(before_iv)} intervals before the "
            f"failure, {after_b:,} in the {len(after_iv)} after it;")
    say.say(f"{SERVER[0]} received {received:,} bytes in all")
    say.command("hv1", "vspan show ports")
    say.block(h.hv1.cli("show", "ports"))
    say.command("tor", "vspan show ports   # the far team lost the other end of the cable")
    say.block(h.tor.cli("show", "ports"))
    team = _team(h.hv1, TEAM)
    members = {m["name"]: m for m in team["members"]}
    far = _team(h.tor, FAR_TEAM)

    ev.expect("error" not in result and bool(after_iv) and client.returncode == 0
              and all(s["bytes"] > 0 for s in after_iv) and received >= before_b + after_b,
              f"the transfer went on after {victim} went down: {after_b:,} bytes in the "
              f"{len(after_iv)} intervals after it ({before_b:,} before)",
              f"the transfer did not go on after the failure: iperf3 exit "
              f"{client.returncode} {result.get('error', '')}, bytes sent in the intervals "
              f"after it {[s['bytes'] for s in after_iv]}, {received:,} received in all")
    ev.expect(end[survivor] > at_fail[survivor] and end[victim] == at_fail[victim],
              f"after the failure {survivor} carried {end[survivor] - at_fail[survivor]:,} "
              f"more bytes, {victim} none",
              f"member counters around the failure: {at_fail} -> {end}")
    ev.expect(members[victim]["state"].startswith("down") and team["active"] == [survivor]
              and team["failovers"] >= 1 and members[victim]["failovers"] >= 1,
              f"vspan show ports: {TEAM}:{victim} {members[victim]['state']}, active "
              f"{', '.join(team['active'])}, failovers {team['failovers']}",
              f"team state after the failure: active {team['active']}, failovers "
              f"{team['failovers']}, {victim} {members[victim]['state']}")
    ev.expect(far["failovers"] >= 1 and len(far["active"]) == 1,
              f"the far team {FAR_TEAM} failed over too (active {', '.join(far['active'])})",
              f"the far team {FAR_TEAM}: active {far['active']}, failovers {far['failovers']}")


def _iperf3_result(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        result: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as err:
        raise DemoError(f"iperf3 wrote no JSON result: {text.strip()[-300:]}") from err
    return result


def run_demo(ctx: DemoContext) -> None:
    """Two switches joined by teams; psping captured twice; flows, dedup; a failover."""
    hosts = _topology(ctx)
    path = _capture(ctx, hosts)
    frames = _two_of_everything(ctx, path)
    _flows_and_dedup(ctx, path, frames)
    _failover(ctx, hosts)
    ctx.say.explain([
        "A frame that crosses a team is seen at the pNIC it used and at the tNIC: one "
        "packet, two copies",
        "(here with one packet id), which tshark reads as retransmissions and duplicate "
        "ACKs. vspan flows",
        "counts them as duplicates, vspan dedup keeps one; and when a pNIC fails the team "
        "carries on over the other.",
    ])


DEMO = DemoSpec(
    name="lbfo", number=5, seed="002", title="LBFO: a NIC team captured at its NICs and itself",
    summary="psping over a two-NIC team captured at pNIC and tNIC: every packet twice; "
            "flows, dedup; a NIC fails mid-transfer",
    tools=("tshark", "iperf3", "ss"), run=run_demo)
