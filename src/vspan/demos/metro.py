"""Demo 7 (field story 004, part 2): a stretched metro cluster, a VM moved between sites.

Two sites of two hosts each, every host a namespace running ``vspan agent``; one
etcd (in site 1's router); the sites' underlays are routed, joined by a "DCI" link
between the two site routers, and VLAN 10 is stretched over the VXLAN overlay. The
web VM (``web``) starts on site 1 behind a default-deny per-port firewall (only
tcp/5201 to it is allowed, statefully); a client outside the sites streams from it
with iperf3 (``-R``: the VM sends), its traffic entering through site 1's router,
where a perimeter firewall (nftables, conntrack) watches the uplink; site 2's router
has one too. A sniffer VM on a third host receives a mirror of web's port.

While the stream runs, ``vspan vm migrate web --to s2h1`` moves the VM to site 2 and
the VM's default route is switched to site 2's gateway (local egress): the client's
packets still come in through site 1, the VM's answers leave through site 2. The
perimeter firewalls each see one direction and would drop the flow (they only count
here, so the stream can go on); vspan's firewall at the VM's port sees both
directions wherever the VM is, and its connection state moved with it.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from vspan.capture.pcapng import read_capture
from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError
from vspan.demos.lab import PYTHON, Lab, run
from vspan.demos.tools import wait_listening

VSPAN = [PYTHON, "-m", "vspan.cli.main"]
WEB_IP, WEB_MAC = "10.0.10.10", "02:00:0a:00:0a:0a"
SNF_MAC = "02:00:0a:00:0a:99"
GW1, GW2 = "10.0.10.1", "10.0.10.2"
CLIENT_IP = "198.51.100.10"
ETCD_IP = "198.19.0.1"
UNDERLAY_MTU = 1600
HOSTS = {"s1h1": ("r1", "198.18.11"), "s1h2": ("r1", "198.18.12"),
         "s2h1": ("r2", "198.18.21"), "s2h2": ("r2", "198.18.22")}
STREAM_SECONDS = 12
MIGRATE_AT = 4.0

DVS = f"""\
switch: {{name: metro, mtu: {UNDERLAY_MTU}}}
hosts:
  s1h1: {{description: site 1}}
  s1h2: {{description: site 1}}
  s2h1: {{description: site 2}}
  s2h2: {{description: site 2}}
port_groups:
  front: {{vlan: {{mode: access, id: 10}}, description: the stretched VLAN}}
ports:
  web: {{host: s1h1, interface: web, vm: web, mac: '{WEB_MAC}', port_group: front,
        policy: {{addresses: [{WEB_IP}]}}}}
  gw1: {{host: s1h2, interface: gw1, port_group: front, description: site 1 router}}
  gw2: {{host: s2h2, interface: gw2, port_group: front, description: site 2 router}}
  snf: {{host: s1h2, interface: snf, vm: sniffer}}
mirrors:
  watch-web: {{sources: [web], destinations: [snf]}}
firewall:
  default_action: drop                 # default deny at every VM port
  exclude: [gw1, gw2, snf]
  sections:
    - name: web
      applied_to: [web]
      rules:
        - {{id: iperf, sources: [any], destinations: [{WEB_IP}], services: [tcp/5201],
           action: allow}}
