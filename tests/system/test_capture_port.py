"""`vspan capture` on live ports: pcapng read by tshark, directions, drops with reasons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ping, ports_yaml

pytestmark = pytest.mark.system


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def test_capture_directions_and_drop_reasons(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tshark", "capinfos")
    h = hosts(netlab, {"a": "10.9.0.1/24", "b": "10.9.0.2/24", "c": "10.9.0.3/24"})
    # c is a trunk without a native VLAN: everything it sends untagged is dropped
    cfg = ports_yaml(h, {"c": "vlan: {mode: trunk, allowed: [10]}"})
    out = tmp_path / "cap.pcapng"
    with running_switch(tmp_path, cfg) as sw:
        cap = subprocess.Popen(
            [sys.executable, "-m", "vspan.cli.main", "capture", "a", "c", "-w", str(out),
             "--drops", "--socket", sw.socket], stderr=subprocess.PIPE, text=True)
        try:
            assert cap.stderr is not None
            assert "capturing on a, c" in cap.stderr.readline()
            ping(netlab, h["a"][0], "10.9.0.2", count=3)
            assert not ping(netlab, h["c"][0], "10.9.0.2", count=2, check=False)
        finally:
            cap.send_signal(2)
            _, err = cap.communicate(timeout=20)
        assert cap.returncode == 0, err
        assert "packets captured" in err
    info = subprocess.run(["capinfos", str(out)], capture_output=True, text=True, check=True)
    assert "pcapng" in info.stdout
    rows = tshark_fields(out, "frame.interface_name", "frame.packet_flags_direction",
                         "frame.comment", "icmp.type", "arp.opcode")
    for r in rows:  # direction as printed by tshark (0x00000001) -> "in"/"out"
        r[1] = {1: "in", 2: "out"}.get(int(r[1], 16), r[1])
    a_rows = [r for r in rows if r[0] == "a"]
    c_rows = [r for r in rows if r[0] == "c"]
    # a: echo requests inbound (sent into the switch), replies outbound, no drops
    assert {r[3] for r in a_rows if r[1] == "in" and r[3]} == {"8"}
    assert {r[3] for r in a_rows if r[1] == "out" and r[3]} == {"0"}
    assert sum(1 for r in a_rows if r[3] == "8") == 3
    assert all(not r[2] for r in a_rows)
    # c: its ARP requests were dropped at ingress, each with the reason as a comment
    dropped = [r for r in c_rows if "vspan: dropped: vlan-untagged-not-allowed" in r[2]]
    assert dropped and all(r[1] == "in" for r in dropped)
    verdict = subprocess.run(["tshark", "-r", str(out), "-Y", "frame.verdict", "-T", "fields",
                              "-e", "frame.interface_name"], capture_output=True, text=True)
    assert verdict.returncode == 0 and verdict.stdout.strip()
