"""Demo 4 (field story 004, part 3): an app firewall protecting a 2-tier app.

One L2 segment (VLAN 10) holds a client, the web tier (``web``, HTTP on port
80), the database tier (``db``, a MySQL-like service on 3306) and a
compromised VM. The distributed firewall, enforced at every port, allows only
client -> web tcp/80 (rule 1001) and web -> db tcp/3306 (1002), rejects
anything else to the db (1003) and drops the rest (the default rule). The
client browses the web tier and the web tier queries the db: both go through.
The compromised VM sweeps both servers with TCP connects (a small nmap): it
finds nothing open, its SYNs are counted as drops with their rule ids, a
mirror of its port shows the refused SYNs (and the switch's RSTs), and the db
never sees any of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.lab import PYTHON, Vm
from vspan.demos.switch import shown
from vspan.demos.tools import python, wait_listening

VLAN = 10
VMS = {  # name -> (address, MAC)
    "client": ("10.60.0.10", "02:00:0a:3c:00:0a"),
    "web": ("10.60.0.20", "02:00:0a:3c:00:14"),
    "db": ("10.60.0.30", "02:00:0a:3c:00:1e"),
    "compromised": ("10.60.0.66", "02:00:0a:3c:00:42"),
}
MONITOR_MAC = "02:00:0a:3c:00:99"
DB_PORT = 3306
SCAN_PORTS = (21, 22, 80, 443, 3306, 8080)


def two_tier_firewall(client: str, web: str, db: str, watched: str, monitor: str, *,
                      db_port: int = DB_PORT, section: str = "wordpress") -> str:
    """The two-tier app's firewall and the mirror of the suspect port, for the ports named:
    ``client`` -> ``web`` tcp/80 allowed (rule 1001), ``web`` -> ``db`` tcp/``db_port``
    (1002), anything else to ``db`` rejected (1003), the rest dropped (the default rule);
    ``watched`` mirrored to ``monitor`` (which the firewall leaves alone). The demo's
    configuration, and the setup of the system test that checks it independently."""
    return f"""\
firewall:
  default_action: drop                  # the default rule: what no rule allows is dropped
  exclude: [{monitor}]
  groups:
    clients:  {{ports: [{client}]}}
    web-tier: {{ports: [{web}]}}
    db-tier:  {{ports: [{db}]}}
  sections:
    - name: {section}
      rules:
        - {{id: "1001", name: client-to-web, sources: [clients], destinations: [web-tier],
           services: ["tcp/80"], action: allow}}
        - {{id: "1002", name: web-to-db, sources: [web-tier], destinations: [db-tier],
           services: ["tcp/{db_port}"], action: allow}}
        - {{id: "1003", name: protect-db, sources: [any], destinations: [db-tier],
           action: reject}}
mirrors:
  watch-{watched}:
    sources: [{{port: {watched}, direction: both}}]
    destinations: [{monitor}]
