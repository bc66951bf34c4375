"""Peek and commit of the per-frame policy checks: a peek (what trace runs) gives what
committing gives, and changes nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.policy_frames import key_of, tcp, udp
from vspan.policy.common import IN, OUT, Dir
from vspan.policy.conntrack import ConnTrack, Timeouts
from vspan.policy.extacl import ExtAclRule, ExtAclSessions, ExtAclTable, ExtAction
from vspan.policy.firewall import FwAction, PortFirewall, RuleSet
from vspan.policy.guards import StormClass, StormLimiter

VM, PEER = "10.0.0.5", "10.0.1.1"
FLAGS = ["S", "SA", "A", "PA", "F", "FA", "R", "RA", "", "SF", "U"]


def _table(ct: ConnTrack, now: float) -> dict[object, tuple[object, ...]]:
    return {k: c.fingerprint() for k, c in ct.entries().items() if c.expires > now}


segment = st.tuples(st.booleans(), st.sampled_from(FLAGS), st.integers(0, 3000),
                    st.integers(0, 3000), st.integers(0, 400), st.integers(0, 120))


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, min_size=1, max_size=25), st.booleans(), st.sampled_from(
    [FwAction.ALLOW, FwAction.DROP, FwAction.REJECT]))
def test_firewall_peek_predicts_commit(segs: list[tuple[bool, str, int, int, int, int]],
                                       strict: bool, default: FwAction) -> None:
    """Random TCP segments both ways through a port firewall: before every frame a peek
    gives the verdict, the connection state after and the effects that the commit then
    gives, and leaves the table and counters as they were."""
    pf = PortFirewall("vm", RuleSet((), default, strict), Timeouts(tcp_syn_sent=50.0))
    now = 0.0
    for outbound, flags, seq, ack, plen, dt in segs:
        now += dt
        if outbound:
            frame = tcp(VM, PEER, 40000, 80, flags, seq, ack, payload=b"x" * plen)
            d: Dir = OUT
        else:
            frame = tcp(PEER, VM, 80, 40000, flags, seq, ack, payload=b"x" * plen)
            d = IN
        key = key_of(frame)
        m = pf.match(key, d)
        before = _table(pf.conntrack, now)
        counters = dict(pf.conntrack.counters)
        hits = dict(pf.ruleset.counters.hits)
        peek = pf.process(key, frame, d, m.decision, now, commit=False)
        assert _table(pf.conntrack, now) == before
        assert pf.conntrack.counters == counters and pf.ruleset.counters.hits == hits
        got = pf.process(key, frame, d, m.decision, now)
        assert got[:6] == peek[:6]
        if peek.conn is None:
            assert got.conn is None
        else:
            assert got.conn is not None and got.conn[0] == peek.conn[0]
            after = peek.conn[1].fingerprint() if peek.conn[1] is not None else None
            real = got.conn[1].fingerprint() if got.conn[1] is not None else None
            assert after == real
        # the table after the frame is the table before plus the predicted change
        expected = dict(before)
        if peek.conn is not None:
            ck, conn = peek.conn
            if conn is None:
                expected.pop(ck, None)
            elif conn.expires > now:
                expected[ck] = conn.fingerprint()
        assert _table(pf.conntrack, now) == expected


def test_explain_lookup_does_not_reap_an_expired_connection() -> None:
    pf = PortFirewall("vm", RuleSet(), Timeouts(udp_first=5.0))
    frame = udp(VM, PEER, 5000, 53)
    key = key_of(frame)
    pf.process(key, frame, OUT, pf.match(key, OUT).decision, 0.0)
    assert len(pf.conntrack) == 1
    assert pf.conntrack.lookup(key, frame, OUT, 10.0) is None  # expired: not seen ...
    assert len(pf.conntrack) == 1 and pf.conntrack.counters["expired"] == 0  # ... not removed
    peek = pf.process(key, frame, OUT, pf.match(key, OUT).decision, 10.0, commit=False)
    assert peek.allowed and len(pf.conntrack) == 1 and pf.conntrack.counters["expired"] == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), min_size=1, max_size=30))
def test_ext_acl_session_peek_predicts_commit(steps: list[tuple[bool, int]]) -> None:
    rules = [ExtAclRule("x1", ExtAction.ALLOW, OUT, 100, stateful=True, idle_timeout=30.0),
             ExtAclRule("x2", ExtAction.DENY, IN, 10)]
    table, sess = ExtAclTable(rules), ExtAclSessions(max_sessions=1)
    now = 0.0
    for outbound, dt in steps:
        now += dt
        frame = udp(VM, PEER, 5000, 53) if outbound else udp(PEER, VM, 53, 5000)
        d: Dir = OUT if outbound else IN
        key = key_of(frame)
        m = table.match(key, d)
        before = sess.live(now)
        peek = sess.process(key, d, m, now, commit=False)
        assert sess.live(now) == before
        got = sess.process(key, d, m, now)
        assert got == peek
        if peek.session is not None:
            before[peek.session[0]] = peek.session[1]
        assert sess.live(now) == before


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 700), min_size=1, max_size=40))
def test_storm_peek_predicts_commit(gaps_ms: list[int]) -> None:
    limiter = StormLimiter({StormClass.BROADCAST: 5.0}, {StormClass.BROADCAST: 2.0})
    now = 0.0
    for gap in gaps_ms:
        now += gap / 1000
        bucket = limiter.buckets[StormClass.BROADCAST]
        state = (bucket.tokens, bucket.last, bucket.passed, bucket.dropped)
        peek = limiter.allow(StormClass.BROADCAST, now, commit=False)
        assert (bucket.tokens, bucket.last, bucket.passed, bucket.dropped) == state
        assert limiter.allow(StormClass.BROADCAST, now) == peek
