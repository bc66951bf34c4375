"""A real QEMU VM on a ``type: tap`` port of a running switch (issue 7 items 9 and 10).

The VM is Debian's cloud kernel with a busybox initramfs (``scripts/build-test-vm.sh``),
booted under TCG; QEMU attaches with ``-netdev tap,ifname=...,script=no`` exactly
as the README says. Before the fix vspan held the TAP's queue and QEMU failed
with "Device or resource busy".
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP

from tests.helpers.netns import Lab, require_tools, requires_root
from tests.helpers.qemu import TestVM, image_problem
from tests.system.capture import tcpdump
from tests.system.switchproc import SwitchProcess, running_switch

pytestmark = [pytest.mark.system, requires_root]

PROBE = str(Path(__file__).resolve().parents[1] / "helpers" / "netprobe.py")
NET = "10.75.0"
IP_H, IP_VM = f"{NET}.1", f"{NET}.2"
MAC_H, MAC_S, MAC_VM = "02:75:00:00:00:01", "02:75:00:00:00:05", "52:54:00:75:00:02"
BLOCKS = 64  # 64 KiB blocks: 4 MiB each way


def ping(lab: Lab, ns: str, dst: str, count: int = 3) -> None:
    proc = lab.exec(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def vm_image() -> None:
    """Skip (with the reason) when QEMU or the VM image cannot be had here."""
    problem = image_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def hosts(netlab: Lab, vm_image: None) -> Iterator[dict[str, str]]:
    """Namespace ``h`` (an address on the VM's subnet) and ``s`` (a sniffer, no address)."""
    require_tools("ping", "tcpdump")
    ns_h, ns_s = netlab.netns("h"), netlab.netns("s")
    yield {
        "ns_h": ns_h, "ns_s": ns_s,
        "if_h": netlab.veth("h", ns_h, addr=f"{IP_H}/24", mac=MAC_H),
        "if_s": netlab.veth("s", ns_s, mac=MAC_S),
        "tap": netlab.name("tap"),
    }


def wait_port_up(sw: SwitchProcess, port: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {p["name"]: p for p in sw.show("ports")}[port]["link"] == "up":
            return
        time.sleep(0.2)
    raise AssertionError(f"port {port} did not come up")


def vm_to_host(lab: Lab, vm: TestVM, ns: str, port: int, blocks: int = BLOCKS) -> None:
    """The VM sends ``blocks`` x 64 KiB over TCP to a sink in ``ns``; SHA-256 agree."""
    sink = lab.popen(ns, sys.executable, PROBE, "sink", IP_H, str(port), stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None and "listening" in sink.stdout.readline()
        out = vm.check(f"dd if=/dev/urandom of=/tmp/out bs=65536 count={blocks} 2>/dev/null"
                       f" && sha256sum /tmp/out && nc {IP_H} {port} </tmp/out", timeout=120)
        got, _ = sink.communicate(timeout=120)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    size, digest = got.split()
    assert int(size) == blocks * 65536
    assert out.split()[0] == digest


def host_to_vm(lab: Lab, vm: TestVM, ns: str, port: int) -> None:
    """A source in ``ns`` sends 4 MiB over TCP to ``nc -l`` in the VM; SHA-256 agree."""
    # nc ends while the VM's shell waits for the next line: before the image's
    # RECIPE 2 that made busybox's interactive shell (PID 1) exit, a kernel panic
    vm.check(f"nc -l -p {port} </dev/null >/tmp/in &")
    time.sleep(0.5)
    sent = lab.exec(ns, sys.executable, PROBE, "source", IP_VM, str(port),
                    str(BLOCKS * 65536), timeout=120).stdout.split()
    out = vm.check("wait; wc -c </tmp/in; sha256sum /tmp/in", timeout=120).split()
    assert int(out[0]) == int(sent[0]) == BLOCKS * 65536
    assert out[1] == sent[1]


def test_vm_on_a_tap_port_pings_transfers_and_is_mirrored(netlab: Lab, tmp_path: Path,
                                                          hosts: dict[str, str]) -> None:
    h = hosts
    cfg = (f"ports:\n  h: {{interface: {h['if_h']}}}\n  s: {{interface: {h['if_s']}}}\n"
           f"  vm: {{type: tap, interface: {h['tap']}}}\n"
           "mirrors:\n  m: {sources: [vm], destinations: [s]}\n")
    with running_switch(tmp_path, cfg) as sw, \
            tcpdump(h["ns_s"], "eth0", tmp_path / "s.pcap", f"ether host {MAC_VM}",
                    snaplen=128) as cap:
        with TestVM(h["tap"], f"{IP_VM}/24", MAC_VM) as vm:
            wait_port_up(sw, "vm")
            rc, out = vm.run(f"ping -c 3 -W 2 {IP_H}", timeout=120)
            assert rc == 0, out
            ping(netlab, h["ns_h"], IP_VM, count=3)
            vm_to_host(netlab, vm, h["ns_h"], 47001)
            host_to_vm(netlab, vm, h["ns_h"], 47002)
            ports = {p["name"]: p for p in sw.show("ports")}
        assert ports["vm"]["type"] == "tap"
        vm_counters = ports["vm"]["backend_counters"]
        assert vm_counters["rx_frames"] > 100 and vm_counters["tx_frames"] > 100
        assert vm_counters["tx_errors"] == 0 and sw.drops("tx-error") == 0
    # the sniffer saw the VM's traffic in both directions: ICMP and the TCP streams
    icmp = {(p[IP].src, p[ICMP].type) for p in cap.packets if ICMP in p}
    assert {(IP_VM, 8), (IP_H, 0), (IP_H, 8), (IP_VM, 0)} <= icmp
    tcp = [p for p in cap.packets if TCP in p]
    assert sum(1 for p in tcp if p[IP].src == IP_VM and p[TCP].dport == 47001) > 20
    assert sum(1 for p in tcp if p[IP].dst == IP_VM and p[TCP].dport == 47002) > 20
    # vspan made the TAP and removed it when it stopped
    assert subprocess.run(["ip", "link", "show", h["tap"]], capture_output=True).returncode != 0


def test_vm_without_offloads_on_a_multi_queue_tap(netlab: Lab, tmp_path: Path,
                                                  hosts: dict[str, str]) -> None:
    """Item 10 with QEMU: the guest negotiates no TSO, so the TAP cannot take GSO frames."""
    h = hosts
    cfg = (f"ports:\n  h: {{interface: {h['if_h']}}}\n"
           f"  vm: {{type: tap, interface: {h['tap']}, tap: {{multi_queue: true}}}}\n")
    with running_switch(tmp_path, cfg) as sw, \
            TestVM(h["tap"], f"{IP_VM}/24", MAC_VM, queues=2, guest_offloads=False) as vm:
        wait_port_up(sw, "vm")
        ping(netlab, h["ns_h"], IP_VM, count=2)
        host_to_vm(netlab, vm, h["ns_h"], 47003)  # h's veth sends 64 KB GSO frames
        vm_port = {p["name"]: p for p in sw.show("ports")}["vm"]
    assert vm_port["backend_counters"]["tx_segmented"] > 0
    assert vm_port["backend_counters"]["tx_errors"] == 0


def test_tap_made_by_qemu(netlab: Lab, tmp_path: Path, hosts: dict[str, str]) -> None:
    """``create: false``: QEMU makes the TAP after the switch started; vspan follows it."""
    h = hosts
    cfg = (f"ports:\n  h: {{interface: {h['if_h']}}}\n"
           f"  vm: {{type: tap, interface: {h['tap']}, tap: {{create: false}}}}\n")
    with running_switch(tmp_path, cfg) as sw:
        assert {p["name"]: p for p in sw.show("ports")}["vm"]["link"] == "down"
        with TestVM(h["tap"], f"{IP_VM}/24", MAC_VM, vnet_hdr=False) as vm:
            wait_port_up(sw, "vm")
            rc, out = vm.run(f"ping -c 3 -W 2 {IP_H}", timeout=120)
            assert rc == 0, out
            vm_to_host(netlab, vm, h["ns_h"], 47004, blocks=16)


def test_vm_shell_survives_a_background_job_ending_while_it_waits(netlab: Lab,
                                                                  vm_image: None) -> None:
    """A job started with ``&`` ends while the VM's shell waits for its next line.

    With the image's first recipe the shell was busybox's interactive ash as PID 1:
    it took the job's end for an end of input, exited, and the kernel panicked
    ("Attempted to kill init!"), so QEMU went away under whichever test was running.
    """
    with TestVM(netlab.name("tap"), f"{IP_VM}/24", MAC_VM, vnet_hdr=False) as vm:
        vm.check("sleep 1 </dev/null >/dev/null &")
        time.sleep(4)  # the job ends (SIGCHLD) while the shell sits reading the console
        assert vm.check("echo alive; wait; echo waited") == "alive\nwaited\n"
        assert b"Kernel panic" not in vm.output and b"VM-SHELL-EXITED" not in vm.output