"""


def tier_ports(ports: Mapping[str, tuple[str, str]], monitor: tuple[str, str]) -> str:
    """The ``ports:`` section: each name -> (interface, address) an access port of VLAN 10
    that may send from its address only; ``monitor`` (name, interface) a plain port."""
    lines = ["ports:"]
    for name, (ifname, ip) in ports.items():
        lines.append(f"  {name}: {{interface: {ifname}, vlan: {{mode: access, id: {VLAN}}}, "
                     f"policy: {{addresses: [{ip}]}}}}")
    lines.append(f"  {monitor[0]}: {{interface: {monitor[1]}}}")
    return "\n".join(lines) + "\n"


def config() -> str:
    """The switch's configuration: the VMs' ports on VLAN 10, the firewall, the mirror."""
    return (tier_ports({name: (name, ip) for name, (ip, _mac) in VMS.items()},
                       ("monitor", "monitor"))
            + two_tier_firewall("client", "web", "db", "compromised", "monitor"))


DB_SERVER = (
    "import socketserver, sys\n"
    "class Query(socketserver.BaseRequestHandler):\n"
    "    def handle(self):\n"
    "        q = self.request.recv(200).decode(errors='replace').strip()\n"
    "        self.request.sendall(f'mysql> {q}\\n1 row in set (for {self.client_address[0]})'\n"
    "                             '\\n'.encode())\n"
    "socketserver.ThreadingTCPServer.allow_reuse_address = True\n"
    "socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Query).serve_forever()\n"
)

QUERY = (
    "import socket, sys\n"
    "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:\n"
    "    s.sendall(sys.argv[3].encode())\n"
    "    print(s.recv(200).decode().strip())\n"
)

GET = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
    "    print(r.status, r.reason, '-', r.read().decode().strip())\n"
)

# a TCP connect sweep: open (connected), closed (RST), filtered (no answer)
SCAN = (
    "import concurrent.futures as cf, socket, sys\n"
    "hosts, ports = sys.argv[1].split(','), [int(p) for p in sys.argv[2].split(',')]\n"
    "def probe(target):\n"
    "    s = socket.socket()\n"
    "    s.settimeout(float(sys.argv[3]))\n"
    "    try:\n"
    "        s.connect(target)\n"
    "        return 'open'\n"
    "    except ConnectionRefusedError:\n"
    "        return 'closed'\n"
    "    except TimeoutError:\n"
    "        return 'filtered'\n"
    "    except OSError as e:\n"
    "        return 'error:' + (e.strerror or str(e)).replace(' ', '-')\n"
    "    finally:\n"
    "        s.close()\n"
    "targets = [(h, p) for h in hosts for p in ports]\n"
    "with cf.ThreadPoolExecutor(len(targets)) as ex:\n"
    "    state = dict(zip(targets, ex.map(probe, targets)))\n"
    "print(f'TCP connect scan of {len(hosts)} hosts, {len(ports)} ports each')\n"
    "print('PORT      ' + ''.join(f'{h:16}' for h in hosts))\n"
    "for p in ports:\n"
    "    print(f'{str(p) + \"/tcp\":10}' + ''.join(f'{state[(h, p)]:16}' for h in hosts))\n"
    "print(f'{sum(v == \"open\" for v in state.values())} open ports found')\n"
)

_ROW = re.compile(r"^(\d+)/tcp\s+(\S+)\s+(\S+)\s*$")


def scan_states(text: str) -> dict[int, tuple[str, str]]:
    """Port -> (state on web, state on db) from the sweep's table."""
    out = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            out[int(m.group(1))] = (m.group(2), m.group(3))
    return out


