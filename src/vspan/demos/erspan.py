"""Demo 3 (field story 004, part 2): ERSPAN to a Wireshark console.

The host ``esx`` runs a vspan switch with the VM ``win7`` (a desktop) and the
VM ``blog`` (an HTTP server). A session of type "Encapsulated Remote Mirroring
(L3) Source" sends win7's traffic as ERSPAN Type II from the host's own
network stack to the monitoring console 10.2.1.110 (the laptop). On the
console, a capture of the whole interface (Wireshark's) is filtered with
``gre``, and ``vspan collect`` writes the decapsulated frames to pcapng;
win7 browses the blog and the HTTP GET's TCP stream is followed
(``vspan follow``).
"""

from __future__ import annotations

import signal

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError
from vspan.demos.lab import PYTHON
from vspan.demos.switch import VSPAN, vspan_inline
from vspan.demos.tools import python, read_until, tshark, tshark_fields, wait_listening

WIN7 = ("win7", "10.20.0.7", "02:00:0a:14:00:07")
BLOG = ("blog", "10.20.0.80", "02:00:0a:14:00:50")
HOST_IP, CONSOLE_IP = "10.2.1.1", "10.2.1.110"
SESSION_ID = 7
PAGES = {"index.html": "<html><title>kacang is nuts</title><body>Welcome to the blog: packet "
                       "analysis with ERSPAN.</body></html>\n",
         "erspan.html": "<html><body>vSphere Distributed Virtual Switch: Packet analysis "
                        "using ERSPAN</body></html>\n"}

CONFIG = f"""\
ports:
  win7: {{interface: win7, description: "Windows 7 jump box VM"}}
  blog: {{interface: blog, description: "the blog server"}}
mirrors:
  to-laptop:
    description: "Encapsulated Remote Mirroring (L3) Source"
    sources: [{{port: win7, direction: both}}]
    erspan: {{type: erspan2, remote_ip: {CONSOLE_IP}, session_id: {SESSION_ID}}}
"""

BROWSE = (
    "import sys, urllib.request\n"
    "for url in sys.argv[1:]:\n"
    "    with urllib.request.urlopen(url, timeout=10) as r:\n"
    "        body = r.read().decode()\n"
    "        print(r.status, url, len(body), 'bytes')\n"
)


