"""Migration through the store, with host agents on the in-process store and memory ports:
the phases each agent writes, the port's state carried (connections, counters, id),
RARP announcements from the destination, captures annotated, abort, an agent that
was not running when its part came (the record waits for it), and refusals.

The real thing -- namespaces, veths moved between hosts, TCP through the firewall,
a sniffer on a third host -- is tests/system/test_dvs_migration.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from vspan.capture.pcapng import read_capture
from vspan.config.dvs import DvsConfig
from vspan.config.load import parse_model, read_yaml
from vspan.config.model import Config, PortConfig, SwitchConfig
from vspan.control.agent import Agent
from vspan.control.dvs.admin import DvsAdmin
from vspan.control.dvs.hostagent import HostAgent
from vspan.control.dvs.migration import MigrationError, abort, read, request
from vspan.control.store.memory import MemoryStore
from vspan.datapath import accounting
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort

WEB, CLI, NB = "02:00:00:00:00:10", "02:00:00:00:00:20", "02:00:00:00:00:30"

DVS = """\
switch: {name: lab}
hosts: {h1: {}, h2: {}}
port_groups:
  front: {vlan: {mode: access, id: 10}}
ports:
  web: {type: memory, host: h1, vm: web-vm, mac: "02:00:00:00:00:10", port_group: front,
        policy: {addresses: [10.0.0.10]}}
  cli: {type: memory, host: h1, port_group: front, policy: {addresses: [10.0.0.20]}}
  nb: {type: memory, host: h2, port_group: front}
  snf: {type: memory, host: h2}
mirrors:
  watch-web: {sources: [web], destinations: [snf]}
firewall:
  default_action: drop
  exclude: [cli, nb, snf]          # only web sits behind the firewall
  sections:
    - name: web
      applied_to: [web]
      rules: [{id: http, sources: [any], destinations: [10.0.0.10], services: [tcp/80],
               action: allow}]
"""


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"not in time: {what}")


class Hosts:
    """Agents by host name, their memory ports by (host, port)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.agents: dict[str, HostAgent] = {}
        self.ports: dict[tuple[str, str], MemoryPort] = {}

    @contextmanager
    def agent(self, host: str, deregister: bool = True) -> Iterator[HostAgent]:
        """An agent for ``host``; without ``deregister`` it stops as if killed (its lease
        lives on until the TTL)."""
        def factory(name: str, cfg: PortConfig) -> Port:
            self.ports[(host, name)] = MemoryPort(name)
            return self.ports[(host, name)]

        agent = Agent(Config(switch=SwitchConfig(name="lab")), factory)
        agent.start()
        ha = HostAgent(self.store, "lab", host, "", agent, status_interval=0.05,
                       iface_exists=lambda _n: True, move_interfaces=False)
        ha.migrator.stats = lambda _n: None  # no kernel interfaces here
        ha.start()
        self.agents[host] = ha
        try:
            assert ha.wait_synced()
            yield ha
        finally:
            ha.stop(deregister=deregister)
            agent.stop()
            del self.agents[host]


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    DvsAdmin(s, "lab").apply(parse_model(DvsConfig, read_yaml(DVS), "dvs"))
    return s


def tcp(src: str, dst: str, sip: str, dip: str, sport: int, dport: int, flags: str,
        seq: int, ack: int = 0) -> bytes:
    return raw(Ether(src=src, dst=dst) / IP(src=sip, dst=dip)
               / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535))


def migrate(store: MemoryStore, vm: str, to: str) -> dict[str, Any]:
    admin = DvsAdmin(store, "lab")
    return request(store, admin.state(), vm, to, "test")


def record(store: MemoryStore, port: str) -> dict[str, Any]:
    _kv, rec = read(store, DvsAdmin(store, "lab").keys, port)
    assert rec is not None
    return rec


