"""``vspan observe`` pieces without a switch: reason explanations, frame summaries, event
lines, request parsing, rule texts, the observer's filters and bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from vspan.capture.events import human, summary, summary_text, tcp_flags
from vspan.capture.filter import compile_filter
from vspan.capture.observe import ObserveError, Observer, ObserveSpec, parse_kinds
from vspan.cli.main import main
from vspan.config.load import load_text
from vspan.control.observing import observe_spec, rule_text
from vspan.datapath.decision import Drop
from vspan.datapath.observed import Seen
from vspan.datapath.reasons import EXPLANATIONS, STAGES, DropReason, explain

SYN = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=10)
            / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"))


class _Names:
    def port(self, idx: int) -> str:
        return f"p{idx}"

    def session(self, idx: int) -> tuple[str, str]:
        return f"s{idx}", "mon"

    def rule_text(self, drop: Drop) -> str:
        return f"text of {drop.rule}"


def test_every_drop_reason_has_an_explanation_and_a_stage() -> None:
    for reason in DropReason:
        text = EXPLANATIONS.get(reason, "")
        assert text and "\n" not in text, reason
        assert STAGES.get(reason), reason
        assert explain(reason.value) == text
    with pytest.raises(ValueError):
        explain("no-such-reason")


def test_explain_reason_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-reason", "acl-deny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("acl-deny") and "[acl]" in out and "ACL" in out
    assert main(["explain-reason", "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["reason"] for r in rows} == {r.value for r in DropReason}
    assert main(["explain-reason", "nonsense"]) == 1
    assert "no drop reason 'nonsense'" in capsys.readouterr().err


def test_summary_of_a_tagged_tcp_syn() -> None:
    s = summary(SYN)
    assert s == {"len": len(SYN), "src_mac": "02:00:00:00:00:01", "dst_mac": "02:00:00:00:00:02",
                 "vlan": 10, "eth_type": "ipv4", "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2",
                 "proto": "tcp", "sport": 1234, "dport": 80, "tcp_flags": "S"}
    assert summary_text(s) == ("02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 10 "
                               f"10.0.0.1.1234 > 10.0.0.2.80 TCP [S] len {len(SYN)}")


def test_summary_of_ipv6_udp_and_of_garbage() -> None:
    f = bytes(Ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5, dport=53))
    s = summary(f)
    assert (s["src_ip"], s["dst_ip"], s["proto"], s["dport"]) == ("fd00::1", "fd00::2", "udp", 53)
    assert s["vlan"] is None and "tcp_flags" not in s
    assert summary(b"\x01\x02") == {"len": 2, "malformed": True}
    cut = summary(SYN[:30])  # cut inside the IP header: L2 is still told
    assert cut["malformed"] and cut["vlan"] == 10 and "src_ip" not in cut


def test_tcp_flag_letters() -> None:
    assert tcp_flags(0x12) == "SA" and tcp_flags(0x14) == "RA" and tcp_flags(0) == ""


def _seen(**kw: Any) -> Seen:
    s = Seen(1, SYN, 1_700_000_000_123_456_000, "cache")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_human_lines() -> None:
    obs = Observer(1, ObserveSpec(kinds=frozenset({"received", "forwarded", "mirrored",
                                                   "dropped"})), _Names(), now=10.0)
    drop = Drop(DropReason.ACL_DENY, 3, "a1", "port ACL entry a1 (in)")
    obs.observe(_seen(outputs=[(2, 2, 10), (4, 0, 0)], mirrors=[0], drops=[drop]), 10.0)
    evs = obs.take()
    assert [e["type"] for e in evs] == ["received", "forwarded", "mirrored", "dropped"]
    lines = [human(e) for e in evs]
    assert lines[0].startswith("22:13:20.123456 #1 received  p1 | 02:00:00:00:00:01 >")
    assert " p1 -> p2 (push 10), p4 | " in lines[1]
    assert " p1 copy to s0 -> mon | " in lines[2]
    assert " p1 at p3 [acl] acl-deny rule a1 (port ACL entry a1 (in)) | " in lines[3]
    assert evs[3]["rule_text"] == "text of a1" and evs[3]["direction"] == "out"
    assert human({"type": "suppressed", "sampled_out": 1, "rate_limited": 2,
                  "queue_full": 3}) == ("-- suppressed: 1 sampled out, 2 over the rate cap, "
                                        "3 not read in time --")


def test_filters_judge_ports_verdicts_reasons_and_frames() -> None:
    drop_in = Drop(DropReason.VLAN_NOT_ALLOWED, 1)
    drop_out = Drop(DropReason.ACL_DENY, 3, "a1")

    def kinds(spec: ObserveSpec, seen: Seen) -> list[str]:
        obs = Observer(1, spec, _Names(), now=10.0)
        obs.observe(seen, 10.0)
        return [e["type"] + ("/" + e["reason"] if "reason" in e else "") for e in obs.take()]

    both = _seen(outputs=[(2, 0, 0)], drops=[drop_in, drop_out])
    assert kinds(ObserveSpec(), both) == ["forwarded", "dropped/vlan-not-allowed",
                                         "dropped/acl-deny"]
    assert kinds(ObserveSpec(ports=frozenset({3})), both) == ["dropped/acl-deny"]
    assert kinds(ObserveSpec(ports=frozenset({2})), both) == ["forwarded"]
    assert kinds(ObserveSpec(ports=frozenset({9})), both) == []
    assert kinds(ObserveSpec(kinds=frozenset({"dropped"}), reasons=frozenset({"acl-deny"})),
                 both) == ["dropped/acl-deny"]
    assert kinds(ObserveSpec(filter=compile_filter("tcp port 80")), both) != []
    assert kinds(ObserveSpec(filter=compile_filter("udp")), both) == []


def test_spec_rejects_bad_requests() -> None:
    with pytest.raises(ObserveError, match="verdict"):
        ObserveSpec(kinds=frozenset({"maybe"}))
    with pytest.raises(ObserveError, match="no drop reason 'acl-dny'"):
        ObserveSpec(reasons=frozenset({"acl-dny"}))
    with pytest.raises(ObserveError, match="sample"):
        ObserveSpec(sample=0)
    with pytest.raises(ObserveError, match="max_rate"):
        ObserveSpec(max_rate=0)
    assert parse_kinds([], []) == frozenset({"forwarded", "mirrored", "dropped"})
    assert parse_kinds([], ["mtu"]) == frozenset({"dropped"})
    assert parse_kinds(["received,dropped"], []) == frozenset({"received", "dropped"})
    assert len(parse_kinds(["all"], [])) == 4


CONFIG = """
ports:
  a: {type: memory, description: db-vm, policy: {acls: [{id: a1, action: deny, direction: in,
      remote_ip: 10.0.0.0/8}, {action: allow, direction: out, remote_mac: "02:00:00:00:00:09"}]}}
  b: {type: memory}
