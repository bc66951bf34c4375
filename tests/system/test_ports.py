"""Port backends against the real kernel: namespaces, veth pairs, a TAP device.

A cross-connect (tests/helpers/xconnect.py) joins two ports, so whatever works
end to end here is owed to the backends alone: the AF_PACKET ring with vnet
headers and VLAN restore, and the TAP fd with IFF_VNET_HDR and TUNSETOFFLOAD.

The kernel of our machines has no 802.1Q sub-interfaces (CONFIG_VLAN_8021Q is
off), so tagged traffic is made by raw sockets inside the namespaces, checked
by a raw listener there, delivered to a stack as priority tags (VID 0, which
the kernel accepts without a VLAN device), and TCP is carried across a tagged
veth trunk between two cross-connects.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tests.helpers.netns import Lab, lab, require_tools, requires_root, sh
from tests.helpers.xconnect import CrossConnect, pop_tag, push_tag
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.base import Frame
from vspan.ports.constants import TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6
from vspan.ports.rxsteer import parse_mask
from vspan.ports.tapqueue import TapQueuePort
from vspan.ports.vnet import F_NEEDS_CSUM, VNET_STRUCT

pytestmark = [pytest.mark.system, requires_root]

PROBE = str(Path(__file__).resolve().parents[1] / "helpers" / "netprobe.py")
PY = sys.executable
NET = "10.77.0"
IP_A, IP_B, IP_T = f"{NET}.1", f"{NET}.2", f"{NET}.3"
MAC_A, MAC_B, MAC_T = "02:77:00:00:00:0a", "02:77:00:00:00:0b", "02:77:00:00:00:0c"
TRANSFER = 24 << 20


@pytest.fixture
def plab() -> Iterator[Lab]:
    """A lab whose names all start with this helper's prefix ``vp2``."""
    with lab(prefix=f"vp2{secrets.token_hex(2)}") as the_lab:
        yield the_lab


def two_hosts(lab_: Lab) -> tuple[str, str, str, str]:
    """Namespaces A and B, each with eth0 on a veth; returns (ns_a, ns_b, if_a, if_b)."""
    ns_a = lab_.netns("na")
    ns_b = lab_.netns("nb")
    if_a = lab_.veth("a", ns_a, addr=f"{IP_A}/24", mac=MAC_A)
    if_b = lab_.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    return ns_a, ns_b, if_a, if_b


class Seen:
    """Observer for a cross-connect: what kinds of frames passed, per source port."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.partial: dict[str, int] = {}
        self.gso: dict[str, int] = {}
        self.biggest: dict[str, int] = {}
        self.samples: dict[str, list[Frame]] = {}

    def __call__(self, port: str, frames: list[Frame]) -> None:
        self.frames[port] = self.frames.get(port, 0) + len(frames)
        for f in frames:
            if f.vnet and f.vnet[0] & F_NEEDS_CSUM:
                self.partial[port] = self.partial.get(port, 0) + 1
            if f.vnet and f.vnet[1]:
                self.gso[port] = self.gso.get(port, 0) + 1
                samples = self.samples.setdefault(port, [])
                if len(samples) < 20:
                    samples.append(f)
            self.biggest[port] = max(self.biggest.get(port, 0), len(f.data))


def ping(lab_: Lab, ns: str, dst: str, count: int = 5) -> subprocess.CompletedProcess[str]:
    return lab_.exec(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst, check=False)


def wait_line(proc: subprocess.Popen[str], want: str, timeout: float = 10) -> str:
    """Read lines of ``proc`` until one contains ``want``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if want in line:
                return line
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {want!r} from {proc.args!r}")


def transfer(lab_: Lab, src_ns: str, dst_ns: str, dst_ip: str, nbytes: int = TRANSFER) -> None:
    """Send ``nbytes`` over TCP from ``src_ns`` to ``dst_ip`` and compare SHA-256 digests."""
    port = 40000 + secrets.randbelow(20000)
    sink = lab_.popen(dst_ns, PY, PROBE, "sink", dst_ip, str(port), stdout=subprocess.PIPE)
    try:
        wait_line(sink, "listening")
        src = lab_.exec(src_ns, PY, PROBE, "source", dst_ip, str(port), str(nbytes), timeout=60)
        out, _ = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    assert src.stdout.split() == out.split(), "data differs after the switch"
    assert int(out.split()[0]) == nbytes


