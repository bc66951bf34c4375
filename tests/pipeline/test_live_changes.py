"""A reload does not silently undo what was changed live; the running config saves as YAML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.diffcount import count_diffs
from vspan.config.load import dump_text, load_file
from vspan.config.model import PortConfig
from vspan.control import agent as agent_mod
from vspan.control.agent import Agent, LiveChangesError
from vspan.datapath import engine as engine_mod
from vspan.datapath import state as state_mod
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort

FILE = """
ports:
  web1:
    type: memory
    policy:
      addresses: [10.0.0.5]
      acls: [{id: file-acl, action: deny, direction: in, remote_ip: 10.66.0.0/16}]
  web2: {type: memory}
  sniff: {type: memory}
firewall:
  default_action: allow
  sections:
    - name: base
      rules: [{id: base-1, action: allow, services: [tcp/22]}]
"""


def memory_factory(name: str, cfg: PortConfig) -> Port:
    return MemoryPort(name)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    path = tmp_path / "switch.yaml"
    path.write_text(FILE, encoding="utf-8")
    a = Agent.from_file(str(path), memory_factory)
    a.engine.open()
    yield a
    a.stop()


def live_edits(agent: Agent) -> None:
    agent.acl_add("web1", {"id": "no-ten", "action": "deny", "direction": "both",
                           "remote_ip": "10.0.0.0/8"})
    agent.firewall_rule_add("lab", {"id": "icmp-ok", "action": "allow", "services": ["icmp"]})


def acl_ids(agent: Agent, port: str = "web1") -> list[str]:
    pol = agent.config.ports[port].policy
    return [e.id or "" for e in pol.acls] if pol is not None else []


def rule_ids(agent: Agent) -> list[str]:
    fw = agent.config.firewall
    assert fw is not None
    return [r.id or "" for s in fw.sections for r in s.rules]


def test_live_commands_report_their_changes(agent: Agent) -> None:
    cs = agent.firewall_rule_add("lab", {"id": "icmp-ok", "action": "allow",
                                         "services": ["icmp"]})
    assert cs.summary() == ["firewall section added: lab", "firewall rule added: icmp-ok"]
    cs = agent.firewall_rule_remove("base-1")
    assert cs.summary() == ["firewall rule removed: base-1"]
    cs = agent.acl_add("web1", {"id": "no-ten", "action": "deny", "direction": "both",
                                "remote_ip": "10.0.0.0/8"})
    assert cs.summary() == ["acl added: web1/no-ten"]


def test_plain_reload_refuses_to_undo_live_changes(agent: Agent) -> None:
    live_edits(agent)
    agent.acl_remove("web1", "file-acl")
    before = agent.config
    with pytest.raises(LiveChangesError) as info:
        agent.reload()
    lines = info.value.lines
    assert len(lines) == 3, lines
    assert lines[0].startswith("removes acl web1/no-ten (added with 'vspan acl add' at ")
    assert lines[1].startswith("removes firewall rule icmp-ok (added with "
                               "'vspan firewall rule add' at ")
    assert lines[2].startswith("restores acl web1/file-acl (removed with 'vspan acl remove' at ")
    assert "3 live changes" in str(info.value)
    assert agent.config is before  # nothing changed


def test_keep_live_merges_on_top_of_the_file(agent: Agent, tmp_path: Path) -> None:
    live_edits(agent)
    assert agent.config_path is not None
    Path(agent.config_path).write_text(
        FILE + "mirrors:\n  mon: {sources: [web2], destinations: [sniff]}\n", encoding="utf-8")
    result = agent.reload(live="keep")
    assert result.changes.summary() == ["mirror added: mon"]
    assert [t.split(" (")[0] for t in result.live_kept] == ["acl web1/no-ten",
                                                            "firewall rule icmp-ok"]
    assert acl_ids(agent) == ["file-acl", "no-ten"]
    assert rule_ids(agent) == ["base-1", "icmp-ok"]
    assert "mon" in agent.config.mirrors
    assert len(agent.live) == 2  # still live: the file does not carry them yet


def test_force_undoes_and_lists(agent: Agent) -> None:
    live_edits(agent)
    result = agent.reload(live="drop")
    assert sorted(result.changes.summary()) == sorted([
        "acl removed: web1/no-ten", "firewall section removed: lab",
        "firewall rule removed: icmp-ok"])
    assert [t.split(" (")[0] for t in result.live_dropped] == ["removes acl web1/no-ten",
                                                               "removes firewall rule icmp-ok"]
    assert acl_ids(agent) == ["file-acl"] and len(agent.live) == 0
    assert agent.reload().changes.empty  # nothing live is left to refuse for


def test_saved_running_config_round_trips(agent: Agent, tmp_path: Path) -> None:
    live_edits(agent)
    agent.mirror_create("mon", {"sources": ["web1"], "destinations": ["sniff"]})
    agent.mirror_enable("mon", False)
    saved = tmp_path / "saved.yaml"
    saved.write_text(dump_text(agent.config), encoding="utf-8")
    assert load_file(saved) == agent.config  # what check-config reads
    result = agent.reload(str(saved))  # the file now carries every live change
    assert result.changes.empty and not result.live_dropped and len(agent.live) == 0


def test_mirror_changes_are_live_changes(agent: Agent) -> None:
    agent.mirror_create("mon", {"sources": ["web1"], "destinations": ["sniff"]})
    agent.mirror_enable("mon", False)
    with pytest.raises(LiveChangesError) as info:
        agent.reload()
    (line,) = info.value.lines
    assert line.startswith("removes mirror mon (added with 'vspan mirror create' at ")
    assert ", then disabled with 'vspan mirror disable' at " in line


def test_a_live_change_undone_by_hand_is_not_listed(agent: Agent) -> None:
    agent.acl_add("web1", {"id": "tmp", "action": "deny", "direction": "in",
                           "remote_ip": "10.1.0.0/16"})
    agent.acl_remove("web1", "tmp")
    assert agent.reload().changes.empty


def test_keep_live_fails_cleanly_when_the_port_is_gone(agent: Agent) -> None:
    live_edits(agent)
    assert agent.config_path is not None
    Path(agent.config_path).write_text(FILE.replace("  web1:\n", "  web9:\n"),
                                       encoding="utf-8")
    before = agent.config
    with pytest.raises(agent_mod.AgentError, match="port web1 is not in the configuration"):
        agent.reload(live="keep")
    assert agent.config is before


def test_agent_reload_computes_the_change_set_once(agent: Agent,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_diffs(monkeypatch, agent_mod, engine_mod, state_mod)
    agent.firewall_rule_add("lab", {"id": "icmp-ok", "action": "allow", "services": ["icmp"]})
    assert calls == ["diff"]