firewall:
  default_action: drop
  sections:
    - name: web
      rules:
        - {id: "1001", sources: [any], destinations: [any], services: ["tcp/80"], action: allow}
        - {action: reject, services: ["tcp/23"]}
"""


def test_observe_spec_from_a_request() -> None:
    cfg = load_text(CONFIG)
    by_name = {"a": 1, "b": 2}
    spec = observe_spec(cfg, by_name, {"vms": ["db-vm"], "ports": "b", "verdicts": [],
                                       "reasons": ["acl-deny"], "filter": "tcp", "sample": 2,
                                       "max_rate": 50})
    assert spec.ports == frozenset({1, 2}) and spec.kinds == frozenset({"dropped"})
    assert spec.filter is not None and spec.sample == 2 and spec.max_rate == 50
    assert observe_spec(cfg, by_name, {}).ports is None
    for body, msg in (({"ports": ["zz"]}, "no port named 'zz'"),
                      ({"vms": ["nobody"]}, "no port or VM named 'nobody'"),
                      ({"filter": "tcp port"}, "filter:"),
                      ({"sample": "x"}, "sample"),
                      ({"reasons": ["bogus"]}, "no drop reason")):
        with pytest.raises(ObserveError, match=msg):
            observe_spec(cfg, by_name, body)


def test_rule_text_names_the_rule_as_configured() -> None:
    cfg = load_text(CONFIG)
    assert rule_text(cfg, DropReason.ACL_DENY, "a", "a1") == (
        "{id: a1, action: deny, direction: in, remote_ip: 10.0.0.0/8}")
    assert rule_text(cfg, DropReason.ACL_DENY, "a", "acl1") == (  # an entry without an id
        '{action: allow, direction: out, remote_mac: "02:00:00:00:00:09"}')
    assert rule_text(cfg, DropReason.FIREWALL_DENY, "a", "default") == "default rule: drop"
    assert rule_text(cfg, DropReason.FIREWALL_REJECT, "b", "web/2") == (
        "section web: {action: reject, services: [{protocol: tcp, ports: [23]}]}")
    assert rule_text(cfg, DropReason.FIREWALL_DENY, "b", "1001") == (
        "section web: {id: 1001, action: allow, sources: [any], destinations: [any], "
        "services: [{protocol: tcp, ports: [80]}]}")
    assert rule_text(cfg, DropReason.ACL_DENY, "a", "gone") == ""
    assert rule_text(cfg, DropReason.ACL_DENY, "b", "a1") == ""  # b has no such entry
    assert rule_text(cfg, DropReason.MTU, "a", "") == ""


def test_rate_cap_and_sampling_with_a_clock() -> None:
    now = 10.0
    obs = Observer(1, ObserveSpec(kinds=frozenset({"received"}), max_rate=10, sample=2),
                   _Names(), now=now)
    for _ in range(40):  # 20 sampled out, 20 offered to the cap: a burst of 10 passes
        obs.observe(_seen(), now)
    c = obs.counters()
    assert (c["matched"], c["sampled_out"], c["emitted"], c["rate_limited"]) == (40, 20, 10, 10)
    now += 0.5  # half a second: 5 tokens
    for _ in range(20):
        obs.observe(_seen(), now)
    assert obs.counters()["emitted"] == 15
    frames = [e["frame"] for e in obs.take()]
    assert frames == sorted(frames) and len(frames) == 15 and frames[0] == 1
    report = obs.suppressed_event()
    assert report is not None
    assert (report["sampled_out"], report["rate_limited"]) == (30, 15)
    assert report["total"]["emitted"] == 15
