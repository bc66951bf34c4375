"""Extended ACLs: weights, first match, ports, stateful sessions and idle timeout."""

from __future__ import annotations

import pytest

from tests.helpers.policy_frames import arp, echo, key_of, tcp, udp
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import Tracer
from vspan.policy.common import Dir, parse_ip_spec, parse_port_range
from vspan.policy.extacl import ExtAclRule, ExtAclSessions, ExtAclTable, ExtAction

VM = "10.0.0.5"
WEB = "10.1.1.80"


def rule(id: str, action: str, direction: Dir, weight: int, *, proto: int | None = None,
         remote: str = "any", local: str = "any", rport: str | None = None,
         lport: str | None = None, stateful: bool = False, idle: float = 300.0) -> ExtAclRule:
    return ExtAclRule(
        id, ExtAction(action), direction, weight,
        local_ip=parse_ip_spec(local), remote_ip=parse_ip_spec(remote), protocol=proto,
        local_port=parse_port_range(lport) if lport else None,
        remote_port=parse_port_range(rport) if rport else None,
        stateful=stateful, idle_timeout=idle,
    )


def out_tcp(dport: int, dst: str = WEB, sport: int = 40000, flags: str = "S") -> bytes:
    return tcp(VM, dst, sport, dport, flags)


def in_tcp(sport: int, src: str = WEB, dport: int = 40000, flags: str = "SA") -> bytes:
    return tcp(src, VM, sport, dport, flags, src_mac="02:00:00:00:00:02",
               dst_mac="02:00:00:00:00:01")


def test_higher_weight_first_and_first_match_ends() -> None:
    t = ExtAclTable([
        rule("low-allow", "allow", "out", 10),
        rule("mid-deny", "deny", "out", 50, proto=6, rport="80"),
        rule("high-allow", "allow", "out", 100, proto=6, rport="80", remote="10.1.1.0/24"),
    ])
    m = t.match(key_of(out_tcp(80)), "out")
    assert m.allowed and m.rule_id == "high-allow" and m.checked == 1
    m = t.match(key_of(out_tcp(80, dst="10.2.2.2")), "out")
    assert not m.allowed and m.rule_id == "mid-deny" and m.checked == 2
    m = t.match(key_of(out_tcp(443, dst="10.2.2.2")), "out")
    assert m.allowed and m.rule_id == "low-allow" and m.checked == 3


def test_order_of_definition_does_not_matter() -> None:
    a = [rule("r1", "deny", "in", 1), rule("r2", "allow", "in", 2, proto=17)]
    key = key_of(udp(WEB, VM, 53, 5000))
    assert ExtAclTable(a).match(key, "in").rule_id == "r2"
    assert ExtAclTable(reversed(a)).match(key, "in").rule_id == "r2"


def test_no_match_allows_and_non_ip_passes() -> None:
    t = ExtAclTable([rule("d", "deny", "out", 5, proto=6, rport="22")])
    m = t.match(key_of(out_tcp(80)), "out")
    assert m.allowed and m.rule is None
    t2 = ExtAclTable([rule("all", "deny", "out", 5)])
    assert t2.match(key_of(arp()), "out").allowed
    assert not t2.match(key_of(out_tcp(80)), "out").allowed


def test_local_and_remote_ports_follow_direction() -> None:
    # inbound to the VM's port 22: local port is the destination port
    t = ExtAclTable([rule("ssh-in", "deny", "in", 10, proto=6, lport="22")])
    assert not t.match(key_of(in_tcp(50000, dport=22, flags="S")), "in").allowed
    assert t.match(key_of(in_tcp(22, dport=50000)), "in").allowed
    # outbound from the VM: local port is the source port
    t = ExtAclTable([rule("eph", "deny", "out", 10, proto=17, lport="1000-2000")])
    assert not t.match(key_of(udp(VM, WEB, 1500, 53)), "out").allowed
    assert t.match(key_of(udp(VM, WEB, 2500, 53)), "out").allowed


def test_protocol_number_and_icmp() -> None:
    t = ExtAclTable([rule("icmp", "deny", "out", 10, proto=1)])
    assert not t.match(key_of(echo(VM, WEB)), "out").allowed
    assert t.match(key_of(udp(VM, WEB, 1, 2)), "out").allowed


def test_ipv6_rules() -> None:
    t = ExtAclTable([rule("v6", "deny", "out", 10, remote="2001:db8::/32")])
    assert not t.match(key_of(udp("2001:db8:9::5", "2001:db8::1", 1, 2)), "out").allowed
    assert t.match(key_of(udp("2001:db8:9::5", "2002::1", 1, 2)), "out").allowed
    assert t.match(key_of(udp(VM, WEB, 1, 2)), "out").allowed


