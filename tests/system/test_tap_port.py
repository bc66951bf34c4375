"""The ``type: tap`` port as QEMU and libvirt use it, with a stand-in for QEMU.

vspan makes a persistent TAP (or finds QEMU's) and attaches to its netdev; the
queue fd stays free for QEMU. :class:`~tests.helpers.fakevm.QemuStandIn`
attaches to the queue exactly as QEMU does (TUNSETIFF by name, IFF_VNET_HDR,
TUNSETOFFLOAD) and joins it to a guest namespace. ``test_qemu_vm.py`` does the
same with a real VM.
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fakevm import NO_OFFLOADS, QemuStandIn
from tests.helpers.netns import Lab, lab, requires_root, sh
from tests.helpers.xconnect import CrossConnect
from tests.system.switchproc import running_switch
from tests.system.test_ports import ping, tcp_csum_errors, transfer
from vspan.ports import constants as c
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.base import PortError
from vspan.ports.tap import TapPort
from vspan.ports.tapqueue import TapQueuePort
from vspan.ports.tundev import inspect

pytestmark = [pytest.mark.system, requires_root]

NET = "10.78.0"
IP_G, IP_B = f"{NET}.7", f"{NET}.2"
MAC_G, MAC_B = "02:78:00:00:00:07", "02:78:00:00:00:02"

ATTACH = """
import fcntl, os, struct, sys
fd = int(sys.argv[3])  # /dev/net/tun opened by root (it is mode 0600 on some hosts)
flags = int(sys.argv[2])
try:
    fcntl.ioctl(fd, 0x400454CA, struct.pack("=16sh22x", sys.argv[1].encode(), flags))
except OSError as exc:
    print(exc.errno)
else:
    print(0)
"""


@pytest.fixture
def tlab() -> Iterator[Lab]:
    """A lab whose names start with this file's prefix ``vtp``."""
    with lab(prefix=f"vtp{secrets.token_hex(2)}") as the_lab:
        yield the_lab


def exists(ifname: str) -> bool:
    return sh("ip", "link", "show", ifname, check=False).returncode == 0


def wait_link(port: TapPort, up: bool, timeout: float = 5) -> bool:
    """Poll ``link_up`` (as the engine's housekeeping does) until it says ``up``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port.link_up() == up:
            return True
        time.sleep(0.1)
    return port.link_up() == up


def attach_as(user: str, ifname: str, flags: int) -> int:
    """errno of TUNSETIFF on ``ifname`` by an unprivileged process running as ``user``."""
    pw = pwd.getpwnam(user)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        proc = subprocess.run(
            ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", ATTACH, ifname,
             str(flags), str(fd)],
            capture_output=True, text=True, timeout=30, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def test_qemu_attaches_to_the_tap_vspan_made(tlab: Lab) -> None:
    """Issue 7 item 9: vspan held the queue, so QEMU got EBUSY; now the queue is QEMU's."""
    ns_g, ns_b = tlab.netns("g"), tlab.netns("b")
    if_b = tlab.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    name = tlab.name("tap")
    with TapPort("vm", name) as tap, AfPacketPort("b", if_b) as b:
        assert tap.owned and tap.info().kind == "tap"
        state = inspect(name)
        assert state is not None and state.is_tap and state.flags & c.IFF_PERSIST
        assert not tap.link_up()  # no VM yet: no carrier
        with QemuStandIn(tlab, name, ns_g, f"{IP_G}/24", MAC_G) as vm, \
                CrossConnect(tap, b):
            assert vm.queue.preexisting  # it attached to our device, it did not make one
            assert wait_link(tap, True)
            assert tap.port.gso.takes_tcp()  # the "guest" negotiated TSO
            res = ping(tlab, ns_g, IP_B)
            assert res.returncode == 0, res.stdout + res.stderr
            transfer(tlab, ns_g, ns_b, IP_B, 8 << 20)
            transfer(tlab, ns_b, ns_g, IP_G, 8 << 20)
        assert tap.counters.tx_errors == 0 and tap.counters.rx_errors == 0
        assert tcp_csum_errors(tlab, ns_g) == tcp_csum_errors(tlab, ns_b) == 0
        assert wait_link(tap, False)  # the VM went away
        assert exists(name)  # persistent while the port lives
    assert not exists(name)  # vspan made it, vspan removed it