"""

# a conventional stateful perimeter firewall, in observe mode: it counts what it would drop
PERIMETER = """\
table inet perimeter {
  counter would_drop_invalid { }
  counter would_drop_new { }
  counter to_vm { }
  counter from_vm { }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname != "wan" oifname != "wan" accept   # the site's own traffic (the underlay)
    ip daddr 10.0.10.0/24 counter name to_vm
    ip saddr 10.0.10.0/24 counter name from_vm
    ct state invalid counter name would_drop_invalid accept
    ct state established,related accept
    ip daddr 10.0.10.10 tcp dport 5201 ct state new accept
    counter name would_drop_new accept
  }
}
"""


class Metro:
    """The two sites, their routers, hosts, agents and VMs."""

    def __init__(self, ctx: DemoContext) -> None:
        self.ctx = ctx
        self.lab: Lab = ctx.lab
        self.ns: dict[str, str] = {}
        self.sockets: dict[str, str] = {}
        self.etcd = f"http://{ETCD_IP}:2379"

    def build(self) -> None:
        """Namespaces, links, addresses and routes (no default route out of the lab)."""
        lab = self.lab
        for name in ("wan", "client", "r1", "r2", *HOSTS):
            self.ns[name] = lab.netns(name)
        for r in ("wan", "r1", "r2"):
            run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=self.ns[r])
        for r in ("r1", "r2"):  # a strict stateful firewall: no mid-stream pick-up
            for knob in ("nf_conntrack_tcp_loose=0", "nf_conntrack_tcp_be_liberal=0"):
                run(["sysctl", "-qw", f"net.netfilter.{knob}"], ns=self.ns[r], check=False)
        run(["ip", "-n", self.ns["r1"], "addr", "add", f"{ETCD_IP}/32", "dev", "lo"])
        # the internet side: the client, and the two sites' routers
        lab.wire((self.ns["client"], "eth0"), (self.ns["wan"], "cl"),
                 addr_a=f"{CLIENT_IP}/24", addr_b="198.51.100.1/24")
        lab.wire((self.ns["wan"], "to-r1"), (self.ns["r1"], "wan"),
                 addr_a="100.64.1.1/30", addr_b="100.64.1.2/30")
        lab.wire((self.ns["wan"], "to-r2"), (self.ns["r2"], "wan"),
                 addr_a="100.64.2.1/30", addr_b="100.64.2.2/30")
        # the DCI: the two sites' underlays joined
        lab.wire((self.ns["r1"], "dci"), (self.ns["r2"], "dci"), addr_a="198.18.0.1/30",
                 addr_b="198.18.0.2/30", mtu=UNDERLAY_MTU)
        for host, (router, net) in HOSTS.items():
            lab.wire((self.ns[router], host), (self.ns[host], "ul0"), addr_a=f"{net}.1/24",
                     addr_b=f"{net}.2/24", mtu=UNDERLAY_MTU)
            run(["ip", "-n", self.ns[host], "route", "add", "198.18.0.0/15", "via", f"{net}.1"])
        routes = {
            "client": [("default", "198.51.100.1")],
            # the sites advertise the VM's subnet from site 1 only (the "DC1 ingress")
            "wan": [("10.0.10.0/24", "100.64.1.2")],
            "r1": [("198.51.100.0/24", "100.64.1.1"), ("198.18.21.0/24", "198.18.0.2"),
                   ("198.18.22.0/24", "198.18.0.2")],
            "r2": [("198.51.100.0/24", "100.64.2.1"), ("198.18.11.0/24", "198.18.0.1"),
                   ("198.18.12.0/24", "198.18.0.1"), (f"{ETCD_IP}/32", "198.18.0.1")],
        }
        for ns, rs in routes.items():
            for dst, via in rs:
                run(["ip", "-n", self.ns[ns], "route", "add", dst, "via", via])
        # the VMs: web on site 1, the sniffer on a third host; each site router's leg on
        # the stretched VLAN is a port of that site's second host
        self.web = lab.vm(self.ns["s1h1"], "web", WEB_IP, WEB_MAC)
        self.snf = lab.vm(self.ns["s1h2"], "snf", "10.0.99.9", SNF_MAC)
        lab.wire((self.ns["s1h2"], "gw1"), (self.ns["r1"], "vl10"), addr_b=f"{GW1}/24")
        lab.wire((self.ns["s2h2"], "gw2"), (self.ns["r2"], "vl10"), addr_b=f"{GW2}/24")
        run(["ip", "-n", self.web.ns, "route", "add", "default", "via", GW1])

    def start_control(self) -> None:
        """etcd in site 1's router, the switch applied, one agent per host."""
        etcd = shutil.which("etcd")
        assert etcd is not None
        data = self.ctx.path("etcd")
        peer = f"http://{ETCD_IP}:2380"
        self.lab.spawn([etcd, "--name", "metro", "--data-dir", str(data),
                        "--listen-client-urls", self.etcd, "--advertise-client-urls",
                        self.etcd, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
                        peer, "--initial-cluster", f"metro={peer}",
                        # docs/dvs.md: history compacted, the database does not grow for ever
                        "--auto-compaction-mode", "revision",
                        "--auto-compaction-retention", "10000", "--log-level", "warn",
                        "--logger", "zap"], ns=self.ns["r1"], log=self.ctx.path("etcd.log"))
        deadline = time.monotonic() + 30
        while run(["curl", "-sf", "-m", "1", f"{self.etcd}/health"], ns=self.ns["r1"],
                  check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise DemoError("etcd did not start (see etcd.log)")
            time.sleep(0.2)
        cfg = self.ctx.path("metro.yaml")
        cfg.write_text(DVS, encoding="utf-8")
        self.cli("r1", "dvs", "apply", str(cfg), "--etcd", self.etcd)
        for host, (_router, net) in HOSTS.items():
            sock = str(self.ctx.path(f"{host}.sock"))
            self.sockets[host] = sock
            self.lab.spawn([*VSPAN, "agent", "--dvs", "metro", "--host", host, "--etcd",
                            self.etcd, "--underlay", f"{net}.2", "--socket", sock, "--ttl", "5",
                            "--status-interval", "0.5", "--state-dir",
                            str(self.ctx.path(f"state-{host}"))],
                           ns=self.ns[host], log=self.ctx.path(f"agent-{host}.log"))
        deadline = time.monotonic() + 60
        while not self.in_sync():
            if time.monotonic() > deadline:
                raise DemoError("the agents did not apply the switch (see agent-*.log)")
            time.sleep(0.3)

    def cli(self, where: str, *args: str, timeout: float = 90) -> str:
        """A vspan command in namespace ``where``; its output (DemoError if it fails)."""
        return run([*VSPAN, *args], ns=self.ns[where], timeout=timeout).stdout

    def local(self, host: str, path: str) -> Any:
        """GET on a host agent's local API."""
        from vspan.cli.client import ClientError, request

        try:
            return request(self.sockets[host], "GET", path, timeout=5)
        except ClientError as err:
            raise DemoError(f"agent on {host}: {err}") from None

    def in_sync(self) -> bool:
        """Every agent answers and applied the stored generation."""
        try:
            rows = json.loads(self.cli("r1", "dvs", "show", "hosts", "--json", "--etcd",
                                       self.etcd))
        except (DemoError, ValueError):
            return False
        return len(rows) == len(HOSTS) and all(r["status"] == "up" and r["in_sync"]
                                               for r in rows)

    def nft_counters(self, router: str) -> dict[str, int]:
        """The perimeter firewall's counters (packets) in site router ``router``."""
        out = run(["nft", "-j", "list", "counters"], ns=self.ns[router]).stdout
        got: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            c = item.get("counter")
            if c:
                got[c["name"]] = int(c["packets"])
        return got


def run_demo(ctx: DemoContext) -> None:
    """The story, step by step (see the module docstring)."""
    say, ev = ctx.say, ctx.evidence
    m = Metro(ctx)
    say.step("Two sites, two hosts each, one etcd, VLAN 10 stretched over the overlay")
    m.build()
    m.start_control()
    say.command("r1", "vspan dvs show hosts")
    say.block(m.cli("r1", "dvs", "show", "hosts", "--etcd", m.etcd), limit=14)
    for router in ("r1", "r2"):
        f = ctx.path(f"perimeter-{router}.nft")
        f.write_text(PERIMETER, encoding="utf-8")
        run(["nft", "-f", str(f)], ns=m.ns[router])
    say.say("site routers r1 and r2 each run a stateful perimeter firewall (nftables "
            "conntrack, strict: no mid-stream pick-up), here only counting what it would "
            "drop")

    say.step("A client streams from the web VM on site 1; a sniffer on s1h2 mirrors web")
    pcap = ctx.path("sniffer.pcap")
    sniffer = m.lab.spawn(["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-w",
                           str(pcap), "host", WEB_IP], ns=m.snf.ns)
    m.lab.spawn(["iperf3", "-s", "-1", "-B", WEB_IP], ns=m.web.ns)
    wait_listening(m.web.ns, 5201)
    out_path = ctx.path("iperf3.json")
    say.command("client", f"iperf3 -c {WEB_IP} -R -t {STREAM_SECONDS} -b 20M -J")
    client = m.lab.spawn(["sh", "-c", f"iperf3 -c {WEB_IP} -R -t {STREAM_SECONDS} "
                          f"-b 20M -J > {out_path}"], ns=m.ns["client"])
    t_start = time.time()
    time.sleep(MIGRATE_AT)
    before_fw = {r: m.nft_counters(r) for r in ("r1", "r2")}

    say.step("vMotion: web moves from site 1 (s1h1) to site 2 (s2h1) while the stream runs")
    say.command("r1", "vspan vm migrate web --to s2h1")
    rec_path = ctx.path("migration.json")
    mig = m.lab.spawn(["sh", "-c", f"{' '.join(VSPAN)} vm migrate web --to s2h1 --json "
                       f"--etcd {m.etcd} > {rec_path}"], ns=m.ns["r1"])
    deadline = time.monotonic() + 30
    while not _attached(m, "s2h1", "web"):
        if time.monotonic() > deadline or (mig.poll() is not None and not _attached(
                m, "s2h1", "web")):
            break
        time.sleep(0.01)
    # local egress at site 2 (the story's "tweaked for local egress"): answers leave by r2
    run(["ip", "-n", m.web.ns, "route", "replace", "default", "via", GW2])
    say.say(f"web runs on s2h1 now; its default route points to site 2's router ({GW2}): "
            "the client's packets still enter through site 1, the VM's answers leave "
            "through site 2")
    mig.wait(timeout=60)
    try:
        rec = json.loads(rec_path.read_text() or "{}")
    except ValueError:
        rec = {}
    if rec.get("phase") != "done":
        raise DemoError(f"the migration ended in phase {rec.get('phase')}: "
                        f"{rec.get('error', '')}")
    _show_migration(ctx, rec)
    client.wait(timeout=STREAM_SECONDS + 30)
    time.sleep(0.5)
    m.lab.stop(sniffer)
    after_fw = {r: m.nft_counters(r) for r in ("r1", "r2")}
    t_switch = next(h["at"] for h in rec["history"] if h["phase"] == "attached")

    say.step("The stream, before and after the move")
    try:
        result = json.loads(out_path.read_text() or "{}")
    except ValueError:
        result = {}
    intervals = result.get("intervals", [])
    rows = []
    before_bytes = after_bytes = 0
    for iv in intervals:
        s = iv["sum"]
        at = t_start + float(s["start"])
        when = "before" if at + 1 <= t_switch else ("move" if at <= t_switch else "after")
        rows.append(f"{s['start']:5.1f}-{s['end']:5.1f} s  {s['bits_per_second'] / 1e6:6.1f} "
                    f"Mbit/s  ({when})")
        if when == "before":
            before_bytes += int(s["bytes"])
        elif when == "after":
            after_bytes += int(s["bytes"])
    say.block(rows)
    err = result.get("error")
    ev.expect(not err and before_bytes > 0 and after_bytes > 0 and
              len(result.get("start", {}).get("connected", [])) == 1,
              f"the stream ran before ({before_bytes} bytes) and after ({after_bytes} bytes) "
              "the move on its one connection, through web's default-deny firewall",
              f"the stream did not continue after the move ({err or 'no bytes after'})")

    say.step("What the sniffer on s1h2 received (mirror of web's port)")
    stamps = [p.ts_ns / 1e9 for p in read_capture(str(pcap))] if pcap.exists() else []
    n_before = sum(1 for t in stamps if t < t_switch)
    n_after = sum(1 for t in stamps if t >= t_switch)
    say.block([f"frames of {WEB_IP} before the switch-over: {n_before}",
               f"frames of {WEB_IP} after the switch-over:  {n_after}"])
    lost = rec.get("result", {}).get("lost", {}).get("sessions", {}).get("watch-web")
    ev.expect(n_before > 0 and n_after > 0,
              f"the sniffer kept seeing the VM: {n_before} frames before, {n_after} after "
              f"(copies from s1h1, then from s2h1 across the DCI); lost copies reported: {lost}",
              "the sniffer did not see the VM on both sides of the move")
    ev.expect(lost is not None, f"vspan vm migrate reported {lost} lost mirror copies",
              "no lost-copy count was reported")

    say.step("Firewalls side by side: who would have dropped the flow after the move")
    d = {r: {k: after_fw[r].get(k, 0) - before_fw[r].get(k, 0) for k in after_fw[r]}
         for r in after_fw}
    counters = m.local("s2h1", "/show/counters")
    vspan_drops = sum(int(x["frames"]) for x in counters.get("drops", [])
                      if x["port"] == "web" and str(x["reason"]).startswith("firewall"))
    fw = m.local("s2h1", "/firewall")
    conns = fw.get("connections", {}).get("web", {}).get("active", 0)
    imported = rec.get("attach", {}).get("imported", {}).get("connections", 0)
    say.block([
        "FIREWALL                      SEES (after the move)      VERDICT ON THE FLOW",
        f"site-1 perimeter (r1, nft)    client->VM only ({d['r1'].get('to_vm', 0)} pkts)   "
        f"would drop {d['r1'].get('would_drop_invalid', 0)}: ct state invalid (ACKs for "
        "data it never saw)",
        f"site-2 perimeter (r2, nft)    VM->client only ({d['r2'].get('from_vm', 0)} pkts)  "
        f"would drop {d['r2'].get('would_drop_invalid', 0) + d['r2'].get('would_drop_new', 0)}"
        ": ct state invalid (no SYN seen: mid-stream)",
        f"vspan per-port at web (s2h1)  both directions           dropped {vspan_drops}: "
        f"ESTABLISHED ({imported} connections moved with the VM, {conns} tracked)",
    ])
    site1 = d["r1"].get("would_drop_invalid", 0)
    site2 = d["r2"].get("would_drop_invalid", 0) + d["r2"].get("would_drop_new", 0)
    ev.expect(site1 > 0 and d["r2"].get("from_vm", 0) > 0,
              f"the flow became asymmetric: site 1's perimeter firewall saw only the client's "
              f"side and would have dropped {site1} packets; site 2's would have dropped "
              f"{site2}",
              "the perimeter firewalls did not see the asymmetric flow as invalid "
              f"(site 1: {site1}, site 2: {site2})")
    ev.expect(vspan_drops == 0 and imported >= 2,
              f"vspan's per-port firewall dropped nothing: the VM's {imported} connections "
              "moved with it",
              f"vspan's firewall at web dropped {vspan_drops} frames (connections moved: "
              f"{imported})")
    say.explain([
        "The web VM moved from site 1 to site 2 with its port id, counters, firewall state",
        "and mirror session; RARP from s2h1 taught the other hosts where it is now.",
        "Its answers leave through site 2 while the client's packets still enter through",
        "site 1: each perimeter firewall sees one half of the flow, and a strict stateful",
        "firewall drops what it cannot match. The firewall at the VM's port sees both",
        "halves wherever the VM runs -- the NSX distributed firewall's argument.",
    ])


def _attached(m: Metro, host: str, port: str) -> bool:
    """Whether ``port`` is attached and up on ``host`` (its agent's own status)."""
    try:
        st = m.local(host, "/dvs/status")
    except DemoError:
        return False
    return bool(st.get("ports", {}).get(port, {}).get("state") == "up")


def _show_migration(ctx: DemoContext, rec: dict[str, Any]) -> None:
    res = rec.get("result", {})
    times = res.get("switch_over", {})
    lost = res.get("lost", {})

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    ctx.say.block([
        f"migration {rec['id']}: " + " -> ".join(
            f"{h['phase']}({h['host'] or 'cli'})" for h in rec["history"]),
        f"port {rec['port']} keeps id {rec['port_id']}; switch-over "
        f"{ms(times.get('switch_over'))} (last frame on s1h1 -> first on s2h1), its own "
        f"traffic after {ms(times.get('traffic_resumed'))}, attached nowhere "
        f"{ms(times.get('detached'))}",
        f"connection state moved: {rec.get('attach', {}).get('imported', {})}",
        f"lost mirror copies (frames the VM's interface carried while no switch had it): "
        f"{lost.get('sessions', {})}",
    ])


DEMO = DemoSpec(
    name="metro", number=7, seed="004",
    title="Metro cluster: a VM moves between sites with its firewall state and mirror",
    summary="web migrates from site 1 to site 2 mid-stream, answers leave through site 2; "
            "perimeter firewalls see half a flow, the per-port firewall keeps it",
    tools=("etcd", "iperf3", "tcpdump", "nft", "curl", "ss"), run=run_demo)
