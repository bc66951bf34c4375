"""The distributed switch for real: etcd in a router namespace, each host a namespace
running its own ``vspan agent``, VMs as namespaces on veth pairs (tests/helpers/dvslab.py).

What is checked: a port-group change reaches every host's datapath (VLAN and ACL,
seen by real pings); an agent killed with SIGKILL comes back with its ports and
mirror sessions from the store; a host whose agent dies loses its lease and shows
down (with its ports); with etcd down forwarding goes on, `dvs apply` is refused
clearly and the agents resume when it is back; an agent whose watch revision was
compacted re-reads and converges; an agent refuses a newer store schema.
With the VXLAN overlay in the build, ping and TCP between VMs on different hosts.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.dvslab import VSPAN, DvsLab, dvs_lab, wait_until
from tests.helpers.etcd import require_etcd
from tests.helpers.netns import require_tools, requires_root
from vspan.control.dvs.compile import overlay_supported

pytestmark = [pytest.mark.system, requires_root]

HOSTS = ("h1", "h2", "h3")


def config(vlan: int = 10, acl: bool = False, extra_ports: str = "") -> str:
    """Two VMs per host in port group ``web``, a sniffer on h1 mirroring a VM there."""
    acl_text = ("    policy: {acls: [{id: no-icmp-peer, action: deny, direction: both, "
                "remote_ip: 10.0.0.0/24}]}\n") if acl else ""
    ports = []
    for i, h in enumerate(HOSTS, start=1):
        for j in (1, 2):
            ports.append(f"  {h}v{j}: {{host: {h}, interface: {h}v{j}, vm: {h}v{j}, "
                         f"mac: '02:00:00:00:0{i}:0{j}', port_group: web}}")
    hosts = ", ".join(f"{h}: {{}}" for h in HOSTS)
    return (f"switch: {{name: lab, mtu: 1600}}\nhosts: {{{hosts}}}\n"
            f"port_groups:\n  web:\n    vlan: {{mode: access, id: {vlan}}}\n{acl_text}"
            "ports:\n" + "\n".join(ports) + "\n"
            "  h1snf: {host: h1, interface: h1snf}\n" + extra_ports +
            "mirrors:\n  watch-h1v1: {sources: [h1v1], destinations: [h1snf]}\n")


@pytest.fixture
def dlab(tmp_path: Path) -> Iterator[DvsLab]:
    require_etcd()
    require_tools("ping", "curl")
    with dvs_lab(tmp_path, prefix=f"vd{secrets.token_hex(2)}") as dl:
        for i, h in enumerate(HOSTS, start=1):
            dl.add_host(h, mtu=1600)  # room for a 1500-byte VM frame plus VXLAN's 50
            for j in (1, 2):
                dl.add_vm(h, f"{h}v{j}", f"10.0.0.{i}{j}", f"02:00:00:00:0{i}:0{j}")
        dl.add_vm("h1", "h1snf", "10.0.9.9", "02:00:00:00:09:09")
        dl.apply(config())
        yield dl


def local_ping(dl: DvsLab, host: str, check: bool = True) -> bool:
    h = dl.hosts[host]
    return dl.ping(h.vms[f"{host}v1"], h.vms[f"{host}v2"], check=check)


def test_config_change_reaches_every_hosts_datapath(dlab: DvsLab) -> None:
    for h in HOSTS:
        dlab.start_agent(h)
    wait_until(lambda: dlab.in_sync(*HOSTS), 20, "all hosts in sync")
    for h in HOSTS:
        ports = dlab.host_ports(h)
        assert ports[f"{h}v1"]["vlan"] == "access 10"
        local_ping(dlab, h)
    hosts = {r["host"]: r for r in dlab.show("hosts")}
    assert all(hosts[h]["status"] == "up" and hosts[h]["in_sync"] for h in HOSTS)

    # the port group's VLAN changes: every host's engine carries it (no restart)
    pids = {h: dlab.status(h)["pid"] for h in HOSTS}
    dlab.apply(config(vlan=20))
    wait_until(lambda: dlab.in_sync(*HOSTS), 20, "all hosts applied VLAN 20")
    for h in HOSTS:
        assert dlab.host_ports(h)[f"{h}v1"]["vlan"] == "access 20"
        assert dlab.status(h)["pid"] == pids[h]
        local_ping(dlab, h)

    # an ACL on the port group: every host drops the pings, counted with the rule id
    dlab.apply(config(vlan=20, acl=True))
    wait_until(lambda: dlab.in_sync(*HOSTS), 20, "all hosts applied the ACL")
    for h in HOSTS:
        assert not local_ping(dlab, h, check=False)
        drops = dlab.local(h, "GET", "/show/counters")["drops"]
        assert any(d["reason"] == "acl-deny" and d["rule"] == "no-icmp-peer" for d in drops), \
            drops
    # and removed again
    dlab.apply(config(vlan=20))
    wait_until(lambda: dlab.in_sync(*HOSTS), 20, "all hosts removed the ACL")
    for h in HOSTS:
        local_ping(dlab, h)
    ports = {r["port"]: r for r in dlab.show("ports")}
    assert ports["h2v1"]["state"] == "up" and ports["h2v1"]["vlan"] == "access 20"
    wait_until(lambda: {r["port"]: r for r in dlab.show("ports")}["h2v1"]["rx_frames"] > 0,
               10, "counters reported to the store")


def test_sigkill_agent_comes_back_with_its_ports_and_sessions(dlab: DvsLab) -> None:
    dlab.start_agent("h1")
    wait_until(lambda: dlab.in_sync("h1"), 20, "h1 in sync")
    before = dlab.host_ports("h1")
    ids = {r["port"]: r["port_id"] for r in dlab.show("ports", "--host", "h1")}
    dlab.kill_agent("h1", signal.SIGKILL)
    assert not local_ping(dlab, "h1", check=False)  # nothing switches for h1's VMs now
    dlab.start_agent("h1")
    wait_until(lambda: dlab.in_sync("h1"), 20, "h1 in sync after restart")
    after = dlab.host_ports("h1")
    # the VM ports, and the VXLAN port to the other hosts
    assert sorted(after) == sorted(before) == ["h1snf", "h1v1", "h1v2", "overlay"]
    assert {n: after[n]["vlan"] for n in after} == {n: before[n]["vlan"] for n in before}
    mirrors = dlab.local("h1", "GET", "/show/mirrors")
    assert [m["name"] for m in mirrors] == ["watch-h1v1"]
    local_ping(dlab, "h1")
    wait_until(lambda: dlab.local("h1", "GET", "/show/mirrors")[0]["counters"]["mirrored"] > 0,
               10, "the restored session mirrors")
    assert {r["port"]: r["port_id"] for r in dlab.show("ports", "--host", "h1")} == ids


def test_host_whose_agent_dies_shows_down_within_the_ttl(dlab: DvsLab) -> None:
    ttl = 3
    for h in ("h1", "h2"):
        dlab.start_agent(h, ttl=ttl)
    wait_until(lambda: dlab.in_sync("h1", "h2"), 20, "h1, h2 in sync")
    wait_until(lambda: {r["host"]: r["status"] for r in dlab.show("hosts")}["h2"] == "up",
               10, "h2 up")
    dlab.kill_agent("h2", signal.SIGKILL)
    # the lease ends at most TTL after the last keepalive; allow the CLI's own time
    wait_until(lambda: {r["host"]: r["status"] for r in dlab.show("hosts")}["h2"] == "down",
               ttl + 10, "h2 shown down")
    ports = {r["port"]: r for r in dlab.show("ports")}
    assert ports["h2v1"]["state"] == "down" and "h2 is down" in ports["h2v1"]["reason"]
    assert ports["h1v1"]["state"] == "up"
    # h3 never ran an agent: down as well
    assert {r["host"]: r["status"] for r in dlab.show("hosts")}["h3"] == "down"


def test_etcd_outage_forwarding_goes_on_changes_refused_then_resumed(dlab: DvsLab) -> None:
    dlab.start_agent("h1")
    wait_until(lambda: dlab.in_sync("h1"), 20, "h1 in sync")
    dlab.stop_etcd()
    wait_until(lambda: dlab.status("h1")["store"]["state"] == "unreachable", 20,
               "the agent to notice the outage")
    local_ping(dlab, "h1")  # forwarding with the last configuration
    assert dlab.host_ports("h1")["h1v1"]["vlan"] == "access 10"
    refused = dlab.apply(config(vlan=30), check=False)
    assert refused.returncode == 1
    assert "unreachable" in refused.stderr and "nothing was changed" in refused.stderr
    dlab.start_etcd()
    wait_until(lambda: dlab.status("h1")["store"]["state"] == "connected", 30,
               "the agent to reconnect")
    dlab.apply(config(vlan=30))
    wait_until(lambda: dlab.host_ports("h1")["h1v1"]["vlan"] == "access 30", 20,
               "the change after the outage")
    local_ping(dlab, "h1")
    assert dlab.status("h1")["store"]["outages"] >= 1


def test_compacted_watch_rereads_and_converges(dlab: DvsLab) -> None:
    dlab.start_agent("h1", ttl=30)
    wait_until(lambda: dlab.in_sync("h1"), 20, "h1 in sync")
    ap = dlab.hosts["h1"].agent
    assert ap is not None and ap.proc is not None
    ap.proc.send_signal(signal.SIGSTOP)  # the agent falls behind...
    try:
        dlab.stop_etcd()  # ...its watch connection dies with this etcd process
        dlab.start_etcd()
        dlab.apply(config(vlan=40))  # changes it has not seen
        dlab.apply(config(vlan=41))
        dlab.compact()  # and the history it would resume from is gone
    finally:
        ap.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: dlab.host_ports("h1")["h1v1"]["vlan"] == "access 41", 30,
               "the agent to converge after compaction")
    assert dlab.status("h1")["store"]["compactions"] >= 1
    assert "compacted" in ap.log.read_text()
    local_ping(dlab, "h1")


def test_agent_refuses_a_newer_schema(dlab: DvsLab) -> None:
    dlab.store_call("from vspan.control.store.base import Put\n"
                    "s.txn([], [Put('/vspan/v1/dvs/lab/config/schema', b'{\"schema\": 2}')])\n")
    h = dlab.hosts["h1"]
    proc = subprocess.run(["ip", "netns", "exec", h.ns, *VSPAN, "agent", "--dvs", "lab",
                           "--host", "h1", "--etcd", dlab.etcd_url, "--underlay", h.underlay,
                           "--socket", str(dlab.workdir / "refused.sock")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "schema version 2" in proc.stderr and "upgrade vspan" in proc.stderr
    shown = dlab.dvs_cli("show", "hosts", "--dvs", "lab", check=False)
    assert shown.returncode == 1 and "schema version 2" in shown.stderr


@pytest.mark.skipif(not overlay_supported(),
                    reason="the vxlan port type is not in this build (dvs-overlay branch)")
def test_ping_and_tcp_between_vms_on_different_hosts(dlab: DvsLab) -> None:
    for h in ("h1", "h2"):
        dlab.start_agent(h)
    wait_until(lambda: dlab.in_sync("h1", "h2"), 20, "h1, h2 in sync")
    # each overlay floods VLAN 10 to the other registered host
    wait_until(lambda: "overlay" in dlab.host_ports("h1") and "overlay" in
               dlab.host_ports("h2"), 20, "overlay ports")
    a, b = dlab.hosts["h1"].vms["h1v1"], dlab.hosts["h2"].vms["h2v1"]
    wait_until(lambda: dlab.ping(a, b, count=1, check=False), 20, "first cross-host ping")
    dlab.ping(a, b, count=3)
    dlab.ping(b, a, count=3)
    # TCP: 2 MB over HTTP from h2's VM to h1's VM, full-size segments through VXLAN
    dlab.lab.exec(b.ns, "sh", "-c", "head -c 2000000 /dev/urandom > /tmp/vd-blob-" + b.name)
    server = dlab.lab.popen(b.ns, sys.executable, "-m", "http.server", "8080", "--bind", b.ip,
                            "--directory", "/tmp", stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: dlab.lab.exec(a.ns, "curl", "-sf", "-m", "2", "-o", "/dev/null",
                                         f"http://{b.ip}:8080/", check=False).returncode == 0,
                   20, "the web server")
        got = dlab.lab.exec(a.ns, "sh", "-c", f"curl -sf -m 30 http://{b.ip}:8080/vd-blob-"
                            f"{b.name} | wc -c", timeout=60).stdout.strip()
        assert got == "2000000"
    finally:
        server.kill()
        server.wait()
        dlab.lab.exec(b.ns, "rm", "-f", "/tmp/vd-blob-" + b.name, check=False)
    # h3 has no agent: not flooded to, and said so
    notes = dlab.status("h1")["notes"]
    assert any("not registered" in n and "h3" in n for n in notes), notes
