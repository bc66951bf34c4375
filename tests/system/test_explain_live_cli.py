"""`vspan policy explain` against a running switch sees a real established TCP connection in
its connection tracking; offline (-c FILE) it cannot, and says so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ports_yaml

pytestmark = pytest.mark.system

SERVER = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.33.0.2", 5000)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); time.sleep(60)
"""
CLIENT = """
import socket, time
s = socket.socket(); s.bind(("10.33.0.1", 40555)); s.connect(("10.33.0.2", 5000))
print("connected", flush=True)
time.sleep(60)
"""


def test_live_explain_sees_an_established_connection(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.33.0.1/24", "b": "10.33.0.2/24"})
    cfg = ports_yaml(h) + (
        "firewall:\n  default_action: drop\n  sections:\n    - name: app\n      rules:\n"
        "        - {id: to-b, action: allow, destinations: [10.33.0.2], services: [tcp/5000]}\n")
    explain_args = ("policy", "explain", "--port", "b", "--direction", "out",
                    "--src-ip", "10.33.0.2", "--dst-ip", "10.33.0.1", "--sport", "5000",
                    "--dport", "40555", "--flags", "A")
    with running_switch(tmp_path, cfg) as sw:
        server = netlab.popen(h["b"][0], sys.executable, "-c", SERVER, stdout=-1)
        client = None
        try:
            assert server.stdout is not None and server.stdout.readline() == "listening\n"
            client = netlab.popen(h["a"][0], sys.executable, "-c", CLIENT, stdout=-1)
            assert client.stdout is not None and client.stdout.readline() == "connected\n"
            live = sw.cli(*explain_args, check=False)
            live_json = json.loads(sw.cli(*explain_args, "--json", check=False).stdout)
            offline = sw.cli(*explain_args, "-c", str(sw.config), check=False)
        finally:
            for proc in (server, client):
                if proc is not None:
                    proc.kill()
                    proc.wait()
    assert live.returncode == 0, live.stdout + live.stderr
    assert "part of tracked connection" in live.stdout
    assert "consulted: the connection table of port b (1 tracked connection)" in live.stdout
    assert "offline" not in live.stdout
    assert live_json["allowed"] and live_json["state"]["live"]
    # offline the same reply is a new flow that the default rule drops, and it says why
    assert offline.returncode == 3, offline.stdout + offline.stderr
    assert "not consulted: connection tracking and extended-ACL sessions" in offline.stdout
