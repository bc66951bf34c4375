"""The seed's duplicate view with real traffic: a psping-like TCP connect captured at two
switch ports shows every packet twice; vspan flows calls the copies duplicates (not
retransmissions) before, vspan dedup leaves one of each, and flows sees none after."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ping, ports_yaml, static_neighbors
from vspan.capture.pcapng import CaptureReader

pytestmark = pytest.mark.system

VSPAN = [sys.executable, "-m", "vspan.cli.main"]
SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5555))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
data = b""
while len(data) < 3000:
    chunk = c.recv(65536)
    if not chunk:
        break
    data += chunk
c.sendall(data[::-1])
c.recv(1)  # wait for the client's FIN
c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 5555), timeout=5)
c.sendall(b"psping" * 500)
got = b""
while len(got) < 3000:
    got += c.recv(65536)
c.close()
print(len(got))
"""


def flows_json(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([*VSPAN, "flows", str(path), "--json", "-q"], capture_output=True,
                         text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_two_capture_points_duplicates_then_dedup(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tshark")
    ips = {"a": "10.9.7.1", "b": "10.9.7.2"}
    h = hosts(netlab, {k: v + "/24" for k, v in ips.items()})
    static_neighbors(netlab, h, ips)
    cap = tmp_path / "two-points.pcapng"
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        ping(netlab, h["a"][0], ips["b"], count=1)  # the switch learns both MACs
        capture = subprocess.Popen([*VSPAN, "capture", "a", "b", "-w", str(cap), "--socket",
                                    sw.socket], stderr=subprocess.PIPE, text=True)
        server = netlab.popen(h["b"][0], sys.executable, "-c", SERVER, stdout=subprocess.PIPE)
        try:
            assert capture.stderr is not None and server.stdout is not None
            assert "capturing on a, b" in capture.stderr.readline()
            assert server.stdout.readline().strip() == "ready"
            client = netlab.exec(h["a"][0], sys.executable, "-c", CLIENT, ips["b"])
            assert client.stdout.strip() == "3000"
            server.wait(timeout=10)
            time.sleep(0.5)
        finally:
            capture.send_signal(signal.SIGINT)
            _, err = capture.communicate(timeout=20)
            if server.poll() is None:
                server.kill()
        assert capture.returncode == 0, err
    before = [f for f in flows_json(cap) if f["proto"] == "tcp"]
    assert len(before) == 1, before
    f = before[0]
    assert (f["orig_h"], f["resp_h"], f["resp_p"]) == (ips["a"], ips["b"], 5555)
    assert f["conn_state"] == "SF" and f["history"].startswith("ShAD")
    # every packet twice: sent by a into the switch (a, in), delivered to b (b, out)
    assert f["duplicates"] == f["orig_pkts"] + f["resp_pkts"] > 0
    assert f["orig_frames"] == 2 * f["orig_pkts"] and f["resp_frames"] == 2 * f["resp_pkts"]
    assert set(f["interfaces"]) == {"a", "b"}
    # tshark counts every copy as a frame of the conversation, and calls the copies of the
    # SYN, SYN-ACK and data segments retransmissions (the seed's "massive retransmission");
    # vspan counts only real ones (on a busy machine a tail-loss probe may send one)
    conv = subprocess.run(["tshark", "-r", str(cap), "-q", "-z", "conv,tcp"],
                          capture_output=True, text=True, check=True).stdout
    row = next(line for line in conv.splitlines() if "<->" in line)
    assert int(row.split()[-5]) == f["orig_frames"] + f["resp_frames"]  # Total frames
    naive = subprocess.run(["tshark", "-r", str(cap), "-Y", "tcp.analysis.retransmission"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(naive) >= 4 + f["retransmissions"]

    out = tmp_path / "dedup.pcapng"
    proc = subprocess.run([*VSPAN, "dedup", str(cap), "-w", str(out), "--keep-point", "b",
                           "--json"], capture_output=True, text=True, check=True)
    rep = json.loads(proc.stdout)
    assert rep["removed"] >= f["duplicates"]  # ARP/ICMP copies may be removed as well
    after = [x for x in flows_json(out) if x["proto"] == "tcp"]
    assert len(after) == 1
    g = after[0]
    assert g["duplicates"] == 0 and g["retransmissions"] == f["retransmissions"]
    assert (g["conn_state"], g["history"]) == (f["conn_state"], f["history"])
    assert (g["orig_pkts"], g["resp_pkts"]) == (f["orig_pkts"], f["resp_pkts"])
    assert (g["orig_bytes"], g["resp_bytes"]) == (f["orig_bytes"], f["resp_bytes"]) == (3000,
                                                                                        3000)
    # the copies kept are the ones captured at b, the preferred point
    tcp_points = {r.interface_name for r in CaptureReader(str(out)) if len(r.data) >= 34
                  and r.data[23] == 6}
    assert tcp_points == {"b"}