def tcp_csum_errors(lab_: Lab, ns: str) -> int:
    """``Tcp: InCsumErrors`` of a namespace (checksums the receiving kernel rejected)."""
    text = lab_.exec(ns, "cat", "/proc/net/snmp").stdout
    rows = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("InCsumErrors")])


def offloads(lab_: Lab, ns: str, ifname: str) -> str:
    return lab_.exec(ns, "ethtool", "-k", ifname).stdout


def iperf3(lab_: Lab, client_ns: str, server_ns: str, server_ip: str, seconds: int = 3) -> float:
    """Run iperf3 through the switch; return the received Gbit/s (for the log only)."""
    server = lab_.popen(server_ns, "iperf3", "-s", "-1", "-B", server_ip,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        lab_.wait_listening(server_ns, 5201)
        run = lab_.exec(client_ns, "iperf3", "-c", server_ip, "-t", str(seconds), "-J",
                        timeout=seconds + 30)  # fmt: skip
        result = json.loads(run.stdout)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "error" not in result, result.get("error")
    received = result["end"]["sum_received"]
    assert received["bytes"] > 0
    return float(received["bits_per_second"]) / 1e9


def raw_observer(ifname: str) -> socket.socket:
    """A plain packet socket on ``ifname`` (no auxdata, sees both directions)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 3))
    s.setblocking(False)
    return s


def drain_observer(s: socket.socket) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    while True:
        try:
            data, addr = s.recvfrom(65536)
        except BlockingIOError:
            return out
        out.append((data, addr[2]))


def recv_until(port: AfPacketPort, marker: bytes, count: int, timeout: float = 3) -> list[bytes]:
    """Frames containing ``marker`` that ``port`` receives within ``timeout``."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(got) < count:
        select.select([port.fileno()], [], [], 0.05)
        got += [f.data for f in port.recv_batch() if marker in f.data]
    return got


# --------------------------------------------------------------------- basics


def test_ping_through_cross_connect(plab: Lab) -> None:
    require_tools("ping")
    ns_a, _, if_a, if_b = two_hosts(plab)
    with AfPacketPort("a", if_a) as a, AfPacketPort("b", if_b) as b:
        with CrossConnect(a, b) as xc:
            res = ping(plab, ns_a, IP_B)
        assert res.returncode == 0, res.stdout + res.stderr
        assert " 0% packet loss" in res.stdout
        assert xc.forwarded["a"] >= 5 and xc.forwarded["b"] >= 5
        assert a.counters.rx_frames >= 5 and b.counters.tx_frames >= 5
        assert a.counters.tx_errors == b.counters.tx_errors == 0
        info = a.info()
        assert info.kind == "afpacket" and info.interface == if_a and info.vnet_hdr
        assert len(info.mac) == 6 and info.mtu == 1500


def test_open_brings_interface_up_and_link_state_follows(plab: Lab) -> None:
    ns_a, _, if_a, _ = two_hosts(plab)
    sh("ip", "link", "set", if_a, "down")
    with AfPacketPort("a", if_a) as a:
        assert "UP" in sh("ip", "-br", "link", "show", if_a).stdout
        assert a.link_up()
        plab.exec(ns_a, "ip", "link", "set", "eth0", "down")
        time.sleep(0.1)
        assert not a.link_up()  # peer down: operstate lowerlayerdown
        plab.exec(ns_a, "ip", "link", "set", "eth0", "up")
        deadline = time.monotonic() + 5
        while not a.link_up() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.link_up()
    assert not a.link_up()  # closed


def test_rx_steering_on_a_real_veth_is_set_and_undone(plab: Lab) -> None:
    """rx_steering on a kernel veth: masks written (always), left idle (auto), put back on
    close, a mask the admin set left as found (the decision logic: tests/unit/test_rxsteer.py)."""
    _, _, if_a, if_b = two_hosts(plab)
    path_a = Path("/sys/class/net", if_a, "queues", "rx-0", "rps_cpus")
    if not path_a.exists():
        pytest.skip("kernel without RPS (no rps_cpus)")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to steer")
    mine = os.sched_getaffinity(0)
    want = (set(range(os.cpu_count() or 1)) - mine) or set(range(os.cpu_count() or 1))
    with AfPacketPort("a", if_a, rx_steering="always") as a:
        assert parse_mask(path_a.read_text()) == sum(1 << c for c in want)
        assert "rps to" in a.info().extra["rx_steering"]
    assert parse_mask(path_a.read_text()) == 0
    with AfPacketPort("a", if_a, rx_steering="auto") as a:
        assert parse_mask(path_a.read_text()) == 0  # idle: not steered
        assert "idle" in a.info().extra["rx_steering"]
    path_b = Path("/sys/class/net", if_b, "queues", "rx-0", "rps_cpus")
    path_b.write_text("1\n")  # the admin's
    with AfPacketPort("b", if_b, rx_steering="always") as b:
        assert "already set" in b.info().extra["rx_steering"]
    assert parse_mask(path_b.read_text()) == 1


# ----------------------------------------------------------------------- VLAN

MARK = bytes.fromhex("766970327461670a")  # "vip2tag\n"


def test_tag_stripped_by_the_kernel_is_put_back(plab: Lab) -> None:
    ns_a, _, if_a, _ = two_hosts(plab)
    bcast, src = "ff" * 6, MAC_A.replace(":", "")
    frames = [
        bytes.fromhex(bcast + src + "8100" + "202a" + "88b5") + MARK + b"q" * 40,  # PCP 1 VID 42
        bytes.fromhex(bcast + src + "88a8" + "0064" + "8100" + "002a" + "88b5") + MARK + b"d" * 40,
        bytes.fromhex(bcast + src + "8100" + "a000" + "88b5") + MARK + b"p" * 40,  # priority tag
    ]
    observer = raw_observer(if_a)
    try:
        with AfPacketPort("a", if_a) as a:
            plab.exec(ns_a, PY, PROBE, "send", "eth0", *(f.hex() for f in frames))
            got = recv_until(a, MARK, 3)
            seen = [d for d, _ in drain_observer(observer) if MARK in d]
    finally:
        observer.close()
    assert got == frames  # tags back inline, TPID 802.1ad kept, PCP kept, VID 0 kept
    # the kernel really took the outer tag off (a plain socket sees the frames without it)
    assert len(seen) == 3
    assert seen[0][12:14] == b"\x88\xb5" and seen[1][12:16] == bytes.fromhex("8100002a")


def test_tagged_frames_reach_the_far_side(plab: Lab) -> None:
    _, ns_b, _, if_b = two_hosts(plab)
    dst = MAC_B.replace(":", "")
    tagged = bytes.fromhex(dst + "027700000099" + "8100" + "602a" + "88b5") + MARK + b"t" * 40
    # a priority-tagged ICMP echo: the stack of B accepts VID 0 without a VLAN device
    echo = bytes(
        Ether(src="02:77:00:00:00:99", dst=MAC_B)
        / Dot1Q(vlan=0, prio=5)
        / IP(src=f"{NET}.99", dst=IP_B)
        / ICMP(id=0x7632, seq=1)
        / Raw(MARK * 4)
    )
    plab.exec(ns_b, "ip", "neigh", "add", f"{NET}.99", "lladdr", "02:77:00:00:00:99",
              "dev", "eth0")  # fmt: skip
    listener = plab.popen(ns_b, PY, PROBE, "listen", "eth0", MARK.hex(), "4",
                          stdout=subprocess.PIPE)  # fmt: skip
    try:
        wait_line(listener, "listening")
        with AfPacketPort("b", if_b) as b:
            assert b.send_batch([Frame(tagged), Frame(echo)]) == 2
            replies = recv_until(b, MARK * 4, 1)
        out, _ = listener.communicate(timeout=10)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    lines = out.split()
    assert tagged.hex() in lines  # arrived in B with its tag
    assert echo.hex() in lines
    assert len(replies) == 1
    reply = Ether(replies[0])
    assert ICMP in reply and reply[ICMP].type == 0 and reply[IP].dst == f"{NET}.99"


# ------------------------------------------------------------ own frames


@pytest.mark.parametrize("qdisc_bypass", [True, False])
def test_own_outgoing_frames_are_not_received(plab: Lab, qdisc_bypass: bool) -> None:
    ns_a, _, if_a, _ = two_hosts(plab)
    frame = bytes.fromhex("ff" * 6 + "027700000042" + "88b5") + MARK + b"o" * 40
    listener = plab.popen(ns_a, PY, PROBE, "listen", "eth0", MARK.hex(), "3",
                          stdout=subprocess.PIPE)  # fmt: skip
    observer = raw_observer(if_a)
    try:
        wait_line(listener, "listening")
        with AfPacketPort("a", if_a, qdisc_bypass=qdisc_bypass) as a:
            assert a.send_batch([Frame(frame)] * 5) == 5
            back = recv_until(a, MARK, 5, timeout=0.5)
            out, _ = listener.communicate(timeout=10)
        seen = [(d, kind) for d, kind in drain_observer(observer) if MARK in d]
    finally:
        observer.close()
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert back == []
    assert out.split().count(frame.hex()) == 5  # they did go out
    if not qdisc_bypass:
        # they passed the tap point where other packet sockets see them as outgoing
        assert [kind for _, kind in seen] == [socket.PACKET_OUTGOING] * 5


def test_frames_leave_by_a_send_only_socket(plab: Lab) -> None:
    """Sends go through a second socket that receives nothing (no hook, so the ring socket
    the engine waits on with epoll is not woken per freed skb), bound again when the
    interface is re-created."""
    ns_a, _, if_a, _ = two_hosts(plab)
    frame = bytes.fromhex("ff" * 6 + "027700000042" + "88b5") + MARK + b"s" * 40
    inbound = bytes.fromhex("ff" * 6 + "027700000043" + "88b5") + MARK + b"i" * 40
    with AfPacketPort("a", if_a) as a:
        ep = select.epoll()
        try:
            ep.register(a.fileno(), select.EPOLLIN)  # as the engine waits on a port
            tx = a._tx
            assert tx is not None and tx.fileno() != a.fileno()
            for attempt in range(2):
                listener = plab.popen(ns_a, PY, PROBE, "listen", "eth0", MARK.hex(), "3",
                                      stdout=subprocess.PIPE)  # fmt: skip
                try:
                    wait_line(listener, "listening")
                    assert a.send_batch([Frame(frame)] * 5) == 5
                    plab.exec(ns_a, PY, PROBE, "send", "eth0", *[inbound.hex()] * 3)
                    got = recv_until(a, MARK, 3)
                    out, _ = listener.communicate(timeout=10)
                finally:
                    if listener.poll() is None:
                        listener.kill()
                        listener.wait()
                assert out.split().count(frame.hex()) == 5, attempt  # they went out
                assert got == [inbound] * 3, attempt  # the ring socket received
                with pytest.raises(BlockingIOError):
                    a._tx.recv(2048)  # type: ignore[union-attr]  # the send socket did not
                assert a.counters.tx_errors == 0
                if attempt == 0:  # re-create the interface: both sockets follow it
                    sh("ip", "link", "del", if_a)
                    assert not a.link_up()
                    plab.veth("a", ns_a, addr=f"{IP_A}/24", mac=MAC_A)
                    deadline = time.monotonic() + 5
                    while not a.link_up() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    assert a.link_up()
        finally:
            ep.close()


# ------------------------------------------------------------------ TCP


def test_tcp_with_default_veth_offloads(plab: Lab, record_property: object) -> None:
    require_tools("ethtool", "iperf3")
    ns_a, ns_b, if_a, if_b = two_hosts(plab)
    for ns in (ns_a, ns_b):
        k = offloads(plab, ns, "eth0")
        assert re.search(r"^tx-checksumming: on", k, re.M), "veth default offloads expected"
        assert re.search(r"^tcp-segmentation-offload: on", k, re.M)
    seen = Seen()
    with AfPacketPort("a", if_a) as a, AfPacketPort("b", if_b) as b:
        with CrossConnect(a, b, observe=seen):
            transfer(plab, ns_a, ns_b, IP_B)
            transfer(plab, ns_b, ns_a, IP_A)
            gbps = iperf3(plab, ns_a, ns_b, IP_B)
        assert a.counters.rx_errors == b.counters.rx_errors == 0
    if callable(record_property):
        record_property("iperf3_gbit_s", round(gbps, 2))
    # partial checksums and GSO super-frames crossed the switch, in both directions
    for port in ("a", "b"):
        assert seen.partial.get(port, 0) > 0
        assert seen.gso.get(port, 0) > 0
        assert seen.biggest[port] > 10000
    assert tcp_csum_errors(plab, ns_a) == tcp_csum_errors(plab, ns_b) == 0


def test_tcp_across_a_tagged_trunk(plab: Lab) -> None:
    """A -xc1(push 42)- trunk veth (tagged) -xc2(pop 42)- B: restore + vnet shift under GSO."""
    ns_a, ns_b, if_a, if_b = two_hosts(plab)
    t1 = plab.veth("m")  # both ends in the root namespace
    t2 = plab.name("mp")
    sh("sysctl", "-qw", f"net.ipv6.conf.{t2}.disable_ipv6=1", check=False)
    sh("ip", "link", "set", t2, "up")
    seen = Seen()
    with (
        AfPacketPort("a", if_a) as a,
        AfPacketPort("t1", t1) as p1,
        AfPacketPort("t2", t2) as p2,
        AfPacketPort("b", if_b) as b,
        CrossConnect(a, p1, a_to_b=push_tag(42, pcp=3), b_to_a=pop_tag),
        CrossConnect(p2, b, a_to_b=pop_tag, b_to_a=push_tag(42), observe=seen),
    ):
        res = ping(plab, ns_a, IP_B, count=3)
        assert res.returncode == 0, res.stdout
        transfer(plab, ns_a, ns_b, IP_B)
        transfer(plab, ns_b, ns_a, IP_A)
    # what came off the trunk had the tag back inline and offsets that include it
    assert seen.gso.get("t2", 0) > 0
    for f in seen.samples["t2"]:
        assert f.data[12:16] == bytes.fromhex("8100602a")  # PCP 3, VID 42
        _, _, hdr_len, gso_size, csum_start, csum_offset = VNET_STRUCT.unpack(f.vnet)
        assert csum_start == 14 + 4 + 20 and csum_offset == 16  # TCP behind tag + IPv4
        assert gso_size > 0 and hdr_len <= len(f.data)  # hdr_len: Linux puts skb_headlen
    assert tcp_csum_errors(plab, ns_a) == tcp_csum_errors(plab, ns_b) == 0


# ------------------------------------------------------------------- TAP


def test_tap_port_in_a_namespace(plab: Lab) -> None:
    require_tools("ethtool")
    ns_t = plab.netns("nt")
    ns_b = plab.netns("nb")
    if_b = plab.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    seen = Seen()
    tap = TapQueuePort("t", plab.name("tap"))
    tap.open()
    try:
        assert tap.offloads & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == (
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        )
        assert not tap.preexisting and tap.info().kind == "tap-queue"
        sh("ip", "link", "set", tap.ifname, "netns", ns_t)
        plab.exec(ns_t, "ip", "link", "set", tap.ifname, "address", MAC_T)
        plab.exec(ns_t, "ip", "addr", "add", f"{IP_T}/24", "dev", tap.ifname)
        plab.exec(ns_t, "ip", "link", "set", tap.ifname, "up")
        k = offloads(plab, ns_t, tap.ifname)
        assert re.search(r"^tcp-segmentation-offload: on", k, re.M)
        assert tap.link_up()
        with AfPacketPort("b", if_b) as b, CrossConnect(tap, b, observe=seen):
            res = ping(plab, ns_t, IP_B)
            assert res.returncode == 0, res.stdout + res.stderr
            transfer(plab, ns_t, ns_b, IP_B)
            transfer(plab, ns_b, ns_t, IP_T)
        assert tap.counters.rx_errors == tap.counters.tx_errors == 0
        # the "VM" side handed us GSO frames with partial checksums, and got them from B
        assert seen.gso.get("t", 0) > 0 and seen.partial.get("t", 0) > 0
        assert seen.gso.get("b", 0) > 0
        assert tcp_csum_errors(plab, ns_t) == tcp_csum_errors(plab, ns_b) == 0
    finally:
        tap.close()
    # the device we created goes away with the fd, even from the other namespace
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if plab.exec(ns_t, "ip", "link", "show", tap.ifname, check=False).returncode != 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("tap device still exists after close")


def test_tap_link_state_follows_the_netdev_in_another_namespace(plab: Lab) -> None:
    ns_t = plab.netns("nt")
    frame = Frame(bytes.fromhex("ff" * 6 + "027700000042" + "88b5") + MARK + b"l" * 40)
    with TapQueuePort("t", plab.name("tap")) as tap:
        assert tap.link_up()
        sh("ip", "link", "set", tap.ifname, "netns", ns_t)  # a moved device arrives down
        assert tap.send_batch([frame]) == 0 and tap.last_tx_errno == errno.EIO
        assert not tap.link_up()
        plab.exec(ns_t, "ip", "link", "set", tap.ifname, "up")
        assert tap.send_batch([frame]) == 1
        assert tap.link_up()
        plab.exec(ns_t, "ip", "link", "del", tap.ifname)
        assert not tap.link_up()
        for _ in range(3):  # the fd now reports POLLERR; reading must stay harmless
            assert tap.recv_batch() == []
        assert tap.counters.rx_errors <= 1
        assert tap.send_batch([frame]) == 0


def test_preexisting_persistent_tap_stays(plab: Lab) -> None:
    name = plab.name("ptap")
    sh("ip", "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr")
    with TapQueuePort("p", name) as tap:
        assert tap.preexisting
        assert tap.link_up()
    assert sh("ip", "link", "show", name, check=False).returncode == 0


# ------------------------------------------------------------ robustness


def test_malformed_frames_never_crash(plab: Lab) -> None:
    x = plab.veth("x")
    xp = plab.name("xp")
    sh("sysctl", "-qw", f"net.ipv6.conf.{xp}.disable_ipv6=1", check=False)
    sh("ip", "link", "set", xp, "up")
    good = bytes.fromhex("ff" * 6 + "027700000001" + "88b5") + MARK + b"g" * 40
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    peer.bind((xp, 3))
    peer.settimeout(0.2)
    tap = TapQueuePort("t", plab.name("tap"))
    try:
        with AfPacketPort("x", x) as port:
            # runts and broken tags from the wire (the kernel itself refuses or drops
            # some of them; whatever reaches the ring must come out unharmed)
            header_only = b"\xff" * 12 + b"\x88\xb5"
            junk = (
                b"\x01",
                b"\x00" * 13,
                b"\x00" * 14,
                header_only,
                b"\xff" * 12 + b"\x81\x00",
                b"\xff" * 12 + b"\x81\x00\x01",
                b"\xff" * 12 + b"\x88\xa8\x00\x05\x81\x00",
            )
            for j in junk:
                try:
                    peer.send(j)
                except OSError:
                    pass
            time.sleep(0.1)
            got_junk = [f.data for f in port.recv_batch()]
            assert header_only in got_junk and set(got_junk) <= set(junk)
            # broken frames from the switch
            bad_vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, 1, 60000, 1448, 50000, 16)
            weird = [
                Frame(b""),
                Frame(b"\x00" * 5),
                Frame(good, b"\x01"),
                Frame(good, bad_vnet),
                Frame(good, VNET_STRUCT.pack(F_NEEDS_CSUM, 0, 0, 0, 200, 16)),
                Frame(good, VNET_STRUCT.pack(0, 0x42, 0, 0, 0, 0)),
                Frame(good + b"\x00" * 9000),  # beyond the MTU and not GSO
                Frame(good),
            ]
            assert port.send_batch(weird) <= 4
            assert port.counters.tx_errors >= 5
            assert port.send_batch([Frame(good)]) == 1
            got: list[bytes] = []
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and len(got) < 2:
                try:
                    got.append(peer.recv(65536))
                except TimeoutError:
                    pass
            assert got.count(good) >= 2  # the port still works
            tap.open()
            assert tap.send_batch(weird) <= 4
            assert tap.counters.tx_errors >= 4
    finally:
        tap.close()
        peer.close()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _socket_maps() -> int:
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        return sum(1 for line in f if "socket:" in line or "packet" in line)