def test_the_port_moves_with_its_id_counters_connections_and_announces_itself(
        store: MemoryStore, tmp_path: Path) -> None:
    hosts = Hosts(store)
    with ExitStack() as stack:
        h1 = stack.enter_context(hosts.agent("h1"))
        h2 = stack.enter_context(hosts.agent("h2"))
        # a TCP connection from cli to web through web's default-drop firewall, on h1
        syn = tcp(CLI, WEB, "10.0.0.20", "10.0.0.10", 40000, 80, "S", 1000)
        synack = tcp(WEB, CLI, "10.0.0.10", "10.0.0.20", 80, 40000, "SA", 5000, 1001)
        ack = tcp(CLI, WEB, "10.0.0.20", "10.0.0.10", 40000, 80, "A", 1001, 5001)
        hosts.ports[("h1", "cli")].inject(syn)
        wait_for(lambda: bool(hosts.ports[("h1", "web")].take()), what="SYN at web")
        hosts.ports[("h1", "web")].inject(synack)
        wait_for(lambda: bool(hosts.ports[("h1", "cli")].take()), what="SYN-ACK at cli")
        hosts.ports[("h1", "cli")].inject(ack)
        wait_for(lambda: bool(hosts.ports[("h1", "web")].take()), what="ACK at web")
        before = h1.agent.engine.state.port("web").counters.as_dict()
        pid = h1.status()["ports"]["web"]["port_id"]
        cap = str(tmp_path / "snf.pcapng")
        h2.agent.capture_start(["snf", "nb"], cap)

        rec = migrate(store, "web-vm", "h2")
        assert rec["port"] == "web" and rec["phase"] == "requested"
        wait_for(lambda: record(store, "web")["phase"] == "done", what="migration done")
        done = record(store, "web")
        assert [h["phase"] for h in done["history"]] == [
            "requested", "prepared", "exported", "attached", "done"]
        assert "web" not in h1.agent.config.ports and "web" in h2.agent.config.ports
        assert h2.status()["ports"]["web"]["port_id"] == pid  # the id stays
        after = h2.agent.engine.state.port("web").counters.as_dict()
        assert after["rx_frames"] >= before["rx_frames"] > 0  # counters carried on
        assert after["tx_frames"] >= before["tx_frames"] > 0
        # and they still add up: every frame received (here or before, on h1) has its fate
        eng2 = h2.agent.engine
        assert eng2.call(lambda: accounting.check(eng2.state)) == []
        # the connection came along: ESTABLISHED, same windows, same admitting rule
        fw = h2.agent.switch_policy.firewall
        assert fw is not None
        conns = list(fw.ports()["web"].conntrack)
        assert len(conns) == 1 and str(conns[0].state) == "ESTABLISHED"
        assert conns[0].rule_id == "http" and conns[0].tcp is not None
        assert conns[0].tcp.peers[0].end == 1001 and conns[0].tcp.peers[1].end == 5001
        # RARP from the VM's MAC: 5 rounds, seen by its neighbour on h2 (and mirrored)
        rarps = [f.data for f in hosts.ports[("h2", "nb")].take()
                 if f.data[12:14] == b"\x80\x35"]
        assert len(rarps) == 5 and all(r[6:12] == bytes.fromhex(WEB.replace(":", ""))
                                       for r in rarps)
        res = done["result"]
        assert res["lost"]["measured"] is False  # no kernel interfaces in this test
        assert done["attach"]["imported"]["connections"] == 1
        # the connection goes on at h2 without a new handshake (cli is on h1, no overlay
        # here: the data segment is injected as the peer would send it)
        data = tcp(WEB, CLI, "10.0.0.10", "10.0.0.20", 80, 40000, "PA", 5001, 1001)
        drops = h2.agent.engine.state.drops.total("firewall-deny")
        hosts.ports[("h2", "web")].inject(data + b"x" * 10)
        time.sleep(0.2)
        assert h2.agent.engine.state.drops.total("firewall-deny") == drops
        assert h2.agent.engine.state.drops.total("firewall-state-invalid") == 0
        h2.agent.capture_stop(1)
    # the capture on h2 says it, on the first frame written after the switch-over
    comments = [c for pkt in read_capture(cap) for c in pkt.comments]
    assert any(c.startswith("VM web-vm (port web, id 1) migrated from h1 to h2 at ")
               for c in comments), comments


