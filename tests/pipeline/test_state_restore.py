"""Restoring a switch from its state file: what start-up takes (saved state or the -c file),
the learned MAC table with ages, live changes still known as live, durable commands."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from tests.pipeline.harness import make_switch
from vspan.cli.upstate import load_switch
from vspan.config.load import load_text
from vspan.control.agent import Agent, AgentError, LiveChangesError
from vspan.control.live import LiveChanges, config_data
from vspan.control.statedb.keeper import StateKeeper
from vspan.control.statedb.restore import plan_start, restore_fdb, snapshot_fdb
from vspan.control.statedb.store import SavedConfig, StateError, StateStore, StateWriteError
from vspan.datapath.flowkey import mac_str
from vspan.ports.memory import MemoryPort

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"

FILE = """
switch: {name: st, state_dir: STATE}
ports:
  web1: {type: memory, policy: {addresses: [10.0.0.5]}}
  web2: {type: memory}
  sniff: {type: memory}
"""


def icmp(src: str, dst: str) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


# ----------------------------------------------------------------- plan_start
def saved(running: str, source: str | None, live: LiveChanges | None = None) -> SavedConfig:
    return SavedConfig(config_data(load_text(running)), (live or LiveChanges()).to_data(),
                       "/etc/sw.yaml", None if source is None else
                       config_data(load_text(source)), 0.0)


def live_acl(running_yaml: str) -> LiveChanges:
    """A live ACL recorded against ``running_yaml`` (which must carry it)."""
    from vspan.control.live import AclItem

    live = LiveChanges()
    live.record(AclItem("a", "x", False), config_data(load_text(running_yaml)), "added",
                "vspan acl add")
    return live


BASE = "ports: {a: {type: memory}, b: {type: memory}}"
WITH_ACL = ("ports: {a: {type: memory, policy: {acls: [{id: x, action: deny, direction: in, "
            "remote_ip: 10.0.0.0/8}]}}, b: {type: memory}}")


def test_no_state_seeds_from_the_file() -> None:
    plan = plan_start(None, load_text(BASE), "/etc/sw.yaml", "/s/state.db")
    assert plan.how == "new" and plan.save and plan.source is not None
    assert plan.config == load_text(BASE) and len(plan.live) == 0


def test_unchanged_file_runs_the_saved_state_with_its_live_changes() -> None:
    live = live_acl(WITH_ACL)
    plan = plan_start(saved(WITH_ACL, BASE, live), load_text(BASE + "\n# a comment"),
                      "/etc/sw.yaml", "/s/state.db")
    assert plan.how == "restored" and not plan.save
    assert plan.config == load_text(WITH_ACL) and len(plan.live) == 1
    assert "1 live change" in plan.notes[0]


def test_changed_file_is_taken_when_it_undoes_nothing_live() -> None:
    changed = BASE.replace("b: {type: memory}", "b: {type: memory}, c: {type: memory}")
    plan = plan_start(saved(BASE, BASE), load_text(changed), "/etc/sw.yaml", "/s/state.db")
    assert plan.how == "restored + file" and plan.save
    assert plan.config == load_text(changed)
    assert "port added: c" in "\n".join(plan.notes)
    # the file was extended with what ran live (`vspan show config > FILE`, then edits)
    live = live_acl(WITH_ACL)
    plan = plan_start(saved(WITH_ACL, BASE, live), load_text(WITH_ACL), "/etc/sw.yaml",
                      "/s/state.db")
    assert plan.how == "restored + file" and len(plan.live) == 0


def test_changed_file_that_would_undo_live_changes_is_not_taken() -> None:
    changed = BASE.replace("b: {type: memory}", "b: {type: memory}, c: {type: memory}")
    live = live_acl(WITH_ACL)
    plan = plan_start(saved(WITH_ACL, BASE, live), load_text(changed), "/etc/sw.yaml",
                      "/s/state.db")
    assert plan.how == "restored, file not taken" and not plan.save
    assert plan.config == load_text(WITH_ACL) and len(plan.live) == 1
    text = "\n".join(plan.notes)
    assert "would undo 1 live change" in text and "removes acl a/x" in text
    assert "vspan reload --keep-live" in text


def test_a_saved_configuration_this_vspan_rejects_is_refused() -> None:
    bad = SavedConfig({"ports": {"a": {"type": "warp"}}}, [], None, None, 0.0)
    with pytest.raises(StateError, match="saved configuration is not valid"):
        plan_start(bad, load_text(BASE), "/etc/sw.yaml", "/s/state.db")
    torn = SavedConfig(config_data(load_text(BASE)), [{"item": {"kind": "?"}}], None, None,
                       0.0)
    with pytest.raises(StateError, match="damaged"):
        plan_start(torn, load_text(BASE), "/etc/sw.yaml", "/s/state.db")


# ---------------------------------------------------------------- MAC table
VLANS = """
switch: {fdb_aging_seconds: 300}
ports:
  a: {type: memory, vlan: {mode: access, id: 10}}
  b: {type: memory, vlan: {mode: access, id: 10}}
  c: {type: memory, vlan: {mode: access, id: 10}}
  d: {type: memory, vlan: {mode: access, id: 20}}
