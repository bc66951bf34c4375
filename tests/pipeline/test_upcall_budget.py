"""The slow path's per-port budget: a port sending misses faster than
``switch.upcall_budget`` has its excess misses dropped with the reason
``upcall-budget``; the other ports, and every frame of a cached flow, are untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from tests.pipeline.harness import Switch, make_switch
from vspan.config.load import load_text
from vspan.datapath import native
from vspan.datapath.decision import Drop
from vspan.datapath.reasons import DropReason, explain
from vspan.datapath.upcallbudget import UpcallBudget

MAC = {p: f"02:00:00:00:00:{i:02x}" for i, p in enumerate("abcd", start=1)}
RATE = 100  # misses per second and port; the bucket: a second's worth, at least 64
BURST = 100


def config(fastpath: str, rate: int = RATE) -> str:
    return f"""
switch: {{upcall_budget: {rate}, fastpath: {fastpath}}}
ports:
  churn: {{type: memory}}
  a: {{type: memory}}
  b: {{type: memory}}
  c: {{type: memory}}
  d: {{type: memory}}
"""


def frame(src: str, dst: str, sport: int = 1000) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=sport, dport=53))


def churn(i: int) -> bytes:
    return frame(f"02:aa:00:00:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}", MAC["a"])


@pytest.fixture(params=["python", "native"])
def sw(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Switch]:
    if request.param == "native" and not native.available():
        pytest.skip("the C extension vspan.datapath._native was not built")
    monkeypatch.delenv("VSPAN_FASTPATH", raising=False)
    s = make_switch(config(request.param))
    assert (s.engine.fastpath.native is not None) == (request.param == "native")
    for p, mac in MAC.items():  # everyone learned
        s.send(p, frame(mac, "ff:ff:ff:ff:ff:ff"))
    for p in s.ports:
        s.got(p)
    yield s
    s.engine.close()


def budget_drops(sw: Switch, port: str) -> int:
    idx = sw.engine.state.by_name[port]
    return sum(n for (p, r, _), n in sw.engine.state.drops.by_key.items()
               if p == idx and r == DropReason.UPCALL_BUDGET.value)


def steady(sw: Switch) -> None:
    """a -> b and c -> d, 8 flows each; every frame must arrive."""
    sw.send("a", *(frame(MAC["a"], MAC["b"], 1000 + i) for i in range(8)))
    sw.send("c", *(frame(MAC["c"], MAC["d"], 1000 + i) for i in range(8)))
    assert len(sw.got("b")) == 8
    assert len(sw.got("d")) == 8


def test_churning_port_excess_misses_dropped_with_the_reason(sw: Switch) -> None:
    steady(sw)  # cached now
    upcalls = sw.engine.upcall.upcalls
    for k in range(10):  # 640 new source MACs at one instant: only the bucket's worth pass
        sw.send("churn", *(churn(k * 64 + i) for i in range(64)))
        steady(sw)
    assert budget_drops(sw, "churn") == 640 - BURST
    assert sw.engine.upcall.upcalls - upcalls == BURST  # the dropped ones never ran the pipeline
    assert len(sw.got("a")) == BURST
    # the others never hit the budget, and kept every frame
    for p in "abcd":
        assert budget_drops(sw, p) == 0
    # time refills the bucket: 505 ms at 100/s is 50 more misses
    sw.clock.now += 0.505
    sw.send("churn", *(churn(5000 + i) for i in range(64)))
    assert len(sw.got("a")) == 50
    assert budget_drops(sw, "churn") == 640 - BURST + 14


def drops_by_reason(sw: Switch, port: str) -> dict[str, int]:
    c = sw.engine.state.ports[sw.engine.state.by_name[port]].counters
    return dict(c.rx_dropped)


def test_malformed_frames_over_budget_keep_their_reason(sw: Switch) -> None:
    """A frame that does not parse, arriving with the bucket empty, is counted as
    ``malformed`` (what is wrong with it), not ``upcall-budget``; in both replays."""
    sw.send("churn", *(churn(i) for i in range(BURST + 10)))  # empties the bucket
    sw.got("a")
    assert budget_drops(sw, "churn") == 10
    cut_ip = frame("02:00:00:00:00:ee", MAC["a"])[:24]  # an IPv4 header cut short
    cut_tag = bytes(Ether(src="02:00:00:00:00:ee", dst=MAC["a"], type=0x8100))[:16]
    bad = [b"\x02" * 10, cut_ip, cut_tag]  # and a runt
    sw.send("churn", *(bad * 20))
    sw.got("a")
    seen = drops_by_reason(sw, "churn")
    assert seen.get("malformed") == 60
    assert seen.get("upcall-budget") == 10 and budget_drops(sw, "churn") == 10
    assert sw.engine.upcall.budget_drops == 10
    c = sw.engine.state.ports[sw.engine.state.by_name["churn"]].counters
    assert c.rx_frames == c.forwarded + sum(c.rx_dropped.values()) + c.consumed
    # a well-formed miss is still the budget's
    sw.send("churn", churn(9999))
    assert budget_drops(sw, "churn") == 11


class Tap:
    """A capture stand-in: the reasons of the drops it is shown."""

    def __init__(self) -> None:
        self.id = 1
        self.members: dict[tuple[int, str], str] = {}
        self.reasons: list[str] = []

    @property
    def full(self) -> bool:
        return False

    def rx(self, idx: int, data: bytes, frame_drops: list[Drop], pid: int = 0) -> None:
        pass

    def tx(self, idx: int, data: bytes, pid: int = 0) -> None:
        pass

    def member(self, idx: int, member: str, inbound: bool, data: bytes, pid: int) -> None:
        pass

    def dropped(self, idx: int, data: bytes, drop: Drop, in_port: int) -> None:
        self.reasons.append(drop.reason.value)

    def annotate(self, text: str) -> None:
        pass

    def stop_reason(self, now: float) -> str:
        return ""

    def close(self) -> None:
        pass

    def summary(self) -> dict[str, object]:
        return {}


def test_a_capture_sees_the_malformed_reason_over_budget(sw: Switch) -> None:
    sw.send("churn", *(churn(i) for i in range(BURST)))  # empties the bucket
    tap = Tap()
    sw.engine.fastpath.captures.append(tap)
    sw.send("churn", b"\x02" * 10, churn(5000))
    assert tap.reasons == ["malformed", "upcall-budget"]
    assert drops_by_reason(sw, "churn") == {"malformed": 1, "upcall-budget": 1}


def test_cached_flows_are_never_budgeted(sw: Switch) -> None:
    # the churn port's own known flow is cached (its MAC learned by the first frame, the
    # flow cached by the second): thousands of its frames pass though its bucket is empty
    src = "02:00:00:00:00:ee"
    sw.send("churn", frame(src, MAC["a"]), frame(src, MAC["a"]))
    assert len(sw.got("a")) == 2
    sw.send("churn", *(churn(i) for i in range(200)))  # empties the bucket
    sw.got("a")
    dropped = budget_drops(sw, "churn")
    assert dropped > 0
    assert not sw.engine.upcall.budget.admit(sw.engine.state.by_name["churn"], sw.clock.now)
    for _ in range(50):
        sw.send("churn", *(frame(src, MAC["a"]) for _ in range(64)))
    assert len(sw.got("a")) == 50 * 64
    assert budget_drops(sw, "churn") == dropped


def test_counters_view_and_explanation(sw: Switch) -> None:
    from vspan.control.views import counters_view
    sw.send("churn", *(churn(i) for i in range(200)))
    view = counters_view(sw.engine)
    assert view["upcall_budget"] == {"rate": RATE, "dropped": 200 - BURST}
    assert {"port": "churn", "reason": "upcall-budget", "rule": "", "frames": 200 - BURST} \
        in view["drops"]
    assert view["ports"]["churn"]["dropped"] == 200 - BURST
    c = sw.engine.state.ports[sw.engine.state.by_name["churn"]].counters
    assert c.rx_dropped["upcall-budget"] == 200 - BURST  # each frame's fate accounted
    assert c.rx_frames == c.forwarded + sum(c.rx_dropped.values()) + c.consumed
    assert "budget" in explain("upcall-budget")


def test_budget_zero_is_unlimited_and_reload_applies() -> None:
    s = make_switch(config("python", rate=0))
    try:
        s.send("churn", *(churn(i) for i in range(500)))
        assert budget_drops(s, "churn") == 0
        s.engine.reload(load_text(config("python", rate=RATE)))
        assert s.engine.upcall.budget.rate == RATE
        s.send("churn", *(churn(1000 + i) for i in range(500)))
        assert budget_drops(s, "churn") == 500 - BURST
    finally:
        s.engine.close()


def test_bucket_refill_and_cap() -> None:
    b = UpcallBudget(1000)
    assert b.burst == 1000
    assert sum(b.admit(1, 0.0) for _ in range(3000)) == 1000
    assert not b.admit(1, 0.0)
    assert sum(b.admit(1, 0.0105) for _ in range(300)) == 10  # 10.5 ms: 10 tokens
    assert sum(b.admit(2, 0.0105) for _ in range(3000)) == 1000  # another port: its own
    assert sum(b.admit(1, 100.0) for _ in range(3000)) == 1000  # never more than the bucket
    assert UpcallBudget(10).burst == 64  # at least one batch
    assert all(UpcallBudget(0).admit(1, 0.0) for _ in range(10_000))


def test_default_budget_takes_a_burst_of_new_tcp_connections() -> None:
    """A benign port opening 1000 TCP connections at one instant (SYNs to 1000 source
    ports, the server's SYN-ACKs back, then each side's ACK) never meets the default."""
    s = make_switch(config("python").replace(f"upcall_budget: {RATE}, ", ""))
    try:
        assert s.engine.upcall.budget.rate == 2000
        s.send("a", frame(MAC["a"], "ff:ff:ff:ff:ff:ff"))
        s.send("b", frame(MAC["b"], "ff:ff:ff:ff:ff:ff"))
        for p in "ab":
            s.got(p)
        syn = [bytes(Ether(src=MAC["a"], dst=MAC["b"]) / IP(src="10.0.0.1", dst="10.0.0.2")
                     / TCP(sport=20000 + i, dport=80, flags="S")) for i in range(1000)]
        synack = [bytes(Ether(src=MAC["b"], dst=MAC["a"]) / IP(src="10.0.0.2", dst="10.0.0.1")
                        / TCP(sport=80, dport=20000 + i, flags="SA")) for i in range(1000)]
        ack = [bytes(Ether(src=MAC["a"], dst=MAC["b"]) / IP(src="10.0.0.1", dst="10.0.0.2")
                     / TCP(sport=20000 + i, dport=80, flags="A")) for i in range(1000)]
        for k in range(0, 1000, 64):
            s.send("a", *syn[k:k + 64])
        for k in range(0, 1000, 64):
            s.send("b", *synack[k:k + 64])
        for k in range(0, 1000, 64):
            s.send("a", *ack[k:k + 64])
        assert len(s.got("b")) == 2000
        assert len(s.got("a")) == 1000
        assert s.engine.upcall.budget_drops == 0
    finally:
        s.engine.close()