def test_abort_before_export_leaves_the_port_where_it_was(store: MemoryStore) -> None:
    hosts = Hosts(store)
    with hosts.agent("h1") as h1:  # h2 has no agent: the request cannot be prepared
        keys = DvsAdmin(store, "lab").keys
        with pytest.raises(MigrationError, match="destination host h2 has no agent"):
            migrate(store, "web-vm", "h2")
        with hosts.agent("h2"):
            pass  # registered once; its lease stays until it is revoked on stop
        with pytest.raises(MigrationError, match="no VM or port named 'nope'"):
            migrate(store, "nope", "h2")
        with pytest.raises(MigrationError, match="on host h1 already"):
            migrate(store, "web", "h1")
        assert "web" in h1.agent.config.ports
        with pytest.raises(MigrationError, match="no migration of port web"):
            abort(store, keys, "web", "test")


def test_an_agent_that_was_down_does_its_part_when_it_comes_back(store: MemoryStore) -> None:
    hosts = Hosts(store)
    with hosts.agent("h2") as h2:
        with hosts.agent("h1", deregister=False):
            pass  # h1's agent dies; its lease lives for a while
        migrate(store, "web", "h2")
        wait_for(lambda: record(store, "web")["phase"] == "prepared", what="prepared")
        time.sleep(0.3)  # nobody exports: the migration waits, visibly
        assert record(store, "web")["phase"] == "prepared"
        assert h2.status()["migrations"]["web"]["phase"] == "prepared"
        with hosts.agent("h1") as h1:  # h1 comes back and does its part
            wait_for(lambda: record(store, "web")["phase"] == "done", what="done")
            assert "web" not in h1.agent.config.ports
        rec = record(store, "web")
        # a restarted source had no state to give: said, not hidden
        assert "was not attached" in rec["export"]["state_lost"]
        assert "web" in h2.agent.config.ports


def test_abort_while_prepared_keeps_the_port(store: MemoryStore) -> None:
    hosts = Hosts(store)
    with hosts.agent("h2"):
        with hosts.agent("h1", deregister=False):
            pass
        migrate(store, "web", "h2")
        wait_for(lambda: record(store, "web")["phase"] == "prepared", what="prepared")
        keys = DvsAdmin(store, "lab").keys
        rec = abort(store, keys, "web", "test")
        assert rec["phase"] == "aborted"
        with pytest.raises(MigrationError, match="no migration of port web is under way"):
            abort(store, keys, "web", "test")
        with hosts.agent("h1") as h1:
            wait_for(lambda: "web" in h1.agent.config.ports, what="web stays on h1")
            assert record(store, "web")["phase"] == "aborted"


