"""The flow cache forgets exactly what changed: MAC churn on one port, a MAC moving or
aging, a port's configuration or link — the other cached flows keep hitting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.pipeline.harness import Switch, make_switch
from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.datapath.flowkey import fast_key
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort

CONFIG = """
switch: {fdb_max_entries: 64}
ports:
  churn: {type: memory}
  a: {type: memory}
  b: {type: memory}
  c: {type: memory}
  d: {type: memory}
"""
MAC = {p: f"02:00:00:00:00:{i:02x}" for i, p in enumerate("abcd", start=1)}


def frame(src: str, dst: str, sport: int = 1000) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=sport, dport=53))


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    for p, mac in MAC.items():  # everyone learned
        s.send(p, frame(mac, "ff:ff:ff:ff:ff:ff"))
    for p in s.ports:
        s.got(p)
    yield s
    s.engine.close()


def steady(sw: Switch, rounds: int = 1) -> None:
    """a -> b and c -> d, 8 flows each."""
    for _ in range(rounds):
        sw.send("a", *(frame(MAC["a"], MAC["b"], 1000 + i) for i in range(8)))
        sw.send("c", *(frame(MAC["c"], MAC["d"], 1000 + i) for i in range(8)))


def test_mac_churn_on_one_port_leaves_the_others_cached(sw: Switch) -> None:
    cache = sw.engine.cache
    steady(sw)
    hits, misses = cache.hits, cache.misses
    for i in range(300):  # a VM sending from ever new source MACs (a hostile storm)
        sw.send("churn", frame(f"02:aa:00:00:{i >> 8:02x}:{i & 0xFF:02x}", MAC["a"]))
        steady(sw)
    assert cache.misses - misses == 300  # only the churning frames missed
    assert cache.hits - hits == 300 * 16  # every steady frame hit, all along
    assert len(sw.got("b")) == 300 * 8 + 8 and len(sw.got("d")) == 300 * 8 + 8


def test_learning_a_mac_forgets_only_the_floods_to_it(sw: Switch) -> None:
    cache = sw.engine.cache
    steady(sw)
    unknown = "02:00:00:00:00:99"
    sw.send("a", frame(MAC["a"], unknown))  # flooded: cached, depends on the miss
    sw.send("a", frame(MAC["a"], unknown))
    for p in sw.ports:
        sw.got(p)
    before = cache.invalidated
    sw.send("d", frame(unknown, MAC["a"]))  # the unknown MAC shows up on d
    assert cache.invalidated - before == 1  # the flood to it, nothing else
    sw.send("a", frame(MAC["a"], unknown))
    assert len(sw.got("d")) == 1 and sw.got("b") == [] and sw.got("c") == []
    hits = cache.hits
    steady(sw)
    assert cache.hits - hits == 16


def test_a_moving_mac_forgets_its_flows(sw: Switch) -> None:
    steady(sw)
    for p in sw.ports:
        sw.got(p)
    sw.send("d", frame(MAC["b"], MAC["c"]))  # b's MAC moves to d
    sw.got("c")
    sw.send("a", frame(MAC["a"], MAC["b"], 1000))  # cached a -> b must follow the move
    assert len(sw.got("d")) == 1 and sw.got("b") == []


def test_aging_forgets_the_flows_to_the_aged_mac(sw: Switch) -> None:
    steady(sw)
    sw.clock.now += 200
    steady(sw)  # a, c refreshed; b, d are destinations only: they age
    sw.clock.now += 200
    sw.engine.housekeeping(sw.clock.now)
    for p in sw.ports:
        sw.got(p)
    sw.send("a", frame(MAC["a"], MAC["b"], 1000))
    assert {p for p in sw.ports if sw.got(p)} == {"churn", "b", "c", "d"}  # flooded again


def test_a_port_change_forgets_that_ports_flows_only(sw: Switch) -> None:
    cache = sw.engine.cache
    steady(sw)
    n = len(cache.entries)
    for p in sw.ports:
        sw.got(p)
    cfg = CONFIG.replace("  d: {type: memory}", "  d: {type: memory, enabled: false}")
    sw.engine.reload(load_text(cfg))
    assert len(cache.entries) == n - 8  # c -> d forgotten, a -> b kept
    hits = cache.hits
    sw.send("a", *(frame(MAC["a"], MAC["b"], 1000 + i) for i in range(8)))
    assert cache.hits - hits == 8
    sw.got("b")
    sw.send("c", frame(MAC["c"], MAC["d"]))  # d's MACs were forgotten with it: flooded
    assert sw.got("d") == [] and len(sw.got("a")) == 1


def test_link_down_forgets_that_ports_flows_only(sw: Switch) -> None:
    cache = sw.engine.cache
    steady(sw)
    sw.ports["d"].set_link(False)
    sw.engine.housekeeping(sw.clock.now + 5)
    hits = cache.hits
    steady(sw)
    assert cache.hits - hits == 8  # a -> b still cached; c -> d decided again


def test_a_full_cache_evicts_an_eighth_not_everything() -> None:
    sw = make_switch(CONFIG.replace("switch: {fdb_max_entries: 64}",
                                    "switch: {fdb_max_entries: 64, flow_cache_size: 64}"))
    sw.send("b", frame(MAC["b"], "ff:ff:ff:ff:ff:ff"))
    sw.send("a", frame(MAC["a"], "ff:ff:ff:ff:ff:ff"))
    sw.send("a", *(frame(MAC["a"], MAC["b"], 2000 + i) for i in range(64)))
    cache = sw.engine.cache
    assert len(cache.entries) == 64
    sw.send("a", frame(MAC["a"], MAC["b"], 9999))
    assert len(cache.entries) == 64 - 8 + 1 and cache.evictions == 8
    stats = cache.stats()
    assert stats["bytes_per_entry"] > 0 and stats["bytes"] == stats["bytes_per_entry"] * 57
    a = sw.engine.state.by_name["a"]
    old = [frame(MAC["a"], MAC["b"], 2000 + i) for i in range(64)]
    stayed = [f for f in old if fast_key(f, a) in cache.entries]
    assert len(stayed) == 56  # an eighth (chosen at random) went, the rest stayed ...
    hits = cache.hits
    sw.send("a", *stayed)
    assert cache.hits - hits == 56  # ... and hits
    sw.engine.close()


def test_cache_memory_is_reported_in_show_and_metrics() -> None:
    from vspan.api.metrics import SwitchCollector
    from vspan.control.agent import Agent

    ports: dict[str, MemoryPort] = {}

    def factory(name: str, pc: PortConfig) -> Port:
        ports[name] = MemoryPort(name)
        return ports[name]

    agent = Agent(load_text(CONFIG), factory)
    agent.engine.open()
    try:
        eng = agent.engine
        eng.process(eng.state.by_name["b"], [Frame(frame(MAC["b"], "ff:ff:ff:ff:ff:ff"))])
        eng.process(eng.state.by_name["a"], [Frame(frame(MAC["a"], MAC["b"], 5000 + i))
                                             for i in range(20)])
        fc = agent.show("counters")["flow_cache"]
        assert fc["entries"] == 19 and fc["bytes_per_entry"] > 0
        assert fc["bytes"] == fc["entries"] * fc["bytes_per_entry"]
        metrics = {m.name: m for m in SwitchCollector(agent).collect()}
        assert metrics["vspan_flow_cache_bytes"].samples[0].value == fc["bytes"]
        assert metrics["vspan_flow_cache_bytes_per_entry"].samples[0].value > 0
    finally:
        agent.stop()