"""


def test_mac_table_comes_back_with_its_ages_and_unicast_does_not_flood() -> None:
    old = make_switch(VLANS)
    old.send("a", icmp(A, "ff:ff:ff:ff:ff:ff"))
    old.clock.now += 100
    old.send("b", icmp(B, "ff:ff:ff:ff:ff:ff"))
    old.send("d", icmp(C, "ff:ff:ff:ff:ff:ff"))
    old.clock.now += 20
    macs = snapshot_fdb(old.engine)
    assert sorted((mac_str(m.mac), m.port, m.age) for m in macs) == [
        (A, "a", 120.0), (B, "b", 20.0), (C, "d", 20.0)]
    old.engine.close()
    # restarted 30 s later; port d now in VLAN 30, so C's entry no longer fits
    new = make_switch(VLANS.replace("id: 20", "id: 30"))
    got = restore_fdb(new.engine, macs, saved_at=5000.0, now=5030.0)
    assert (got.restored, got.not_member, got.aged) == (2, 1, 0)
    ages = {(e.port, round(new.clock.now - e.last_seen)) for e in
            new.engine.state.fdb.entries.values()}
    a, b = new.engine.state.by_name["a"], new.engine.state.by_name["b"]
    assert ages == {(a, 150), (b, 50)}  # ages continue, the down time counted
    new.send("c", icmp(C, A))  # unicast to a restored MAC: one port, no flood
    assert len(new.got("a")) == 1 and new.got("b") == []
    assert new.engine.state.ports[new.engine.state.by_name["c"]].counters.flooded == 0
    new.engine.close()


def test_old_entries_and_gone_ports_are_not_restored() -> None:
    old = make_switch(VLANS)
    old.send("a", icmp(A, "ff:ff:ff:ff:ff:ff"))
    old.clock.now += 250
    old.send("b", icmp(B, "ff:ff:ff:ff:ff:ff"))
    old.send("c", icmp(C, "ff:ff:ff:ff:ff:ff"))
    macs = snapshot_fdb(old.engine)
    old.engine.close()
    new = make_switch(VLANS.replace("  c: {type: memory, vlan: {mode: access, id: 10}}\n", ""))
    new.ports["b"].set_link(False)
    new.engine.housekeeping(new.clock.now)  # the switch sees b's link down
    got = restore_fdb(new.engine, macs, saved_at=100.0, now=160.0)  # A: 250 + 60 > 300
    assert (got.aged, got.port_down, got.port_gone, got.restored) == (1, 1, 1, 0)
    assert len(new.engine.state.fdb) == 0
    # a clock set back does not make entries younger than they were at the save
    again = restore_fdb(make_switch(VLANS).engine, macs, saved_at=100.0, now=50.0)
    assert again.restored == 3 and again.aged == 0
    new.engine.close()


# -------------------------------------------------------- a daemon in-process
@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    path = tmp_path / "sw.yaml"
    path.write_text(FILE.replace("STATE", str(tmp_path / "state")), encoding="utf-8")
    return path


def up(cfg_path: Path, reset: bool = False) -> tuple[Agent, StateKeeper]:
    """What `vspan up` does before serving the API."""
    loaded = load_switch(argparse.Namespace(config=str(cfg_path), state_dir=None,
                                            reset_state=reset))
    assert loaded is not None
    agent, keeper = loaded
    agent.start(keeper.restore_fdb)
    keeper.begin(agent.config, agent.live)
    return agent, keeper


def crash(agent: Agent, keeper: StateKeeper) -> None:
    """Like kill -9: no last save; the file is closed as it is (its lock goes)."""
    keeper._stop.set()
    agent.stop()
    keeper.store.close()


@pytest.fixture
def daemon(cfg_path: Path) -> Iterator[tuple[Agent, StateKeeper]]:
    agent, keeper = up(cfg_path)
    yield agent, keeper
    agent.stop()
    keeper.stop()


def test_live_changes_are_durable_and_stay_live_after_a_crash(
        daemon: tuple[Agent, StateKeeper], cfg_path: Path) -> None:
    agent, keeper = daemon
    agent.acl_add("web1", {"id": "no-ten", "action": "deny", "direction": "both",
                           "remote_ip": "10.0.0.0/8"})
    agent.mirror_create("mon", {"sources": ["web1"], "destinations": ["sniff"]})
    agent.firewall_rule_add("lab", {"id": "icmp-ok", "action": "allow", "services": ["icmp"]})
    crash(agent, keeper)  # right after the commands returned
    agent2, keeper2 = up(cfg_path)
    try:
        assert keeper2.plan.how == "restored"
        assert agent2.config == agent.config
        assert [c.item.label for c in agent2.live] == [
            "acl web1/no-ten", "mirror mon", "firewall rule icmp-ok"]
        # issue 7's bookkeeping survived: a plain reload still refuses to undo them
        with pytest.raises(LiveChangesError) as info:
            agent2.reload()
        assert len(info.value.lines) == 3
        agent2.reload(live="drop")
        assert len(agent2.live) == 0
    finally:
        agent2.stop()
        keeper2.stop()
    agent3, keeper3 = up(cfg_path)  # the reload was durable too
    try:
        assert keeper3.plan.how == "restored" and "mon" not in agent3.config.mirrors
    finally:
        agent3.stop()
        keeper3.stop()


def test_learned_macs_survive_a_clean_stop(cfg_path: Path) -> None:
    agent, keeper = up(cfg_path)
    web1 = agent.engine.backends[agent.engine.state.by_name["web1"]]
    assert isinstance(web1, MemoryPort)
    web1.inject(icmp(A, B))
    agent.engine.call(lambda: None)  # the engine thread handled the frame
    for _ in range(100):
        if agent.show("fdb"):
            break
        agent.engine.call(lambda: None)
    agent.stop()
    keeper.stop()  # a clean stop saves the table
    agent2, keeper2 = up(cfg_path)
    try:
        assert [(r["mac"], r["port"]) for r in agent2.show("fdb")] == [(A, "web1")]
        assert keeper2.fdb_restore.restored == 1
    finally:
        agent2.stop()
        keeper2.stop()


def test_a_change_that_cannot_be_saved_is_undone(daemon: tuple[Agent, StateKeeper],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    agent, keeper = daemon
    before = agent.config

    def failing(*_args: object) -> None:
        raise StateWriteError("disk full")

    monkeypatch.setattr(keeper.store, "save_config", failing)
    with pytest.raises(AgentError, match="could not be saved to the state file") as info:
        agent.acl_add("web1", {"id": "x", "action": "deny", "direction": "in",
                               "remote_ip": "10.0.0.0/8"})
    assert info.value.status == 500
    assert agent.config == before and len(agent.live) == 0


def test_a_capture_running_at_a_crash_is_shown_interrupted(
        daemon: tuple[Agent, StateKeeper], cfg_path: Path, tmp_path: Path) -> None:
    agent, keeper = daemon
    done = agent.capture_start(["web2"], str(tmp_path / "done.pcapng"))
    agent.capture_stop(int(done["id"]))
    agent.capture_start(["web1"], str(tmp_path / "cut.pcapng"))
    crash(agent, keeper)
    agent2, keeper2 = up(cfg_path)
    try:
        assert agent2.captures() == []  # not restarted
        info = agent2.state_info()
        (cut,) = info["started"]["interrupted_captures"]
        assert cut["ports"] == ["web1"] and cut["path"].endswith("cut.pcapng")
        assert any("interrupted" in n and "cut.pcapng" in n for n in keeper2.notes())
        assert sorted(c["state"] for c in info["captures"]) == ["interrupted", "stopped"]
    finally:
        agent2.stop()
        keeper2.stop()


def test_reset_state_starts_from_the_file(daemon: tuple[Agent, StateKeeper],
                                          cfg_path: Path) -> None:
    agent, keeper = daemon
    agent.mirror_create("mon", {"sources": ["web1"], "destinations": ["sniff"]})
    agent.stop()
    keeper.stop()
    agent2, keeper2 = up(cfg_path, reset=True)
    try:
        assert keeper2.plan.how == "new" and "mon" not in agent2.config.mirrors
        (backup, *_) = keeper2.store.backups
        old = StateStore(backup, "st")
        try:
            kept = old.load_config()
            assert kept is not None and "mon" in kept.running["mirrors"]
        finally:
            old.close()
    finally:
        agent2.stop()
        keeper2.stop()