def run(ctx: DemoContext) -> None:
    """Browse, capture on the console, filter gre, collect, follow."""
    say, lab, ev = ctx.say, ctx.lab, ctx.evidence
    say.step("the host, two VMs, and the monitoring console (a laptop) on the host's network")
    esx = lab.netns("esx")
    win7 = lab.vm(esx, *WIN7)
    blog = lab.vm(esx, *BLOG)
    console = lab.netns("console")
    # the host's management network to the console; room for ERSPAN's 36 extra bytes
    lab.wire((esx, "vmk0"), (console, "eth0"), addr_a=f"{HOST_IP}/24",
             addr_b=f"{CONSOLE_IP}/24", mtu=1600)
    say.say(f"  VM win7 {win7.ip}, VM blog {blog.ip} (HTTP server) on the switch;")
    say.say(f"  console {CONSOLE_IP} (Wireshark's 'Local Area Connection'), reached from the "
            f"host's {HOST_IP}")
    say.say("switch configuration (switch.yaml):")
    say.block(CONFIG)
    docroot = ctx.path("www")
    docroot.mkdir()
    for name, text in PAGES.items():
        (docroot / name).write_text(text, encoding="utf-8")
    lab.spawn([PYTHON, "-m", "http.server", "80", "--bind", blog.ip, "--directory",
               str(docroot)], ns=blog.ns)
    wait_listening(blog.ns, 80)
    sw = ctx.switch(esx, "esx", CONFIG)
    say.command("esx", "vspan up -c switch.yaml")

    say.step("on the console: Wireshark captures the interface, vspan collect receives ERSPAN")
    say.command("console", "tcpdump -i eth0 -w wireshark.pcap   # Wireshark: Capture -> Start")
    wire = ctx.tcpdump(console, "eth0", "wireshark")
    out = ctx.path("console.pcapng")
    say.command("console", f"vspan collect --listen {CONSOLE_IP} -w console.pcapng")
    collector = lab.spawn([*VSPAN, "collect", "--listen", CONSOLE_IP, "-w", str(out),
                           "--progress", "60"], ns=console, stderr_pipe=True)
    said = read_until(collector, b"listening on", 20.0)
    if b"listening on" not in said:
        raise DemoError(f"vspan collect did not start: {said.decode(errors='replace')}")
    say.block(said.decode(errors="replace"))

    say.step("win7 browses the blog")
    urls = [f"http://{blog.ip}/", f"http://{blog.ip}/erspan.html"]
    say.command("win7", "http-get " + " ".join(urls) + "   # Python's urllib as the browser")
    got = python(win7.ns, BROWSE, *urls, check=False)
    say.block(got.stdout.strip() or got.stderr.strip())
    wire.stop(settle=0.8)
    summary = lab.stop(collector, signal.SIGINT)
    mirror = sw.mirrors()["to-laptop"]["counters"]

    say.step("Wireshark's view with the display filter 'gre' (ERSPAN rides in GRE)")
    everything = tshark(wire.path, "frame")
    gre = tshark(wire.path, "gre")
    erspan = tshark(wire.path, "erspan")
    say.command("console", "tshark -r wireshark.pcap -Y gre")
    say.block(gre or ["(nothing)"], limit=14)
    say.say(f"({len(everything)} frames captured, {len(gre)} match 'gre', "
            f"{len(erspan)} match 'erspan')")
    layers = tshark_fields(wire.path, "gre && http.request", "frame.protocols", "ip.dst",
                           "http.request.method", "http.request.uri")

    say.step("what vspan collect wrote (decapsulated, one interface per session and direction)")
    say.block(summary)
    streams = tshark_fields(out, "http.request", "tcp.stream", "http.request.uri")
    say.command("console", "vspan follow console.pcapng --list")
    rc, listed, err = vspan_inline(["follow", str(out), "--list"])
    say.block(listed or err)
    index = streams[0][0] if streams else "0"
    say.step("follow the HTTP GET's TCP stream")
    say.command("console", f"vspan follow console.pcapng --index {index}")
    rc2, followed, err2 = vspan_inline(["follow", str(out), "--index", index])
    say.block(followed or err2, limit=30)

    fetched = [ln for ln in got.stdout.splitlines() if ln.startswith("200 ")]
    ev.expect(got.returncode == 0 and len(fetched) == len(urls),
              f"win7 fetched {len(urls)} pages from the blog",
              f"win7's browsing failed: {got.stdout.strip()} {got.stderr.strip()[-300:]}")
    ev.expect(len(gre) > 0 and len(gre) == len(erspan) == mirror["encap_sent"],
              f"Wireshark's 'gre' view shows {len(gre)} ERSPAN frames "
              f"(= the {mirror['encap_sent']} the switch sent)",
              f"the console's capture has {len(gre)} gre / {len(erspan)} erspan frames; "
              f"the switch sent {mirror['encap_sent']}")
    ev.expect(any("erspan" in r[0] and r[2] == "GET" for r in layers),
              "inside them, the HTTP GETs (eth:ip:gre:erspan:eth:ip:tcp:http)",
              f"no HTTP GET inside the gre frames: {layers}")
    written = f"{mirror['mirrored']} frames written"
    ev.expect(written in summary and "lost on the way 0" in summary,
              f"vspan collect wrote all {mirror['mirrored']} mirrored frames, none lost",
              f"vspan collect's summary does not say '{written}' and 'lost on the way 0'")
    ev.expect(rc == 0 and rc2 == 0 and "GET / HTTP/1.1" in followed
              and "kacang is nuts" in followed,
              "vspan follow printed the GET and the blog's page",
              f"vspan follow did not show the GET and the page: {err2.strip()}")

    say.explain([
        f"The switch sent every frame of win7's vNIC as ERSPAN (GRE) to {CONSOLE_IP}, though "
        "none of",
        "that traffic ever left the host: Wireshark's 'gre' filter shows it, vspan collect "
        "turned it back",
        "into plain frames, and the GET's TCP stream reads like the browser saw it.",
    ])


DEMO = DemoSpec(
    name="erspan", number=3, seed="004", title="ERSPAN to a Wireshark console",
    summary="a VM's browsing sent as ERSPAN to a console: the 'gre' view, vspan collect, "
            "the GET's TCP stream followed",
    tools=("tcpdump", "tshark", "ss"), run=run)