def test_close_releases_sockets_maps_and_fds(plab: Lab) -> None:
    _, _, if_a, _ = two_hosts(plab)
    fds, maps = _open_fds(), _socket_maps()
    for i in range(10):
        port = AfPacketPort("a", if_a, ring_frames=16)
        port.open()
        if i == 0:
            assert _socket_maps() > maps  # the ring is mapped while open
        port.close()
        port.close()
        tap = TapQueuePort("t", plab.name("tap"))
        tap.open()
        tap.close()
        tap.close()
    assert _open_fds() == fds
    assert _socket_maps() == maps


def test_ring_overflow_is_counted(plab: Lab) -> None:
    ns_a, _, if_a, _ = two_hosts(plab)
    frame = (bytes.fromhex("ff" * 6 + "027700000042" + "88b5") + MARK + b"f" * 40).hex()
    with AfPacketPort("a", if_a, ring_frames=16) as a:
        slots = a.geometry.frame_nr
        plab.exec(ns_a, PY, PROBE, "send", "eth0", *([frame] * (slots + 100)))
        first = recv_until(a, MARK, slots, timeout=2)
        assert len(first) == slots
        plab.exec(ns_a, PY, PROBE, "send", "eth0", *([frame] * 3))
        assert len(recv_until(a, MARK, 3, timeout=2)) == 3
        assert a.counters.rx_dropped >= 100  # the LOSING flag made the port ask the kernel