def test_owner_group_and_multi_queue(tlab: Lab) -> None:
    nobody = pwd.getpwnam("nobody")
    name = tlab.name("tap")
    flags = c.IFF_TAP | c.IFF_NO_PI | c.IFF_VNET_HDR | c.IFF_MULTI_QUEUE
    with TapPort("vm", name, owner="nobody", group=str(nobody.pw_gid), multi_queue=True):
        state = inspect(name)
        assert state is not None
        assert (state.owner, state.group, state.multi_queue) == (
            nobody.pw_uid, nobody.pw_gid, True)
        # QEMU running as the owner may attach queues without privileges ...
        assert attach_as("nobody", name, flags) == 0
        # ... a single-queue attach does not fit a multi-queue device ...
        assert attach_as("nobody", name, flags & ~c.IFF_MULTI_QUEUE) == errno.EINVAL
        # ... and another unprivileged user may not attach at all
        other = next(p.pw_name for p in pwd.getpwall()
                     if p.pw_uid not in (0, nobody.pw_uid) and p.pw_gid != nobody.pw_gid)
        assert attach_as(other, name, flags) == errno.EPERM
    assert not exists(name)


def test_unknown_owner_is_refused_and_nothing_is_made(tlab: Lab) -> None:
    name = tlab.name("tap")
    with pytest.raises(PortError, match=r"tap\.owner: no user named 'no-such-user-x'"):
        TapPort("vm", name, owner="no-such-user-x").open()
    assert not exists(name)


def test_tap_made_outside_vspan_is_used_and_kept(tlab: Lab) -> None:
    name = tlab.name("tap")
    sh("ip", "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr")
    with TapPort("vm", name) as tap:
        assert not tap.owned
    assert exists(name)
    # a different owner than configured: refused with the difference named, device kept
    with pytest.raises(PortError, match=r"made outside vspan\) with owner none \(configured: 0\)"):
        TapPort("vm", name, owner=0).open()
    assert exists(name)
    # a layer-3 TUN or a veth of that name is not a TAP
    veth = tlab.veth("v")
    with pytest.raises(PortError, match="exists and is not a TAP device"):
        TapPort("vm", veth).open()
    tun = tlab.name("tun")
    sh("ip", "tuntap", "add", "dev", tun, "mode", "tun")
    with pytest.raises(PortError, match="is a TUN"):
        TapPort("vm", tun).open()


def test_tap_held_by_a_vm_stays_and_is_adopted(tlab: Lab) -> None:
    ns_g = tlab.netns("g")
    name = tlab.name("tap")
    first = TapPort("vm", name)
    first.open()
    vm = QemuStandIn(tlab, name, ns_g, f"{IP_G}/24", MAC_G).start()
    try:
        first.close()  # vspan stops while the VM runs: the VM keeps its NIC
        assert first.left_in_use and exists(name)
        with TapPort("vm", name) as second:  # the next vspan takes it over
            assert second.owned
            assert wait_link(second, True)
            # a change of settings cannot be applied under a running VM
            with pytest.raises(PortError, match="in use by a VM"):
                TapPort("vm", name, multi_queue=True).open()
            vm.stop()
            assert wait_link(second, False)
            # the VM is gone: a port with new settings re-creates the device
            with TapPort("vm", name, multi_queue=True) as third:
                state = inspect(name)
                assert third.owned and state is not None and state.multi_queue
            assert not exists(name)
            second.close()  # its device was replaced: nothing left to remove, no error
    finally:
        vm.stop()
    assert not exists(name)