def test_port_state_import_takes_what_is_sound_and_counts_the_rest() -> None:
    from vspan.config.load import parse_config
    from vspan.datapath.flowkey import extract
    from vspan.policy.build import SwitchPolicy
    from vspan.policy.portstate import export_port, import_port

    cfg = parse_config(read_yaml(
        "ports:\n  web: {type: memory, policy: {addresses: [10.0.0.10], extended_acls: "
        "[{id: out, action: allow, direction: out, weight: 10, protocol: tcp, stateful: true}]}}\n"
        "firewall: {default_action: drop, sections: [{name: s, rules: [{id: http, "
        "sources: [any], destinations: [10.0.0.10], services: [tcp/80], action: allow}]}]}"))
    src = SwitchPolicy.from_config({n: p.policy for n, p in cfg.ports.items()}, cfg.firewall)
    fw = src.firewall
    assert fw is not None
    pf = fw.port("web")
    assert pf is not None
    syn = tcp(CLI, WEB, "10.0.0.20", "10.0.0.10", 40000, 80, "S", 1000)
    key = extract(syn, 1)
    assert key is not None
    pf.conntrack.create(key, syn, "in", 100.0, "http")
    out_syn = tcp(WEB, CLI, "10.0.0.10", "10.0.0.20", 41000, 443, "S", 7)
    okey = extract(out_syn, 1)
    assert okey is not None
    pp = src.port("web")
    assert pp is not None
    pp.sessions.process(okey, "out", pp.ext.match(okey, "out"), 100.0)
    state = export_port(src, "web", 100.0)
    assert len(state["connections"]) == 1 and len(state["ext_acl_sessions"]) == 1
    # another switch, another clock origin: times are rebased, entries kept
    dst = SwitchPolicy.from_config({n: p.policy for n, p in cfg.ports.items()}, cfg.firewall)
    hostile = dict(state, connections=[*state["connections"], {"key": "nonsense"},
                                       {"key": [6, "zz", 1, "00", 2]}],
                   ext_acl_sessions=[*state["ext_acl_sessions"], {"rule": 5}])
    counts = import_port(dst, "web", hostile, 5000.0)
    assert counts == {"connections": 1, "ext_acl_sessions": 1, "not_taken": 3}
    assert dst.firewall is not None
    (conn,) = list(dst.firewall.ports()["web"].conntrack)
    assert conn.expires > 5000.0 and conn.rule_id == "http"
    with pytest.raises(ValueError, match="format"):
        import_port(dst, "web", {"format": 99}, 0.0)


def test_collect_gets_a_comment_on_the_first_frame_after_a_switch_over(
        store: MemoryStore, tmp_path: Path) -> None:
    from scapy.contrib.erspan import ERSPAN_II
    from scapy.layers.l2 import GRE

    from vspan.capture.collector import Collector
    from vspan.capture.pcapng import RotatingPcapngWriter
    from vspan.control.dvs.document import dumps
    from vspan.control.dvs.keys import DvsKeys
    from vspan.control.dvs.migration import MigrationWatcher, advanced
    from vspan.control.store.base import Put

    out = str(tmp_path / "c.pcapng")
    writer = RotatingPcapngWriter(out, application="test")
    col = Collector(writer)
    watcher = MigrationWatcher(store, "lab", col.note, since=0.0)
    rec = {"id": "m1", "vm": "web-vm", "port": "web", "port_id": "1", "from": "h1",
           "to": "h2", "history": []}
    keys = DvsKeys("lab")
    store.txn([], [Put(keys.migration("web"), dumps(advanced(rec, "exported", "h1")))])
    assert watcher.poll() == 0  # not switched over yet
    store.txn([], [Put(keys.migration("web"), dumps(advanced(rec, "attached", "h2")))])
    assert watcher.poll() == 1 and watcher.poll() == 0  # once
    frame = Ether(src=WEB, dst=CLI) / IP() / TCP()

    def erspan(seq: int) -> bytes:
        return raw(IP(src="192.0.2.1", dst="192.0.2.2") / GRE(
            seqnum_present=1, sequence_number=seq, proto=0x88BE) / ERSPAN_II(
            session_id=5) / frame)

    assert col.handle_ip(erspan(1), 1)
    assert col.handle_ip(erspan(2), 2)
    writer.close()
    comments = [p.comments for p in read_capture(out)]
    assert any("VM web-vm (port web, id 1) migrated from h1 to h2" in c
               for c in comments[0]), comments
    assert not comments[1]


def test_an_agent_without_migrations_is_refused(store: MemoryStore) -> None:
    from vspan.control.dvs.document import dumps
    from vspan.control.dvs.keys import DvsKeys
    from vspan.control.store.base import Put

    hosts = Hosts(store)
    with hosts.agent("h1"):
        lease = store.grant(30)  # h2 registered by an agent of an earlier vspan
        store.txn([], [Put(DvsKeys("lab").live("h2"), dumps(
            {"underlay": "", "version": "0.1.0", "pid": 1}), lease)])
        with pytest.raises(MigrationError, match=r"h2 \(vspan 0\.1\.0\) cannot migrate"):
            migrate(store, "web", "h2")
        assert read(store, DvsAdmin(store, "lab").keys, "web") == (None, None)
