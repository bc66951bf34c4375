"""GSO super-frames to a port whose device cannot segment them (issue 7 item 10).

A TCP stream from a namespace with default veth offloads reaches the switch as
64 KB GSO super-frames. Sent with PACKET_QDISC_BYPASS to a veth whose TSO is
off, the kernel's software GSO produces a segment list that the bypass path
drops (``ENOBUFS``): the stream stalled after the handshake. The port now reads
the device's features and segments in software instead.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, lab, require_tools, requires_root, sh
from tests.helpers.xconnect import CrossConnect
from tests.system.switchproc import running_switch
from tests.system.test_ports import tcp_csum_errors, transfer
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.ethtool import active_features, feature_names

pytestmark = [pytest.mark.system, requires_root]

NET = "10.76.0"
IP_A, IP_B = f"{NET}.1", f"{NET}.2"
MAC_A, MAC_B = "02:76:00:00:00:0a", "02:76:00:00:00:0b"


@pytest.fixture
def glab() -> Iterator[Lab]:
    """A lab whose names start with this file's prefix ``vgs``."""
    with lab(prefix=f"vgs{secrets.token_hex(2)}") as the_lab:
        yield the_lab


def two_hosts(lab_: Lab) -> tuple[str, str, str, str]:
    ns_a, ns_b = lab_.netns("a"), lab_.netns("b")
    if_a = lab_.veth("a", ns_a, addr=f"{IP_A}/24", mac=MAC_A)
    if_b = lab_.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    return ns_a, ns_b, if_a, if_b


def iperf3(lab_: Lab, client_ns: str, server_ns: str, server_ip: str,
           seconds: int = 3) -> dict[str, int]:
    """Run an iperf3 TCP test to the end; return bytes sent and received."""
    server = lab_.popen(server_ns, "iperf3", "-s", "-1", "-B", server_ip,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        lab_.wait_listening(server_ns, 5201)
        run = lab_.exec(client_ns, "iperf3", "-c", server_ip, "-t", str(seconds), "-J",
                        check=False, timeout=seconds + 30)  # fmt: skip
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    result = json.loads(run.stdout)
    assert "error" not in result, result.get("error")
    return {"sent": int(result["end"]["sum_sent"]["bytes"]),
            "received": int(result["end"]["sum_received"]["bytes"])}


def ethtool_k(ifname: str) -> dict[str, bool]:
    """Every feature ``ethtool -k`` lists, on or off (the independent oracle)."""
    out = sh("ethtool", "-k", ifname).stdout
    return {m.group(1): m.group(2) == "on"
            for m in re.finditer(r"^\s*([\w-]+): (on|off)", out, re.M)}


def test_features_match_ethtool_k(glab: Lab) -> None:
    require_tools("ethtool")
    _, _, _, if_b = two_hosts(glab)
    names = set(feature_names(if_b))
    for change in ((), ("tso", "off"), ("tx", "off"), ("gso", "off", "tso", "on")):
        if change:
            sh("ethtool", "-K", if_b, *change, check=False)
        active, listed = active_features(if_b), ethtool_k(if_b)
        # ethtool shows a feature alone in its group under the group's legacy name
        # (generic-segmentation-offload); every other kernel name appears as is
        assert "tx-tcp-segmentation" in listed and "tx-udp-segmentation" in listed
        assert {n for n, on in listed.items() if on} & names == active & set(listed), change


def test_iperf3_through_the_switch_to_a_port_without_tso(glab: Lab, tmp_path: Path) -> None:
    require_tools("ethtool", "iperf3")
    ns_a, ns_b, if_a, if_b = two_hosts(glab)
    sh("ethtool", "-K", if_b, "tso", "off", "gso", "off")  # the egress device of a -> b
    assert not ethtool_k(if_b)["tx-tcp-segmentation"]
    cfg = f"ports:\n  a: {{interface: {if_a}}}\n  b: {{interface: {if_b}}}\n"
    with running_switch(tmp_path, cfg) as sw:
        res = iperf3(glab, ns_a, ns_b, IP_B)
        ports = {p["name"]: p for p in sw.show("ports")}
        tx_errors = sw.drops("tx-error")
    # the transfer ran to the end: not stalled after the handshake
    assert res["received"] > 5_000_000
    assert ports["b"]["backend_counters"]["tx_segmented"] > 0
    assert ports["b"]["backend_counters"]["tx_errors"] == 0 and tx_errors == 0
    assert ports["a"]["backend_counters"]["tx_segmented"] == 0  # a's veth still has TSO
    assert tcp_csum_errors(glab, ns_b) == 0


def test_tso_turned_off_while_running(glab: Lab) -> None:
    """Features that change under the port: the refused frame is cut, then the port follows."""
    require_tools("ethtool")
    ns_a, ns_b, if_a, if_b = two_hosts(glab)
    with AfPacketPort("a", if_a) as a, AfPacketPort("b", if_b) as b:
        assert b.gso.takes_tcp() and b.info().extra["qdisc_bypass"] == "true"
        sh("ethtool", "-K", if_b, "tso", "off")  # b has not looked yet
        with CrossConnect(a, b):
            transfer(glab, ns_a, ns_b, IP_B, 8 << 20)
        # frames the kernel refused on the bypass path were cut in software and resent
        assert b.counters.tx_segments > 0 and b.counters.tx_errors == 0
        b.link_up()  # the engine's once-a-second look
        assert not b.gso.takes_tcp() and b.info().extra["qdisc_bypass"] == "false"
        cut_here = b.counters.tx_segments
        with CrossConnect(a, b):
            transfer(glab, ns_a, ns_b, IP_B, 8 << 20)
        # now the qdisc path: the kernel segments, nothing is cut here any more
        assert b.counters.tx_segments == cut_here
        assert b.counters.tx_segmented > 0 and b.counters.tx_errors == 0
        sh("ethtool", "-K", if_b, "tso", "on")
        time.sleep(1.05)
        b.link_up()
        assert b.gso.takes_tcp() and b.info().extra["qdisc_bypass"] == "true"
    assert tcp_csum_errors(glab, ns_b) == 0
