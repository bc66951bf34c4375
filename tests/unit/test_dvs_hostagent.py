"""The host agent on the in-process store with memory ports: compile, reconcile, watch
recovery, outages, leases, schema refusal (the same agent runs on etcd in tests/system)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from vspan.config.dvs import DvsConfig
from vspan.config.load import parse_model, read_yaml
from vspan.config.model import Config, PortConfig, SwitchConfig
from vspan.control.agent import Agent, AgentError
from vspan.control.dvs import views
from vspan.control.dvs.admin import DvsAdmin
from vspan.control.dvs.compile import compile_host
from vspan.control.dvs.document import dumps
from vspan.control.dvs.hostagent import HostAgent
from vspan.control.dvs.keys import DvsKeys
from vspan.control.store.base import Put
from vspan.control.store.memory import MemoryStore
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort

DVS = """\
switch: {name: lab}
hosts: {h1: {}, h2: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
ports:
  a1: {type: memory, host: h1, port_group: web, policy: {addresses: [10.0.0.1]}}
  a2: {type: memory, host: h1}
  b1: {type: memory, host: h2, port_group: web, policy: {addresses: [10.0.0.2]}}
mirrors:
  local: {sources: [a1], destinations: [a2]}
  remote: {sources: [{port_group: web}], destinations: [a2]}
firewall:
  default_action: allow
  sections:
    - name: web-only
      applied_to: [web]
      rules: [{id: r1, sources: [web], destinations: [any], action: allow}]
    - name: b-only
      applied_to: [b1]
      rules: [{id: r2, sources: [any], destinations: [any], action: drop}]
"""


def load(text: str) -> DvsConfig:
    return parse_model(DvsConfig, read_yaml(text), "dvs.yaml")


def memory_factory(name: str, cfg: PortConfig) -> Port:
    return MemoryPort(name)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@contextmanager
def host_agent(store: MemoryStore, host: str, ttl: int = 10,
               state_dir: str | None = None) -> Iterator[HostAgent]:
    agent = Agent(Config(switch=SwitchConfig(name="lab")), memory_factory)
    agent.start()
    ha = HostAgent(store, "lab", host, f"192.0.2.{host[-1]}", agent, ttl=ttl,
                   status_interval=0.05, state_dir=state_dir)
    ha.start()
    try:
        assert ha.wait_synced()
        yield ha
    finally:
        ha.stop()
        agent.stop()


def test_compile_restricts_ports_firewall_and_mirrors_to_the_host() -> None:
    dvs = load(DVS)
    h1 = compile_host(dvs, "h1", {})
    assert sorted(h1.config.ports) == ["a1", "a2"]
    assert h1.config.ports["a1"].vlan.id == 10
    fw = h1.config.firewall
    assert fw is not None
    # the port group is a firewall group: local member by port, remote by address
    assert fw.groups["web"].ports == ("a1",) and fw.groups["web"].addresses == ("10.0.0.2/32",)
    assert [s.name for s in fw.sections] == ["web-only"]  # b1's section is not here
    assert sorted(h1.config.mirrors) == ["local", "remote"]
    assert [s.port for s in h1.config.mirrors["remote"].sources] == ["a1"]
    h2 = compile_host(dvs, "h2", {})
    assert sorted(h2.config.ports) == ["b1"] and not h2.config.mirrors
    # VLAN 10 spans hosts, but without an underlay address there is no overlay: said,
    # and so is the session whose copies cannot travel
    assert any("no underlay address" in n for n in h2.notes), h2.notes
    assert any("mirror remote" in n for n in h2.notes), h2.notes


def test_agent_applies_its_ports_and_follows_changes() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    with host_agent(store, "h1") as ha:
        assert sorted(ha.agent.config.ports) == ["a1", "a2", "overlay"]
        engine_a1 = ha.agent.engine.state.by_name["a1"]
        admin.edit(lambda d: d["port_groups"]["web"].update(vlan={"mode": "access", "id": 20}))
        wait_for(lambda: ha.agent.config.ports["a1"].vlan.id == 20)
        assert ha.agent.engine.state.by_name["a1"] == engine_a1  # changed live, not reopened
        assert ha.applied_generation == 2
        # a port moved to h2 leaves h1
        admin.edit(lambda d: d["ports"]["a2"].update(host="h2"))
        wait_for(lambda: "a2" not in ha.agent.config.ports)
        # local edits are refused: the store owns this switch
        with pytest.raises(AgentError, match="managed by distributed switch"):
            ha.agent.mirror_delete("local")
        wait_for(lambda: ha.status_writes > 0)
        st = admin.state()
        rows = {r["host"]: r for r in views.hosts_view(st, st.config(), admin.statuses())}
        assert rows["h1"]["status"] == "up" and rows["h1"]["underlay"] == "192.0.2.1"
        assert rows["h2"]["status"] == "down"
        ports = {r["port"]: r for r in views.ports_view(st, st.config(), admin.statuses())}
        assert ports["b1"]["state"] == "down" and "h2 is down" in ports["b1"]["reason"]
        wait_for(lambda: {r["port"]: r for r in views.ports_view(
            st, st.config(), admin.statuses())}["a1"]["state"] == "up")


def test_watch_compaction_recovery() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    with host_agent(store, "h1") as ha:
        with ha._lock:  # the agent is busy: its watch falls behind
            admin.edit(lambda d: d["port_groups"]["web"].update(
                vlan={"mode": "access", "id": 30}))
            admin.edit(lambda d: d["ports"].update(a3={"type": "memory", "host": "h1"}))
            store.compact(store.revision)
        wait_for(lambda: "a3" in ha.agent.config.ports
                 and ha.agent.config.ports["a1"].vlan.id == 30)
        assert ha.compactions >= 1


def test_outage_keeps_forwarding_config_and_resumes() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    with host_agent(store, "h1") as ha:
        store.set_available(False)
        wait_for(lambda: ha.store_state == "unreachable")
        assert sorted(ha.agent.config.ports) == ["a1", "a2", "overlay"]  # last state kept
        assert ha.status()["store"]["state"] == "unreachable"
        store.set_available(True)
        wait_for(lambda: ha.store_state == "connected")
        admin.edit(lambda d: d["ports"]["a2"].update(host="h2"))
        wait_for(lambda: "a2" not in ha.agent.config.ports)
        assert ha.outages == 1


def test_lease_expiry_marks_host_down_and_agent_reregisters() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    keys = DvsKeys("lab")
    with host_agent(store, "h1", ttl=3) as ha:
        wait_for(lambda: keys.live("h1") in store.get_range(*keys.watch_range()).as_dict())
        first = ha.lease
        store.set_available(False)  # the agent cannot keep its lease alive
        now[0] += 10
        store.set_available(True)
        store.expire()
        # gone: the host shows down until the agent notices and registers again
        wait_for(lambda: ha.lease not in (0, first), timeout=10)
        wait_for(lambda: keys.live("h1") in store.get_range(*keys.watch_range()).as_dict())
        assert ha.registrations == 2


def test_newer_schema_is_refused_and_the_last_state_kept() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    with host_agent(store, "h1") as ha:
        store.txn([], [Put(DvsKeys("lab").schema, dumps({"schema": 99}))])
        wait_for(lambda: ha.refused is not None)
        assert "schema version 99" in (ha.refused or "")
        assert "upgrade vspan" in (ha.refused or "")
        assert sorted(ha.agent.config.ports) == ["a1", "a2", "overlay"]


def test_overlay_port_floods_each_vlan_to_registered_hosts_with_ports_in_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vspan.control.dvs import compile as dvs_compile
    from vspan.control.dvs.document import LiveHost

    text = DVS.replace("mirrors:\n", "  c1: {type: memory, host: h3, port_group: web}\n"
                       "  c2: {type: memory, host: h3, vlan: {mode: access, id: 30}}\nmirrors:\n")
    text = text.replace("hosts: {h1: {}, h2: {}}", "hosts: {h1: {}, h2: {}, h3: {}}")
    text = text.replace("switch: {name: lab}", "switch: {name: lab, vxlan_port: 4790, mtu: 1600}")
    dvs = load(text)
    live = {"h1": LiveHost("h1", "198.18.1.2"), "h2": LiveHost("h2", "198.18.2.2")}
    notes: list[str] = []
    monkeypatch.setattr(dvs_compile, "overlay_supported", lambda: False)
    assert dvs_compile.overlay_ports(dvs, "h1", "198.18.1.2", live, notes) == {}
    assert "no VXLAN overlay in this build" in notes[0]
    monkeypatch.setattr(dvs_compile, "overlay_supported", lambda: True)
    notes = []
    port = dvs_compile.overlay_ports(dvs, "h1", "198.18.1.2", live, notes)["overlay"]
    vx = port["vxlan"]
    assert port["type"] == "vxlan" and vx["local_ip"] == "198.18.1.2"
    assert vx["udp_port"] == 4790 and vx["underlay_mtu"] == 1600
    assert vx["vnis"] == {"10": 10010}  # VLAN 30 and untagged a2 are on one host only
    assert vx["flood"] == {"10": ["198.18.2.2"]}  # h3 has VLAN 10 ports but no agent yet
    assert vx["peers"] == ["198.18.2.2"]
    assert any("not registered" in n and "h3" in n for n in notes)
    # a host with no VLAN shared with another host gets no overlay port
    solo = load(DVS.replace("b1: {type: memory, host: h2, port_group: web",
                            "b1: {type: memory, host: h1, port_group: web"))
    assert dvs_compile.overlay_ports(solo, "h1", "198.18.1.2", live, []) == {}


def test_overlay_is_a_reserved_port_name() -> None:
    from vspan.config.load import ConfigError

    with pytest.raises(ConfigError, match="reserved for the VXLAN port"):
        load("hosts: {h: {}}\nports: {overlay: {host: h}}")


def test_agent_validates_only_changed_items_and_keeps_the_last_good_one() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    keys = DvsKeys("lab")
    with host_agent(store, "h1") as ha:
        before = ha.index.decoded
        admin.edit(lambda d: d["port_groups"]["web"].update(vlan={"mode": "access", "id": 20}))
        wait_for(lambda: ha.agent.config.ports["a1"].vlan.id == 20)
        # one port group item changed (and meta): one item decoded, not the whole switch
        assert ha.index.decoded - before == 1
        # an item written behind vspan's back that does not validate: reported, not taken
        store.txn([], [Put(keys.item("ports", "a2"), dumps({"host": "h1", "type": "memory",
                                                            "vlan": {"mode": "nonsense"}}))])
        wait_for(lambda: any("ports/a2" in e for e in ha.errors))
        assert "a2" in ha.agent.config.ports  # the last good version stays
        assert any("keeping the last good version" in e for e in ha.status()["errors"])


def test_agent_started_while_the_store_is_down_runs_its_cached_configuration(
        tmp_path: Path) -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    with host_agent(store, "h1", state_dir=str(tmp_path)) as ha:
        wait_for(lambda: ha.cache_file.writes >= 1)
        gen = ha.applied_generation
    cache = tmp_path / "lab.h1.json"
    assert cache.exists()
    store.set_available(False)
    agent = Agent(Config(switch=SwitchConfig(name="lab")), memory_factory)
    agent.start()
    ha2 = HostAgent(store, "lab", "h1", "192.0.2.1", agent, state_dir=str(tmp_path))
    ha2.start()
    try:
        wait_for(lambda: ha2.running_cached is not None)
        assert sorted(agent.config.ports) == ["a1", "a2", "overlay"]
        st = ha2.status()
        assert st["store"]["state"] == "unreachable"
        assert f"generation {gen}" in st["store"]["running_cached"]
        assert st["applied"]["generation"] == gen
        store.set_available(True)  # etcd is back: the store's configuration takes over
        wait_for(lambda: ha2.running_cached is None and ha2.store_state == "connected")
        assert ha2.status()["store"]["running_cached"] is None
    finally:
        ha2.stop()
        agent.stop()
    # without a cache file the agent starts empty and says nothing about a cache
    store.set_available(False)
    agent = Agent(Config(switch=SwitchConfig(name="lab")), memory_factory)
    agent.start()
    ha3 = HostAgent(store, "lab", "h1", "192.0.2.1", agent, state_dir=str(tmp_path / "none"))
    ha3.start()
    try:
        wait_for(lambda: ha3.store_state == "unreachable")
        assert not agent.config.ports and ha3.running_cached is None
    finally:
        ha3.stop()
        agent.stop()


def test_the_overlay_port_is_never_judged_by_the_distributed_firewall() -> None:
    # regression: with a default-drop firewall the overlay port was covered like a VM's
    # port, so every frame from another host was dropped by rule "default"
    from vspan.control.dvs.document import LiveHost

    dvs = load(DVS.replace("default_action: allow", "default_action: drop"))
    live = {"h1": LiveHost("h1", "198.18.1.2"), "h2": LiveHost("h2", "198.18.2.2")}
    plan = compile_host(dvs, "h1", live, underlay="198.18.1.2")
    assert "overlay" in plan.config.ports
    fw = plan.config.firewall
    assert fw is not None and "overlay" in fw.exclude


def _agent_with_interval(store: MemoryStore, host: str, interval: float,
                         settle: float = 0.25) -> HostAgent:
    agent = Agent(Config(switch=SwitchConfig(name="lab")), memory_factory)
    agent.start()
    ha = HostAgent(store, "lab", host, f"192.0.2.{host[-1]}", agent,
                   status_interval=interval, status_settle=settle)
    ha.start()
    return ha


def test_applied_generation_is_reported_without_waiting_for_the_status_timer() -> None:
    """A reconcile that applied a new generation wakes the status writer: with an hour's
    status interval the store still learns at once that the agent applied it, and when
    the engine applied it (``at``) after the watch answer arrived (``received``)."""
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    ha = _agent_with_interval(store, "h1", 3600.0)
    try:
        assert ha.wait_synced()
        wait_for(lambda: admin.statuses().get("h1", {}).get("applied", {})
                 .get("generation") == 1)
        applied = admin.statuses()["h1"]["applied"]
        assert 0 < applied["received"] <= applied["at"]
        assert ha.status_writes == 1
        # the rate bound holds: a second generation within the interval waits for it
        admin.edit(lambda d: d["port_groups"]["web"].update(vlan={"mode": "access", "id": 20}))
        wait_for(lambda: ha.applied_generation == 2)
        time.sleep(0.2)
        assert ha.status_writes == 1
        assert admin.statuses()["h1"]["applied"]["generation"] == 1
    finally:
        ha.stop()
        ha.agent.stop()


def test_status_writes_stay_within_the_rate_bound_under_many_changes() -> None:
    """Many generations in a row: at most one status write per interval (plus the
    first), and the last generation is reported at the end."""
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    ha = _agent_with_interval(store, "h1", 0.3)
    try:
        assert ha.wait_synced()
        t0 = time.monotonic()
        for i in range(12):
            def flip(d: dict[str, Any], vid: int = 20 + i) -> None:
                d["port_groups"]["web"].update(vlan={"mode": "access", "id": vid})
            admin.edit(flip)
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        wait_for(lambda: admin.statuses().get("h1", {}).get("applied", {})
                 .get("generation") == 13)
        elapsed_all = time.monotonic() - t0
        assert ha.status_writes <= elapsed_all / 0.3 + 2, (ha.status_writes, elapsed)
    finally:
        ha.stop()
        ha.agent.stop()


def test_a_burst_of_generations_is_reported_once_after_it_settled() -> None:
    """Generations applied in quick succession (within the settle time of each other)
    give one status write, with the last generation; nothing is reported before the
    burst is over."""
    store = MemoryStore()
    admin = DvsAdmin(store, "lab")
    admin.apply(load(DVS))
    ha = _agent_with_interval(store, "h1", 1.5, settle=1.5)
    try:
        assert ha.wait_synced()
        wait_for(lambda: ha.status_writes == 1)
        assert admin.statuses()["h1"]["applied"]["generation"] == 1
        time.sleep(1.5)  # the rate bound's interval is over
        for gen, vid in ((2, 20), (3, 21), (4, 22)):
            def flip(d: dict[str, Any], v: int = vid) -> None:
                d["port_groups"]["web"].update(vlan={"mode": "access", "id": v})
            admin.edit(flip)

            def applied(g: int = gen) -> bool:
                return ha.applied_generation == g
            wait_for(applied)
        assert ha.status_writes == 1  # the burst is not over yet (settle: 1.5 s)
        wait_for(lambda: ha.status_writes == 2)
        assert admin.statuses()["h1"]["applied"]["generation"] == 4
        time.sleep(0.3)
        assert ha.status_writes == 2
    finally:
        ha.stop()
        ha.agent.stop()


def test_hosts_by_vlan_follows_a_group_change_for_every_member() -> None:
    """The per-group VLAN walk gives what each port's own VLANs give, and a port group's
    new VLAN (a new group object, as the store index makes) reaches all its members."""
    from vspan.control.dvs.compile import PortCache

    text = DVS.replace("  a2: {type: memory, host: h1}",
                       "  a2: {type: memory, host: h1, vlan: {mode: trunk, allowed: [7, 8]}}")
    dvs = load(text)
    cache = PortCache()

    def per_port(d: DvsConfig) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for name, port in d.ports.items():
            for v in PortCache().vlans(d, name):
                out.setdefault(v, set()).add(port.host)
        return out

    assert cache.hosts_by_vlan(dvs) == per_port(dvs) == {
        10: {"h1", "h2"}, 7: {"h1"}, 8: {"h1"}}
    moved = load(text.replace("id: 10", "id: 20"))
    assert cache.hosts_by_vlan(moved) == per_port(moved) == {
        20: {"h1", "h2"}, 7: {"h1"}, 8: {"h1"}}
