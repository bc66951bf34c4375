"""A hostile VM behind a real TAP: virtio-net headers the guest writes into the TAP queue.

The test holds the TAP's queue as QEMU would (``IFF_VNET_HDR``, TSO/USO negotiated) and
writes frames behind headers of its choosing; ``vspan up`` reads them from the TAP's
netdev. The kernel (``tun_get_user`` -> ``virtio_net_hdr_to_skb``) refuses most
inconsistent headers at the write itself, but a TCP super-frame with ``gso_size`` 1 is
legal to it: vspan must drop that one at receive (``gso-segments``, counted on the TAP
port) instead of cutting it into thousands of segments for a truncating mirror
session and forwarding the rest."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.helpers.netns import Lab
from tests.system.switchproc import running_switch
from tests.system.test_switch import MACS, hosts, ports_yaml
from vspan.ports.base import Frame
from vspan.ports.tapqueue import TapQueuePort
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT

pytestmark = pytest.mark.system

VM_MAC = MACS["g"]
PAYLOAD = 8000


def _rx_packets(lab: Lab, ns: str) -> int:
    out = lab.exec(ns, "cat", "/sys/class/net/eth0/statistics/rx_packets").stdout
    return int(out.strip())


def _wait(check: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_hostile_gso_size_from_a_tap_is_dropped_at_receive(netlab: Lab, tmp_path: Path) -> None:
    h = hosts(netlab, {"b": "10.77.0.2/24", "c": "10.77.0.9/24"})
    tap = netlab.name("tap")
    cfg = (ports_yaml(h) + f"  vm: {{type: tap, interface: {tap}}}\n"
           "mirrors:\n  m: {sources: [{port: vm, direction: ingress}], destinations: [c], "
           "mirrored_packet_length: 100}\n")
    data = bytes(Ether(src=VM_MAC, dst=MACS["b"]) / IP(src="10.77.0.7", dst="10.77.0.2") /
                 TCP(sport=4000, dport=5001, flags="PA") / Raw(b"h" * PAYLOAD))
    with running_switch(tmp_path, cfg) as sw:
        queue = TapQueuePort("qemu", tap)  # the "guest": TSO/USO/checksum negotiated
        queue.open()
        try:
            assert _wait(lambda: {p["name"]: p for p in sw.show("ports")}["vm"]["link"]
                         == "up")
            s_before = _rx_packets(netlab, h["c"][0])
            # a plain frame first: the path works (b gets it, c a copy)
            assert queue.send_batch([Frame(data[:200 + 54])]) == 1
            assert _wait(lambda: _rx_packets(netlab, h["c"][0]) > s_before)
            b_before = _rx_packets(netlab, h["b"][0])
            s_before = _rx_packets(netlab, h["c"][0])
            # a whole TCP super-frame to be cut into 1-byte segments: the kernel takes it
            hostile = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1, 34, 16)
            assert queue.send_batch([Frame(data, hostile)]) == 1, queue.last_tx_errno
            assert _wait(lambda: sw.drops("gso-segments", port="vm") == 1)
            time.sleep(1.0)  # anything it would have become has arrived by now
            assert _rx_packets(netlab, h["c"][0]) - s_before < 5  # not 8000 copies
            assert _rx_packets(netlab, h["b"][0]) - b_before < 5
            assert sw.drops("tx-error") == 0
            # an inconsistent header never reaches vspan through a TAP: the kernel refuses
            # the write (vspan's own check is for every other source: memory ports, tests)
            bad = VNET_STRUCT.pack(F_NEEDS_CSUM, 0, 0, 0, 34, 60000)
            assert queue.send_batch([Frame(data[:254], bad)]) == 0
            assert queue.last_tx_errno == errno.EINVAL
        finally:
            queue.close()