def run(ctx: DemoContext) -> None:
    """The app works, the attack is refused, counted and seen."""
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step(f"one L2 segment (VLAN {VLAN}): client, web tier, db tier, and a compromised VM")
    esx = lab.netns("esx")
    vms: dict[str, Vm] = {n: lab.vm(esx, n, ip, mac) for n, (ip, mac) in VMS.items()}
    mon_ns = lab.netns("monitor")
    lab.wire((esx, "monitor"), (mon_ns, "eth0"), mac_b=MONITOR_MAC)
    for n, vm in vms.items():
        say.say(f"  VM {n:12} {vm.ip}")
    say.say("  VM monitor      (mirror destination of the compromised VM's port)")
    say.say("switch configuration (switch.yaml):")
    cfg = config()
    say.block(cfg)
    web, db, bad = vms["web"], vms["db"], vms["compromised"]
    docroot = ctx.path("www")
    docroot.mkdir()
    (docroot / "index.html").write_text("WordPress: Hello world!\n", encoding="utf-8")
    lab.spawn([PYTHON, "-m", "http.server", "80", "--bind", web.ip, "--directory",
               str(docroot)], ns=web.ns)
    lab.spawn([PYTHON, "-c", DB_SERVER, db.ip, str(DB_PORT)], ns=db.ns)
    wait_listening(web.ns, 80)
    wait_listening(db.ns, DB_PORT)
    sw = ctx.switch(esx, "esx", cfg)
    say.command("esx", "vspan up -c switch.yaml")
    say.command("esx", "vspan firewall show")
    say.block(sw.cli("firewall", "show"))

    say.step("the app at work: client -> web:80, web -> db:3306")
    say.command("client", f"http-get http://{web.ip}/   # Python's urllib")
    page = python(vms["client"].ns, GET, f"http://{web.ip}/", check=False)
    say.block(page.stdout.strip() or page.stderr.strip()[-300:])
    say.command("web", f"db-query {db.ip} {DB_PORT} 'select * from wp_posts'   # a TCP client")
    query = python(web.ns, QUERY, db.ip, str(DB_PORT), "select * from wp_posts", check=False)
    say.block(query.stdout.strip() or query.stderr.strip()[-300:])
    before = sw.drops()

    say.step("the compromised VM scans both servers (a TCP connect sweep, like nmap -sT)")
    mirror = ctx.tcpdump(mon_ns, "eth0", "monitor")
    at_db = ctx.tcpdump(db.ns, "eth0", "at-db", f"ip host {bad.ip}")
    ports = ",".join(str(p) for p in SCAN_PORTS)
    say.command("compromised", f"tcp-sweep -p {ports} {web.ip} {db.ip}   # Python, like nmap -sT")
    scan = python(bad.ns, SCAN, f"{web.ip},{db.ip}", ports, "1.0", check=False)
    say.block(scan.stdout.strip() or scan.stderr.strip()[-300:])
    mirror.stop()
    at_db.stop()
    states = scan_states(scan.stdout)

    say.step("the drops, with the rule that decided each")
    say.command("esx", "vspan show counters")
    say.block(sw.cli("show", "counters"))
    drops = sw.drops()
    trace = ["trace", "-i", "compromised", "--src-mac", bad.mac, "--dst-mac", db.mac,
             "--src-ip", bad.ip, "--dst-ip", db.ip, "--proto", "tcp", "--dport", str(DB_PORT)]
    say.command("esx", shown(trace))
    trace_out = sw.cli(*trace)
    say.block(trace_out)

    say.step("the mirror of the compromised VM's port: the refused SYNs (and the RSTs it got)")
    flt = "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0"
    say.command("monitor", f"tcpdump -r monitor.pcap -n '{flt}'")
    syn_lines = mirror.lines(flt, extra=())
    say.block(syn_lines or ["(nothing)"], limit=16)
    say.command("db", f"tcpdump -r at-db.pcap -n ip host {bad.ip}")
    db_lines = at_db.lines()
    say.block(db_lines or ["(nothing: no packet of the scan reached the db)"])

    ev.expect(page.returncode == 0 and page.stdout.startswith("200 OK"),
              "client -> web:80 went through (200 OK)",
              f"the client's GET failed: {page.stdout.strip()} {page.stderr.strip()[-200:]}")
    ev.expect(query.returncode == 0 and "1 row in set" in query.stdout,
              "web -> db:3306 went through (the query was answered)",
              f"the web tier's query failed: {query.stdout.strip()} "
              f"{query.stderr.strip()[-200:]}")
    ev.expect(not before, "the app's own traffic caused no drops",
              f"the app's own traffic was dropped: {before}")
    found = {p: s for p, s in states.items() if "open" in s}
    ev.expect(len(states) == len(SCAN_PORTS) and not found,
              f"the scan found no open port on web or db ({len(SCAN_PORTS)} ports each)",
              f"the scan's result: {states or scan.stdout.strip()}")
    rejected = drops.get(("compromised", "firewall-reject", "1003"), 0)
    denied = drops.get(("compromised", "firewall-deny", "default"), 0)
    ev.expect(rejected >= len(SCAN_PORTS) and denied >= len(SCAN_PORTS),
              f"the switch counted {rejected} SYNs rejected by rule 1003 (to db) and {denied} "
              "dropped by the default rule (to web)",
              f"drops counted at the compromised port: {drops}")
    ev.expect("verdict: dropped: firewall-reject (rule 1003) at compromised" in trace_out,
              "vspan trace names rule 1003 for compromised -> db:3306",
              "vspan trace does not name rule 1003")
    syns = {(ip, int(p)) for ip, p in
            re.findall(rf"{re.escape(bad.ip)}\.\d+ > (\S+)\.(\d+): Flags \[S\]", "\n".join(
                syn_lines))}
    wanted = {(h, p) for h in (web.ip, db.ip) for p in SCAN_PORTS}
    rsts = len([ln for ln in syn_lines if f"{db.ip}." in ln.split(">")[0] and "[R" in ln])
    ev.expect(syns == wanted and rsts >= len(SCAN_PORTS),
              f"the mirror saw a SYN to each of the {len(wanted)} targets and {rsts} RSTs "
              "from the firewall",
              f"the mirror saw SYNs to {len(syns)} of {len(wanted)} targets, {rsts} RSTs")
    ev.expect(not db_lines, "the db saw no IP packet of the compromised VM",
              f"the db saw {len(db_lines)} IP packets from the compromised VM")

    say.explain([
        "The firewall sits at every vNIC, so it guards the db even from a VM on the same "
        "L2 segment:",
        "the app's two allowed flows went through; every probe of the compromised VM was "
        "rejected (1003)",
        "or dropped (default), counted with its rule, visible on the mirror, never seen by "
        "the db.",
    ])


DEMO = DemoSpec(
    name="firewall", number=4, seed="004", title="App firewall protecting a 2-tier app",
    summary="web and db allowed, a compromised VM's scan on the same L2 refused, counted by "
            "rule and mirrored",
    tools=("tcpdump", "ss"), run=run)
