"""Every ``vspan demo`` runs end to end, exits 0 only with its evidence, and leaves nothing.

Each demo is run as a user runs it (``vspan demo NAME``, a separate process);
the test checks the exit status, the evidence lines it prints, and that none of
its namespaces, links, files or processes are left. A demo made to fail (its
mirror session removed) must exit 1 naming what was not observed, and a demo
interrupted with Ctrl-C must clean up and exit 130.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.netns import requires_root
from vspan.demos import DEMOS, find, lbfo, mirror
from vspan.demos.runner import run_demo

pytestmark = [pytest.mark.system, requires_root]

VSPAN = [sys.executable, "-m", "vspan.cli.main"]
HEADER = re.compile(r"namespaces are called (vdemo[0-9a-f]{4})-NAME, its files are in (\S+);")

# what each demo must say it observed (besides "demo ok: NAME"): a whole line, or a pattern
# for a line whose numbers depend on the run (bytes, which member carried more)
EXPECTED: dict[str, list[str | re.Pattern[str]]] = {
    "mirror": ["sniffie saw columbia's 4 echo requests and 4 replies",
               "sniffie saw atlantis's 4 echo requests and 4 replies"],
    "rspan": ["the monitor (port 2258) saw 172.24.4.52's 4 echo requests and 4 replies",
              "every one of them 60 bytes long (mirrored packet length)",
              "the trunk carried them tagged VLAN 205 (64 bytes with the tag)"],
    "erspan": ["inside them, the HTTP GETs (eth:ip:gre:erspan:eth:ip:tcp:http)",
               "vspan follow printed the GET and the blog's page"],
    "firewall": ["client -> web:80 went through (200 OK)",
                 "web -> db:3306 went through (the query was answered)",
                 "the scan found no open port on web or db (6 ports each)",
                 "vspan trace names rule 1003 for compromised -> db:3306",
                 "the db saw no IP packet of the compromised VM"],
    "lbfo": ["psping connected 3 times to fs01:445 over the team",
             re.compile(r"every one of the \d+ packets twice: once at its pNIC "
                        r"\(lbfo:pnicN\), once at the tNIC \(lbfo\), with one packet id"),
             "two SYN and two SYN-ACK per connection (6 and 6 for 3)",
             re.compile(r"tshark calls [1-9]\d* copies retransmissions and [1-9]\d* "
                        r"duplicate ACKs"),
             re.compile(r"vspan flows: 3 connections \(SF\), \d+ duplicates, "
                        r"0 retransmissions"),
             re.compile(r"vspan dedup: \d+ frames before, \d+ after, all from lbfo; tshark "
                        r"flags none of them"),
             re.compile(r"the transfer went on after pnic[12] went down: [\d,]+ bytes in the "
                        r"\d+ intervals after it"),
             re.compile(r"vspan show ports: lbfo:pnic[12] down \(no carrier\), active "
                        r"pnic[12], failovers [1-9]"),
             re.compile(r"the far team po1 failed over too \(active eth[12]\)")],
    "troubleshoot": ["vspan trace: app1's ARP floods VLAN 10 to app2 and says 'not to guest: "
                     "not a member of VLAN 10'",
                     "after vspan reload guest reaches app1 (2/2)",
                     "vspan trace names the ACL entry deny-all at app2",
                     "after vspan acl remove guest reaches app2 (2/2)"],
    # numbers vary run to run: the fixed part of each evidence line
    "metro": ["the stream ran before (", "the sniffer kept seeing the VM: ",
              "vspan vm migrate reported ", "the flow became asymmetric: site 1's perimeter",
              "vspan's per-port firewall dropped nothing: the VM's "],
}
PREFIX_ONLY = {"metro"}


def left_behind(tag: str, workdir: str) -> list[str]:
    """Namespaces, links, files and processes of a run that still exist."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left = [n for n in ns.split() if n.startswith(tag)]
    left += [ln.split(":")[1].strip() for ln in links.splitlines() if f" {tag}" in ln]
    if os.path.exists(workdir):
        left.append(workdir)
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if workdir.encode() in cmd:
                left.append(f"process {pid}: {cmd.decode(errors='replace')[:120]}")
    return left