def test_duplicate_weight_rejected() -> None:
    with pytest.raises(ValueError, match="weight 5"):
        ExtAclTable([rule("a", "deny", "out", 5), rule("b", "allow", "out", 5)])
    ExtAclTable([rule("a", "deny", "out", 5), rule("b", "allow", "in", 5)])


def _stateful_table(idle: float = 60.0) -> ExtAclTable:
    return ExtAclTable([
        rule("web-out", "allow", "out", 100, proto=6, rport="80", stateful=True, idle=idle),
        rule("deny-in", "deny", "in", 10),
    ])


def test_stateful_rule_admits_return_traffic() -> None:
    t = _stateful_table()
    sess = ExtAclSessions()
    syn = out_tcp(80)
    m_out = t.match(key_of(syn), "out")
    assert m_out.needs_state
    r = sess.process(key_of(syn), "out", m_out, now=0.0)
    assert r.allowed and not r.via_session and len(sess) == 1
    synack = in_tcp(80)
    m_in = t.match(key_of(synack), "in")
    assert not m_in.allowed and m_in.rule_id == "deny-in" and m_in.needs_state
    r = sess.process(key_of(synack), "in", m_in, now=1.0)
    assert r.allowed and r.via_session and r.rule_id == "web-out"
    # another remote port is not the same session
    other = in_tcp(81)
    r = sess.process(key_of(other), "in", t.match(key_of(other), "in"), now=1.0)
    assert not r.allowed and r.reason is DropReason.EXT_ACL_DENY


def test_idle_timeout_ends_session_and_traffic_refreshes_it() -> None:
    t = _stateful_table(idle=30.0)
    sess = ExtAclSessions()
    syn, reply = key_of(out_tcp(80)), key_of(in_tcp(80))
    m_out, m_in = t.match(syn, "out"), t.match(reply, "in")
    sess.process(syn, "out", m_out, now=0.0)
    assert sess.process(reply, "in", m_in, now=29.0).allowed  # refreshes to 59
    assert sess.process(reply, "in", m_in, now=58.0).allowed  # refreshes to 88
    assert not sess.process(reply, "in", m_in, now=88.0).allowed  # idle for 30 s: gone
    assert sess.lookup(reply, "in", 88.0) is None
    assert len(sess) == 0


def test_expire_sweep() -> None:
    t = _stateful_table(idle=10.0)
    sess = ExtAclSessions()
    for port in range(40000, 40010):
        k = key_of(out_tcp(80, sport=port))
        sess.process(k, "out", t.match(k, "out"), now=0.0)
    assert len(sess) == 10
    assert sess.expire(5.0) == 0
    assert sess.expire(10.0) == 10 and len(sess) == 0


def test_non_stateful_allow_does_not_admit_return() -> None:
    t = ExtAclTable([rule("web-out", "allow", "out", 100, proto=6, rport="80"),
                     rule("stateful-dns", "allow", "out", 90, proto=17, rport="53",
                          stateful=True),
                     rule("deny-in", "deny", "in", 10)])
    sess = ExtAclSessions()
    k = key_of(out_tcp(80))
    m = t.match(k, "out")
    assert not m.needs_state  # allowed, not stateful: nothing per frame
    sess.process(k, "out", m, now=0.0)
    back = key_of(in_tcp(80))
    assert not sess.process(back, "in", t.match(back, "in"), now=0.0).allowed


def test_session_table_limit() -> None:
    t = _stateful_table()
    sess = ExtAclSessions(max_sessions=2)
    for port in (1, 2, 3):
        k = key_of(out_tcp(80, sport=port))
        assert sess.process(k, "out", t.match(k, "out"), now=0.0).allowed
    assert len(sess) == 2 and sess.refused == 1


def test_explain_candidates_and_trace() -> None:
    t = ExtAclTable([
        rule("a", "allow", "out", 100, proto=17),
        rule("b", "deny", "out", 50, proto=6, rport="80"),
        rule("c", "allow", "out", 10, proto=6),
    ])
    tr = Tracer()
    m = t.match(key_of(out_tcp(80)), "out", tr, explain=True)
    assert m.rule_id == "b"
    outcome = {c.rule.id: (c.outcome, c.why) for c in m.candidates}
    assert outcome["a"][0] == "no-match" and "protocol tcp is not udp" in outcome["a"][1]
    assert outcome["b"][0] == "wins"
    assert outcome["c"][0] == "shadowed" and "higher weight (50 > 10)" in outcome["c"][1]
    assert "rule b (weight 50) -> deny" in tr.render()
