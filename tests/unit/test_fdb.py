"""The MAC table: what ``check`` predicts is what ``learn`` does, limits included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vspan.datapath.fdb import Fdb, LearnResult

MACS = [bytes((2, 0, 0, 0, 0, i)) for i in range(6)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from(MACS),
                          st.sampled_from([1, 2, 3]), st.sampled_from([0, 1, 2])),
                min_size=1, max_size=40),
       st.integers(2, 8))
def test_check_predicts_learn(ops: list[tuple[int, bytes, int, int]], table: int) -> None:
    fdb = Fdb(max_entries=table)
    for i, (vlan, mac, port, limit) in enumerate(ops):
        predicted = fdb.check(vlan, mac, port, limit)
        before = {k: e.port for k, e in fdb.entries.items()}
        got = fdb.learn(vlan, mac, port, float(i), limit)
        assert got is predicted
        after = {k: e.port for k, e in fdb.entries.items()}
        if got in (LearnResult.NEW, LearnResult.MOVED):
            assert after == before | {(vlan, mac): port}
        else:
            assert after == before
        assert all(fdb.per_port.get(p, 0) == sum(1 for q in after.values() if q == p)
                   for p in (1, 2, 3))


def test_move_onto_a_port_at_its_limit_is_refused() -> None:
    fdb = Fdb()
    assert fdb.learn(1, MACS[0], 1, 0.0) is LearnResult.NEW
    assert fdb.learn(1, MACS[1], 2, 0.0, port_limit=1) is LearnResult.NEW
    assert fdb.check(1, MACS[0], 2, 1) is LearnResult.PORT_LIMIT
    assert fdb.learn(1, MACS[0], 2, 1.0, port_limit=1) is LearnResult.PORT_LIMIT
    assert fdb.lookup(1, MACS[0]) is not None and fdb.lookup(1, MACS[0]).port == 1  # type: ignore[union-attr]


def test_aging_and_flush_say_what_they_removed() -> None:
    fdb = Fdb(aging_seconds=10)
    fdb.learn(1, MACS[0], 1, 0.0)
    fdb.learn(1, MACS[1], 2, 5.0)
    fdb.learn(2, MACS[2], 2, 5.0)
    assert fdb.age(12.0) == [(1, MACS[0])]
    assert sorted(fdb.flush_port(2)) == [(1, MACS[1]), (2, MACS[2])]
    assert len(fdb) == 0 and fdb.per_port[2] == 0