def run_cleaning_up(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a demo; if it overruns ``timeout`` (or the test is interrupted), SIGTERM it and
    let it remove its namespaces (``subprocess.run`` would SIGKILL it and leak them)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        finally:
            proc.kill()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def header(out: str) -> tuple[str, str]:
    m = HEADER.search(out)
    assert m, out[:500]
    return m.group(1), m.group(2)


def test_every_story_has_a_test() -> None:
    assert set(EXPECTED) == {s.name for s in DEMOS}


@pytest.mark.parametrize("name", [s.name for s in DEMOS])
def test_demo(name: str) -> None:
    # `vspan demo` without a name is the mirror demo (README, scripts/demo.sh)
    args = ["demo"] if name == "mirror" else ["demo", name]
    started = time.monotonic()
    proc = run_cleaning_up([*VSPAN, *args], timeout=180)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stderr}\n{proc.stdout[-4000:]}"
    assert f"demo ok: {name}\n" in proc.stdout
    for line in EXPECTED[name]:
        if isinstance(line, re.Pattern):
            assert re.search(rf"^  observed: {line.pattern}", proc.stdout, re.M), \
                (line.pattern, proc.stdout[-3000:])
        else:
            want = f"  observed: {line}" if name in PREFIX_ONLY else f"  observed: {line}\n"
            assert want in proc.stdout, (line, proc.stdout[-3000:])
    assert "--- what you saw" in proc.stdout
    tag, workdir = header(proc.stdout)
    assert left_behind(tag, workdir) == []
    print(f"vspan demo {name}: {elapsed:.1f} s")  # shown with -s; no timed assertion


def test_a_demo_without_its_evidence_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirror demo with its mirror session gone: tcpdump on sniffie sees nothing, and
    the demo must say so and exit 1 (in process, so the configuration can be broken)."""
    broken = mirror.CONFIG.split("mirrors:")[0]
    monkeypatch.setattr(mirror, "CONFIG", broken)
    out: list[str] = []
    err: list[str] = []
    rc = run_demo(find("mirror"), out.append, err.append)
    assert rc == 1
    assert "vspan demo mirror: NOT OBSERVED: sniffie saw 0 of columbia's 4 echo requests and " \
           "0 of its 4 replies" in err, err
    assert not any(line.startswith("demo ok") for line in out)
    tag, workdir = header("\n".join(out))
    assert left_behind(tag, workdir) == []


def test_lbfo_without_duplicates_or_a_failure_mid_transfer_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lbfo demo capturing only at the team (each packet once) and pulling the cable
    after the transfer has ended: it must name each missing piece of evidence and exit 1."""
    monkeypatch.setattr(lbfo, "POINTS", (lbfo.TEAM,))
    monkeypatch.setattr(lbfo, "FAIL_AT_S", lbfo.TRANSFER_S + 1.5)
    out: list[str] = []
    err: list[str] = []
    rc = run_demo(find("lbfo"), out.append, err.append)
    assert rc == 1, (err, out[-40:])
    said = [line.removeprefix("vspan demo lbfo: NOT OBSERVED: ") for line in err]
    for start in ("the packets were not each seen once at a member and once at the team",
                  "3 SYN and 3 SYN-ACK captured for 3 connections, not 6 each",
                  "tshark flags 0 retransmissions and 0 duplicate ACKs",
                  "vspan flows found 3 connections (SF, SF, SF), 0 duplicates and "
                  "0 retransmissions",
                  "vspan dedup left",
                  "the transfer did not go on after the failure",
                  "member counters around the failure"):
        assert any(line.startswith(start) for line in said), (start, err)
    assert len(said) == 7, err  # psping worked, and the member did fail (both teams)
    assert not any(line.startswith("demo ok") for line in out)
    tag, workdir = header("\n".join(out))
    assert left_behind(tag, workdir) == []


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_demo_removes_everything(sig: signal.Signals, status: int) -> None:
    """Ctrl-C reaches the whole foreground process group (the demo, its switches, tcpdump);
    SIGTERM only the demo. Either way nothing is left."""
    proc = subprocess.Popen([*VSPAN, "demo", "rspan"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "tcpdump -i eth0" not in seen:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "tcpdump -i eth0" in seen, seen  # switches and captures are running
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _rest, err = proc.communicate(timeout=60)
    assert proc.returncode == status, (proc.returncode, err)
    assert "interrupted; everything it made is removed" in err
    tag, workdir = header(seen)
    assert left_behind(tag, workdir) == []