def test_create_false_waits_for_qemu_and_follows_a_restart(tlab: Lab) -> None:
    ns_b = tlab.netns("b")
    if_b = tlab.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    name = tlab.name("tap")
    with TapPort("vm", name, create=False) as tap, AfPacketPort("b", if_b) as b, \
            CrossConnect(tap, b):
        assert not exists(name) and not tap.link_up()
        for round_ in range(2):  # QEMU makes the TAP, exits (it goes), starts again
            ns_g = tlab.netns(f"g{round_}")
            with QemuStandIn(tlab, name, ns_g, f"{IP_G}/24", MAC_G, short=f"g{round_}") as vm:
                assert not vm.queue.preexisting  # QEMU made it
                assert wait_link(tap, True)
                res = ping(tlab, ns_g, IP_B, count=3)
                assert res.returncode == 0, res.stdout + res.stderr
            assert not exists(name)
            assert wait_link(tap, False)
        assert not tap.owned
    assert not exists(name)


def test_tap_whose_reader_negotiated_no_offloads(tlab: Lab) -> None:
    """Issue 7 item 10 on a TAP: GSO frames for a VM without TSO are segmented, not lost."""
    ns_g, ns_b = tlab.netns("g"), tlab.netns("b")
    if_b = tlab.veth("b", ns_b, addr=f"{IP_B}/24", mac=MAC_B)
    name = tlab.name("tap")
    with TapPort("vm", name) as tap, AfPacketPort("b", if_b) as b, \
            QemuStandIn(tlab, name, ns_g, f"{IP_G}/24", MAC_G, offloads=NO_OFFLOADS) as vm:
        assert not vm.tso
        assert wait_link(tap, True)
        assert tap.port.gso.describe() == "none"
        assert tap.info().extra["qdisc_bypass"] == "false"
        with CrossConnect(tap, b):
            transfer(tlab, ns_b, ns_g, IP_G, 8 << 20)  # b's stack sends 64 KB GSO frames
        assert tap.counters.tx_segmented > 0
        assert tap.counters.tx_errors == 0
    assert tcp_csum_errors(tlab, ns_g) == 0


def test_queue_port_still_refuses_a_second_holder(tlab: Lab) -> None:
    """What QEMU met before: a single-queue TAP whose queue someone holds is busy."""
    name = tlab.name("tap")
    with TapQueuePort("q", name), pytest.raises(PortError, match="another process holds it"):
        TapQueuePort("q2", name).open()
    assert os.path.exists("/dev/net/tun")


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "x" * 16, "a b"])
def test_hostile_interface_names_touch_nothing(bad: str) -> None:
    """A name that would make sysfs or /proc/sys paths escape is refused before any write."""
    with open("/proc/sys/net/ipv6/conf/all/disable_ipv6", encoding="ascii") as f:
        before = f.read()
    for create in (True, False):
        with pytest.raises(PortError, match="not a valid interface name"):
            TapPort("vm", bad, create=create).open()
    with open("/proc/sys/net/ipv6/conf/all/disable_ipv6", encoding="ascii") as f:
        assert f.read() == before


def test_reload_reopens_changed_tap_and_removes_a_dropped_one(tlab: Lab, tmp_path: Path) -> None:
    """Through the switch: new settings re-create vspan's TAP, a removed port removes it."""
    nobody = pwd.getpwnam("nobody")
    name = tlab.name("tap")
    head = f"switch: {{name: t, control_socket: {tmp_path / 'switch.sock'}}}\n"
    with running_switch(tmp_path, f"ports:\n  vm: {{type: tap, interface: {name}}}\n") as sw:
        state = inspect(name)
        assert state is not None and state.owner is None
        changed = tmp_path / "owner.yaml"
        changed.write_text(head + f"ports:\n  vm: {{type: tap, interface: {name}, "
                           f"tap: {{owner: nobody}}}}\n", encoding="utf-8")
        assert "port reopened: vm" in sw.cli("reload", str(changed)).stdout
        state = inspect(name)  # the new backend opened first, then the old one closed
        assert state is not None and state.owner == nobody.pw_uid
        dropped = tmp_path / "none.yaml"
        dropped.write_text(head + "ports: {}\n", encoding="utf-8")
        assert "port removed: vm" in sw.cli("reload", str(dropped)).stdout
        assert not exists(name)
