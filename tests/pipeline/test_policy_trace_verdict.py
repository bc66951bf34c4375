"""`vspan trace` and the firewall: the traced verdict must say what the switch does.

The firewall's decision is a per-frame hook (it depends on connection state), and a
trace does not run hooks. Found by the system test of the two-tier app: the trace of
the compromised host's SYN to the database listed "rule 1003 -> reject" and then
ended with "verdict: delivered to web, db".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.policy_frames import arp, tcp
from tests.pipeline.policy_harness import PolicySwitch, make_policy_switch

WEB_MAC, DB_MAC, BAD_MAC = "02:00:00:00:00:20", "02:00:00:00:00:30", "02:00:00:00:00:66"
WEB, DB, BAD = "10.60.0.20", "10.60.0.30", "10.60.0.66"

POLICY = """
ports:
  web: {addresses: [10.60.0.20]}
  db: {addresses: [10.60.0.30]}
firewall:
  default_action: drop
  groups: {web-tier: {ports: [web]}, db-tier: {ports: [db]}}
  sections:
    - name: two-tier
      rules:
        - {id: "1002", sources: [web-tier], destinations: [db-tier], services: ["tcp/5432"],
           action: allow}
        - {id: "1003", sources: [any], destinations: [db-tier], action: reject}
"""


@pytest.fixture
def ps() -> Iterator[PolicySwitch]:
    s = make_policy_switch(["web", "db", "bad"], POLICY)
    yield s
    s.close()


def verdict(ps: PolicySwitch, port: str, frame: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    """(output ports, [(reason, rule)]) of ``vspan trace`` for ``frame`` into ``port``."""
    _d, outcome, _tracer = ps.sw.engine.trace(port, frame)
    names = ps.sw.engine.state.port_names
    return ([names[p] for p, _ in outcome.outputs],
            [(x.reason.value, x.rule) for x in outcome.drops])


def test_trace_of_a_rejected_syn_says_dropped(ps: PolicySwitch) -> None:
    syn = tcp(BAD, DB, 40000, 5432, "S", src_mac=BAD_MAC, dst_mac=DB_MAC)
    outs, drops = verdict(ps, "bad", syn)
    assert outs == [] and drops == [("firewall-reject", "1003")]
    _d, outcome, _t = ps.sw.engine.trace("bad", syn)
    [answer] = outcome.replies  # the reject answer, back to the sender
    [(to, rst)] = answer.outputs
    assert ps.sw.engine.state.port_names[to] == "bad"
    # what the switch really does with the same frame
    ps.send("bad", syn)
    assert ps.got("db") == [] and ps.got("web") == []
    assert ps.got("bad") == [rst]  # the RST the trace predicted
    assert ps.drops_by_rule("firewall-reject") == {"1003": 1}


def test_trace_of_a_default_drop_says_dropped(ps: PolicySwitch) -> None:
    syn = tcp(BAD, WEB, 40000, 22, "S", src_mac=BAD_MAC, dst_mac=WEB_MAC)
    outs, drops = verdict(ps, "bad", syn)
    assert outs == [] and drops == [("firewall-deny", "default")]


def test_trace_of_an_allowed_flow_says_delivered_and_changes_nothing(ps: PolicySwitch) -> None:
    syn = tcp(WEB, DB, 40000, 5432, "S", src_mac=WEB_MAC, dst_mac=DB_MAC)
    outs, drops = verdict(ps, "web", syn)
    assert set(outs) == {"db", "bad"} and drops == []  # flooded (1002 applies everywhere)
    assert ps.conns("web") == [] and ps.conns("db") == []  # a trace starts no connection


def test_trace_of_an_established_flow_passes_by_state(ps: PolicySwitch) -> None:
    # a real connection web -> db; then the db's answer is traced: allowed by state
    ps.send("db", arp(src_mac=DB_MAC, psrc=DB, pdst=WEB))  # the switch learns db's MAC
    ps.got("web"), ps.got("bad")
    ps.send("web", tcp(WEB, DB, 40000, 5432, "S", 100, src_mac=WEB_MAC, dst_mac=DB_MAC))
    assert len(ps.got("db")) == 1
    synack = tcp(DB, WEB, 5432, 40000, "SA", 900, 101, src_mac=DB_MAC, dst_mac=WEB_MAC)
    outs, drops = verdict(ps, "db", synack)
    assert outs == ["web"] and drops == []
