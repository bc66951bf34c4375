"""Properties: well-behaved TCP is never invalid (strict, across sequence wrap), and no
policy evaluator raises on damaged frames."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.policy_frames import echo, icmp_error_about, ra, tcp, udp
from vspan.datapath.flowkey import extract
from vspan.packet.build import tcp_frame
from vspan.policy.acl import AclEntry, PortAcl
from vspan.policy.common import DIRECTIONS, Dir, parse_ip_spec, parse_mac
from vspan.policy.conntrack import ConnTrack, CtClass
from vspan.policy.extacl import ExtAclRule, ExtAclSessions, ExtAclTable, ExtAction
from vspan.policy.firewall import FwAction, FwRule, FwSection, PortFirewall, RuleSet
from vspan.policy.guards import PortGuards
from vspan.policy.reject import reject_reply
from vspan.policy.tcp import TcpStateName

C_MAC, S_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"
C_IP, S_IP = "10.1.1.1", "10.0.0.5"
M = 0xFFFFFFFF


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, M), st.integers(0, M),
    st.lists(st.tuples(st.booleans(), st.integers(0, 1460), st.booleans()), min_size=1,
             max_size=40),
    st.integers(1, 65535), st.integers(1, 65535),
)
def test_well_behaved_tcp_is_never_invalid_in_strict_mode(
    cisn: int, sisn: int, steps: list[tuple[bool, int, bool]], cwin: int, swin: int
) -> None:
    """A lossless conversation with retransmissions, any ISNs (wrap included)."""
    ct = ConnTrack()
    now = 0.0

    def send(from_client: bool, flags: str, seq: int, ack: int, payload: bytes,
             win: int) -> CtClass:
        if from_client:
            f = tcp_frame(C_MAC, S_MAC, C_IP, S_IP, 40000, 80, flags, seq & M, ack & M,
                          payload, window=win)
        else:
            f = tcp_frame(S_MAC, C_MAC, S_IP, C_IP, 80, 40000, flags, seq & M, ack & M,
                          payload, window=win)
        k = extract(f, 1)
        assert k is not None
        d: Dir = "in" if from_client else "out"
        r = ct.classify(k, f, d, now)
        if r.cls is CtClass.NEW:
            r = ct.create(k, f, d, now, "r", strict=True)
        assert r.cls is not CtClass.INVALID, (flags, r.reason)
        return r.cls

    c_nxt, s_nxt = cisn + 1, sisn + 1
    send(True, "S", cisn, 0, b"", cwin)
    send(False, "SA", sisn, c_nxt, b"", swin)
    send(True, "A", c_nxt, s_nxt, b"", cwin)
    last: dict[bool, tuple[int, bytes]] = {}
    for from_client, size, retransmit in steps:
        peer_win = swin if from_client else cwin
        n = min(size, peer_win)
        if retransmit and from_client in last:
            seq, data = last[from_client]
            send(from_client, "PA", seq, s_nxt if from_client else c_nxt, data,
                 cwin if from_client else swin)
            continue
        data = b"x" * n
        if from_client:
            last[True] = (c_nxt, data)
            send(True, "PA", c_nxt, s_nxt, data, cwin)
            c_nxt += n
        else:
            last[False] = (s_nxt, data)
            send(False, "PA", s_nxt, c_nxt, data, swin)
            s_nxt += n
        # the receiver acknowledges everything (and its window is free again)
        if from_client:
            send(False, "A", s_nxt, c_nxt, b"", swin)
        else:
            send(True, "A", c_nxt, s_nxt, b"", cwin)
    send(True, "FA", c_nxt, s_nxt, b"", cwin)
    send(False, "FA", s_nxt, c_nxt + 1, b"", swin)
    send(True, "A", c_nxt + 1, s_nxt + 1, b"", cwin)
    (conn,) = list(ct)
    assert conn.state == TcpStateName.TIME_WAIT
    assert conn.tcp is not None and conn.tcp.oow == 0


_SEEDS = [
    tcp(C_IP, S_IP, 1, 80, "S", 5, 0, 100, b"abc", 7),
    tcp("2001:db8::1", "2001:db8::5", 1, 80, "SA", 5, 9),
    udp(C_IP, S_IP, 67, 68),
    echo(C_IP, S_IP, 3),
    echo("2001:db8::1", "2001:db8::5", 3, reply=True),
    icmp_error_about("10.0.0.1", udp(S_IP, C_IP, 1, 2)),
    icmp_error_about("2001:db8::1", udp("2001:db8::5", "2001:db8::1", 1, 2)),
    ra(),
]


def _damage(frame: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    b = bytearray(frame)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b[: max(14, len(b) - cut)])


_ACL = PortAcl([
    AclEntry.ip("a", "deny", ("in", "out"), remote=parse_ip_spec("10.0.0.0/8")),
    AclEntry.mac("m", "meter", ("in",), remote=parse_mac("02:00:00:00:00:02")),
])
_EXT = ExtAclTable([ExtAclRule("x", ExtAction.ALLOW, "out", 5, protocol=6, stateful=True)])
_RULES = RuleSet([FwSection("s", (FwRule("r1", "s", FwAction.REJECT),))])
_GUARDS = PortGuards.build(False, [parse_mac(S_MAC)], True, True)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_SEEDS),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(0, 60), st.booleans())
def test_evaluators_never_raise_on_damaged_frames(seed: bytes, edits: list[tuple[int, int]],
                                                  cut: int, strict: bool) -> None:
    frame = _damage(seed, edits, cut)
    key = extract(frame, 1)
    if key is None:
        return
    pf = PortFirewall("p", _RULES)
    sessions = ExtAclSessions()
    for d in DIRECTIONS:
        _ACL.evaluate(key, d, explain=True)
        m = _EXT.match(key, d, explain=True)
        sessions.process(key, d, m, 0.0)
        fm = pf.match(key, d, explain=True)
        if fm.ip:
            peek = pf.process(key, frame, d, fm.decision, 0.0, commit=False)
            assert pf.process(key, frame, d, fm.decision, 0.0)[:5] == peek[:5]
        ct = pf.conntrack
        r = ct.classify(key, frame, d, 1.0)
        if r.cls is CtClass.NEW:
            ct.create(key, frame, d, 1.0, "r", strict)
        ct.lookup(key, frame, d, 1.0)
    _GUARDS.check(key)
    reply = reject_reply(key, frame)
    if reply is not None:
        assert extract(reply, 0) is not None
