"""The migration part of bench_dvs.py: a VM migrates while numbered UDP runs both ways.

Lab (tests/helpers/dvslab.py): etcd in a router namespace; hosts h1, h2, h3 with
their agents; the VM ``web`` on h1, a client ``cli`` and a sniffer ``snf`` on h3; a
mirror session copies web's port (both directions) to snf over the overlay. In each
run web streams to cli and cli to web (``--rate`` datagrams per second each, 100
bytes, numbered and time-stamped by bench/udpseq.py), tcpdump in snf records the
copies, and after a second ``vspan vm migrate web --to`` the other host moves the VM;
the next run moves it back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from udpseq import parse

WEB_IP, CLI_IP = "10.0.0.10", "10.0.0.20"
RUN_SECONDS = 4.0
MIGRATE_AFTER = 1.2
UDPSEQ = str(Path(__file__).resolve().parent / "udpseq.py")
CONFIG = """\
switch: {name: mig, mtu: 1600}
hosts: {h1: {}, h2: {}, h3: {}}
port_groups:
  front: {vlan: {mode: access, id: 10}}
ports:
  web: {host: h1, interface: web, vm: web, mac: '02:00:00:00:10:10', port_group: front}
  cli: {host: h3, interface: cli, vm: cli, mac: '02:00:00:00:10:20', port_group: front}
  snf: {host: h3, interface: snf, vm: snf}
mirrors:
  watch: {sources: [web], destinations: [snf]}
"""


def _sniffed(pcap: Path) -> dict[int, set[int]]:
    """Stream -> sequence numbers whose copies the sniffer captured."""
    from vspan.capture.pcapng import read_capture

    out: dict[int, set[int]] = {0: set(), 1: set()}
    for p in read_capture(str(pcap)):
        d = p.data
        if len(d) < 42 or d[12:14] != b"\x08\x00" or d[23] != 17:
            continue
        ihl = (d[14] & 0x0F) * 4
        r = parse(d[14 + ihl + 8:])
        if r is not None:
            out.setdefault(r[0], set()).add(r[1])
    return out


def measure(rec: dict[str, Any], sent: dict[int, list[tuple[int, int]]],
            got: dict[int, set[int]], seen: dict[int, set[int]]) -> dict[str, Any]:
    """One run's numbers (see bench_dvs.py's docstring)."""
    res = rec.get("result", {})
    times = res.get("switch_over", {})
    exp = rec.get("export", {})
    t0 = exp.get("last_frame")
    t1 = None if times.get("switch_over") is None or t0 is None else t0 + times["switch_over"]
    in_window = 0
    if t0 is not None and t1 is not None:
        in_window = sum(1 for s in sent.values() for _q, ts in s if t0 <= ts / 1e9 <= t1)
    all_sent = {k: {q for q, _ts in v} for k, v in sent.items()}

    def ms(v: float | None) -> float | None:
        return None if v is None else v * 1000

    return {
        "switch_over_ms": ms(times.get("switch_over")),
        "traffic_resumed_ms": ms(times.get("traffic_resumed")),
        "detached_ms": ms(times.get("detached")),
        "total_ms": ms(times.get("total")),
        "sent_in_window": in_window,
        "reported_lost": int(res.get("lost", {}).get("sessions", {}).get("watch", 0)),
        "sniffer_gap": sum(len(all_sent[k] - seen.get(k, set())) for k in all_sent),
        "copies_lost": sum(len(got.get(k, set()) - seen.get(k, set())) for k in all_sent),
        "network_lost": sum(len(all_sent[k] - got.get(k, set())) for k in all_sent),
    }


def run_migrations(n: int, rate: int = 1000) -> list[dict[str, Any]]:
    """``n`` migration runs (the VM goes h1 -> h2 -> h1 ...); their measurements."""
    from tests.helpers.dvslab import dvs_lab, wait_until

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-mig-") as tmp, \
            dvs_lab(Path(tmp), prefix="bmig", dvs="mig") as dl:
        work = Path(tmp)
        for h in ("h1", "h2", "h3"):
            dl.add_host(h, mtu=1600)
        dl.add_vm("h1", "web", WEB_IP, "02:00:00:00:10:10")
        dl.add_vm("h3", "cli", CLI_IP, "02:00:00:00:10:20")
        dl.add_vm("h3", "snf", "10.0.9.9", "02:00:00:00:10:99")
        dl.apply(CONFIG)
        for h in ("h1", "h2", "h3"):
            dl.start_agent(h, ttl=10)
        wait_until(lambda: dl.in_sync("h1", "h2", "h3"), 60, "hosts in sync")
        web_ns = dl.hosts["h1"].vms["web"].ns
        cli_ns, snf_ns = dl.hosts["h3"].vms["cli"].ns, dl.hosts["h3"].vms["snf"].ns
        # warm the path (ARP, MAC learning, flows) before the first measured run
        dl.lab.exec(cli_ns, "ping", "-c", "3", "-i", "0.2", WEB_IP, check=False, timeout=30)
        where = "h1"
        for i in range(n):
            to = "h2" if where == "h1" else "h1"
            pcap = work / f"snf{i}.pcap"
            logs = {k: work / f"{k}{i}.json" for k in ("sa", "sb", "ra", "rb")}
            procs = [
                dl.lab.popen(snf_ns, "tcpdump", "-i", "eth0", "-U", "-n", "-w", str(pcap),
                             "udp", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
            time.sleep(0.5)
            wait = RUN_SECONDS + 1.5
            procs += [
                dl.lab.popen(cli_ns, sys.executable, UDPSEQ, "recv", CLI_IP, "9000", str(wait),
                             str(logs["ra"])),
                dl.lab.popen(web_ns, sys.executable, UDPSEQ, "recv", WEB_IP, "9001", str(wait),
                             str(logs["rb"]))]
            time.sleep(0.3)
            senders = [
                dl.lab.popen(web_ns, sys.executable, UDPSEQ, "send", CLI_IP, "9000", "0",
                             str(rate), str(RUN_SECONDS), str(logs["sa"])),
                dl.lab.popen(cli_ns, sys.executable, UDPSEQ, "send", WEB_IP, "9001", "1",
                             str(rate), str(RUN_SECONDS), str(logs["sb"]))]
            time.sleep(MIGRATE_AFTER)
            rec = dl.migrate("web", to, check=False)
            for p in senders + procs[1:]:
                p.wait(timeout=60)
            time.sleep(0.5)
            procs[0].terminate()
            procs[0].wait(timeout=10)
            sent = {0: json.loads(logs["sa"].read_text())["sent"],
                    1: json.loads(logs["sb"].read_text())["sent"]}
            got = {0: {q for s, q in json.loads(logs["ra"].read_text())["got"] if s == 0},
                   1: {q for s, q in json.loads(logs["rb"].read_text())["got"] if s == 1}}
            m = measure(rec, sent, got, _sniffed(pcap))
            m["phase"] = rec.get("phase")
            runs.append(m)
            sys.stderr.write(f"migration {i + 1}/{n} ({where} -> {to}): {m}\n")
            if rec.get("phase") == "done":
                where = to
            time.sleep(1.0)
    return runs
