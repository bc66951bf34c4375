#!/usr/bin/env python3
"""Benchmark of the port backends alone: a two-port cross-connect (not a test).

Two namespaces (10.77.0.1 and .2, default veth offloads) joined by
``tests/helpers/xconnect.CrossConnect`` between two ports, the forwarding
thread pinned to CPU1, the traffic tools to CPU0. Setups:

* ``veth-direct``: one veth pair, no switch (the physical limit);
* ``afpacket``: AfPacketPort <-> AfPacketPort;
* ``afpacket-tso-off``: as ``afpacket`` with TSO off on both switch-side veth
  ends, so every GSO frame is segmented in software (the port sends through
  the qdisc and the kernel cuts it; issue 7 item 10);
* ``tap``: TapQueuePort (the queue side of a TAP; its netdev moved into
  namespace A) <-> AfPacketPort.

Per setup: TCP Gbit/s A->B and B->A (iperf3 -t SECONDS, one stream), ping RTT
(``ping -c 100 -i 0.01``, avg and min) and, for ``afpacket``, forwarding
capacity in 60-byte frames per second (trafgen on CPU0; counted at B's eth0,
and as forwarded by the cross-connect: B's stack shares CPU1 and drops some).
Medians of RUNS runs are printed as a table.

Run as root from the repository root: ``.venv/bin/python bench/bench_ports.py``
(``--runs 1 --seconds 2`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.helpers.netns import Lab, is_root, lab, sh  # noqa: E402
from tests.helpers.xconnect import CrossConnect  # noqa: E402
from vspan.ports.afpacket import AfPacketPort  # noqa: E402
from vspan.ports.base import Port  # noqa: E402
from vspan.ports.tapqueue import TapQueuePort  # noqa: E402

IP_A, IP_B = "10.77.0.1", "10.77.0.2"
MAC_B = "02:77:00:00:00:0b"
GEN_CPU, SWITCH_CPU = 0, 1


def iperf3(lab_: Lab, client: str, server: str, server_ip: str, seconds: int) -> float:
    """Gbit/s received by a one-stream iperf3 run (client and server on GEN_CPU)."""
    srv = lab_.popen(
        server, "taskset", "-c", str(GEN_CPU), "iperf3", "-s", "-1", "-B", server_ip,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            if lab_.exec(server, "ss", "-Hltn", "sport = :5201").stdout.strip():
                break
            time.sleep(0.05)
        out = lab_.exec(
            client, "taskset", "-c", str(GEN_CPU), "iperf3", "-c", server_ip,
            "-t", str(seconds), "-J", check=False, timeout=seconds + 30,
        ).stdout  # fmt: skip
        srv.wait(10)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    try:
        result = json.loads(out)
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError):
        return 0.0


def ping(lab_: Lab, ns: str, dst: str) -> tuple[float, float]:
    """(avg, min) RTT in microseconds of ``ping -c 100 -i 0.01``."""
    out = lab_.exec(ns, "ping", "-q", "-c", "100", "-i", "0.01", dst, check=False).stdout
    m = re.search(r"= ([\d.]+)/([\d.]+)/", out)
    if not m:
        return (float("nan"), float("nan"))
    return (float(m.group(2)) * 1000, float(m.group(1)) * 1000)


def rx_packets(lab_: Lab, ns: str, ifname: str) -> int:
    out = lab_.exec(ns, "cat", f"/sys/class/net/{ifname}/statistics/rx_packets").stdout
    return int(out)


def capacity(
    lab_: Lab, ns_src: str, ns_dst: str, seconds: int, forwarded: Callable[[], int]
) -> tuple[float, float]:
    """Frames per second arriving at ``ns_dst`` and forwarded by the switch while
    trafgen floods from ``ns_src``."""
    dst = ", ".join(f"0x{b}" for b in MAC_B.split(":"))
    cfg = (
        "{ " + dst + ", 0x02, 0x77, 0x00, 0x00, 0x00, 0x0a, c16(0x0800), "
        "0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(14, 33), "
        "10, 77, 0, 1, 10, 77, 0, 2, c16(9), c16(9), c16(26), c16(0), fill(0x55, 18) }"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write(cfg)
    gen = lab_.popen(
        ns_src, "taskset", "-c", str(GEN_CPU), "trafgen", "--dev", "eth0", "--conf", f.name,
        "--cpus", "1", "--notouch-irq", "--no-sock-mem",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # warm-up
        fwd0, before, t0 = forwarded(), rx_packets(lab_, ns_dst, "eth0"), time.monotonic()
        time.sleep(seconds)
        fwd1, after, t1 = forwarded(), rx_packets(lab_, ns_dst, "eth0"), time.monotonic()
    finally:
        gen.send_signal(signal.SIGINT)  # trafgen stops cleanly on SIGINT, not on SIGTERM
        try:
            gen.wait(10)
        except subprocess.TimeoutExpired:
            gen.kill()
            gen.wait()
        Path(f.name).unlink()
    return (after - before) / (t1 - t0), (fwd1 - fwd0) / (t1 - t0)


@contextmanager
def setup(kind: str) -> Iterator[tuple[Lab, str, str, list[Port]]]:
    """Namespaces A and B joined the ``kind`` way; yields (lab, ns_a, ns_b, ports)."""
    with lab(prefix=f"vp2{secrets.token_hex(2)}") as lab_:
        ns_a, ns_b = lab_.netns("na"), lab_.netns("nb")
        if kind == "veth-direct":
            sh("ip", "link", "add", lab_.name("d"), "netns", ns_a, "type", "veth",
               "peer", "name", lab_.name("dp"), "netns", ns_b)  # fmt: skip
            for ns, ifname, addr in ((ns_a, "d", IP_A), (ns_b, "dp", IP_B)):
                lab_.exec(ns, "ip", "link", "set", lab_.name(ifname), "name", "eth0")
                lab_.exec(ns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
                lab_.exec(ns, "ip", "link", "set", "eth0", "up")
            lab_.exec(ns_b, "ip", "link", "set", "eth0", "address", MAC_B)
            yield lab_, ns_a, ns_b, []
            return
        if_b = lab_.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
        b = AfPacketPort("b", if_b)
        a: Port
        if kind in ("afpacket", "afpacket-tso-off"):
            if_a = lab_.veth("a", ns_a, addr=f"{IP_A}/24")
            if kind == "afpacket-tso-off":
                for ifname in (if_a, if_b):
                    sh("ethtool", "-K", ifname, "tso", "off")
            a = AfPacketPort("a", if_a)
            a.open()
        else:
            tap = TapQueuePort("a", lab_.name("tap"))
            tap.open()
            sh("ip", "link", "set", tap.ifname, "netns", ns_a)
            lab_.exec(ns_a, "ip", "link", "set", tap.ifname, "name", "eth0")
            lab_.exec(ns_a, "ip", "addr", "add", f"{IP_A}/24", "dev", "eth0")
            lab_.exec(ns_a, "ip", "link", "set", "eth0", "up")
            a = tap
        b.open()
        try:
            yield lab_, ns_a, ns_b, [a, b]
        finally:
            a.close()
            b.close()


def measure(kind: str, seconds: int) -> dict[str, float]:
    with setup(kind) as (lab_, ns_a, ns_b, ports):
        xc = CrossConnect(ports[0], ports[1], cpu=SWITCH_CPU) if ports else None
        if xc:
            xc.start()
        try:
            ping(lab_, ns_a, IP_B)  # ARP, warm-up
            res = {
                "tcp_ab": iperf3(lab_, ns_a, ns_b, IP_B, seconds),
                "tcp_ba": iperf3(lab_, ns_b, ns_a, IP_A, seconds),
            }
            res["rtt_avg"], res["rtt_min"] = ping(lab_, ns_a, IP_B)
            if kind not in ("tap", "afpacket-tso-off"):
                rx, fwd = capacity(
                    lab_, ns_a, ns_b, seconds, lambda: xc.forwarded["a"] if xc else 0
                )
                res["kpps"] = rx / 1000
                if xc:
                    res["fwd_kpps"] = fwd / 1000
        finally:
            if xc:
                xc.stop()
        return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--setups", default="veth-direct,afpacket,tap")
    args = parser.parse_args()
    if not is_root():
        print("bench_ports needs root (namespaces, AF_PACKET, TAP)", file=sys.stderr)
        return 2
    kinds = args.setups.split(",")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for run in range(args.runs):
        for kind in kinds[run % len(kinds) :] + kinds[: run % len(kinds)]:
            results[kind].append(measure(kind, args.seconds))
            print(f"run {run + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
    cols = ["tcp_ab", "tcp_ba", "kpps", "fwd_kpps", "rtt_avg", "rtt_min"]
    print(
        "| setup | TCP A->B Gbit/s | TCP B->A Gbit/s | 60-byte kpps at B "
        "| kpps forwarded | ping avg µs | min µs |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        cells = []
        for col in cols:
            values = [r[col] for r in results[kind] if col in r]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
