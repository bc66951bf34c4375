"""Path assembly of a trace across hosts, and the overlay port's send/receive plans.

The overlay parts come from real :class:`VxlanPort` objects (their plans need no
socket); each host's pipeline part is the answer an agent gives (``POST /trace``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vspan.api.access import Guard
from vspan.api.rest import create_app
from vspan.config.access import Role
from vspan.config.dvs import DvsConfig
from vspan.config.load import parse_config, parse_model, read_yaml
from vspan.config.model import PortConfig
from vspan.control.agent import Agent
from vspan.control.audit import AuditLog
from vspan.control.dvs.crosstrace import CrossTraceError, render, trace_across, vm_end
from vspan.control.dvs.document import LiveHost
from vspan.control.tokens import SqliteTokenStore
from vspan.packet import build
from vspan.ports.memory import MemoryPort
from vspan.ports.vxlan import VxlanPort

DVS = """\
switch: {name: lab, mtu: 1600}
hosts: {h1: {}, h2: {}, h3: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
ports:
  web1: {host: h1, interface: web1, vm: vm1, mac: '02:00:00:00:01:01', port_group: web,
         policy: {addresses: [10.0.0.11]}}
  web2: {host: h2, interface: web2, vm: vm2, mac: '02:00:00:00:02:01', port_group: web,
         policy: {addresses: [10.0.0.21]}}
  snf: {host: h2, interface: snf}
mirrors:
  watch: {sources: [web1], destinations: [snf], overlay_vlan: 4000}
"""
H1, H2, H3 = "198.18.1.2", "198.18.2.2", "198.18.3.2"
LIVE = {"h1": LiveHost("h1", H1, socket="/run/h1.sock"),
        "h2": LiveHost("h2", H2, socket="/run/h2.sock")}


def dvs() -> DvsConfig:
    return parse_model(DvsConfig, read_yaml(DVS, "dvs.yaml"), "dvs.yaml")


def overlay(local: str, flood: list[str], mtu: int = 1600) -> VxlanPort:
    cfg = PortConfig.model_validate({"type": "vxlan", "vxlan": {
        "local_ip": local, "vnis": {10: 10010, 4000: 14000}, "flood": {10: flood},
        "peers": [ip for ip in (H1, H2, H3) if ip != local], "underlay_mtu": mtu,
        "mirror_vlans": [4000]}})
    assert cfg.vxlan is not None
    return VxlanPort("overlay", cfg.vxlan)


def frame(size: int = 0) -> bytes:
    return build.udp_frame("02:00:00:00:01:01", "02:00:00:00:02:01", "10.0.0.11",
                           "10.0.0.21", 4000, 5555, b"x" * size, pad=True)


def tagged(data: bytes, vid: int = 10) -> bytes:
    return data[:12] + bytes((0x81, 0x00, vid >> 8, vid & 0xFF)) + data[12:]


class Hosts:
    """Answers as the agents give them: h1 sends web1's frame to the overlay, h2 takes
    what its overlay port receives and delivers it to web2 (or its firewall drops it)."""

    def __init__(self, h1: VxlanPort, h2: VxlanPort, drop_at_h2: bool = False) -> None:
        self.h1, self.h2, self.drop = h1, h2, drop_at_h2
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, host: str, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((host, body))
        data = bytes.fromhex(body["frame"])
        if host == "h1":
            out = tagged(data)
            return {"port": "web1", "text": "output     port overlay",
                    "decision": {"outputs": [{"port": "overlay", "vlan_op": "push", "vid": 10,
                                              "mirrors": []}],
                                 "ingress_mirrors": [{"session": "watch.tx",
                                                      "point": "ingress",
                                                      "destinations": []}],
                                 "drops": []},
                    "outputs": [{"port": "overlay", "frame": out.hex()}],
                    "overlay": [{"port": "overlay"} | self.h1.plan_tx(out).as_dict()]}
        plan = self.h2.plan_rx(body["from_vtep"], data)
        answer: dict[str, Any] = {"port": "overlay", "arrival": plan.as_dict(), "overlay": [],
                                  "text": "output     port web2"}
        if plan.reason:
            return answer | {"decision": None}
        delivered = plan.frame[:12] + plan.frame[16:]
        if self.drop:
            return answer | {"decision": {"outputs": [], "ingress_mirrors": [], "drops": [
                {"reason": "firewall-deny", "port": "web2", "rule": "no-udp", "detail": ""}]},
                "outputs": []}
        return answer | {"decision": {"outputs": [{"port": "web2", "vlan_op": "pop", "vid": 0,
                                                   "mirrors": []}],
                                      "ingress_mirrors": [], "drops": []},
                         "outputs": [{"port": "web2", "frame": delivered.hex()}]}


def test_vm_end_takes_mac_addresses_and_vlan_from_the_port_and_its_group() -> None:
    end = vm_end(dvs(), "vm1")
    assert (end.port, end.host, end.mac, end.ips) == ("web1", "h1", "02:00:00:00:01:01",
                                                      ("10.0.0.11",))
    assert end.vlan_text() == "access VLAN 10"
    assert vm_end(dvs(), "snf").vm == "snf"  # a port name works too
    with pytest.raises(CrossTraceError, match="no VM or port named 'nope'"):
        vm_end(dvs(), "nope")


def test_one_path_source_overlay_destination() -> None:
    h1, h2 = overlay(H1, [H2, H3]), overlay(H2, [H1])
    h1.table.learn(10, bytes.fromhex("020000000201"), H2, h1.clock())
    hosts = Hosts(h1, h2)
    data = frame()
    path = trace_across(dvs(), LIVE, "web1", data, hosts)
    assert [(p["host"], p["role"], p["in_port"]) for p in path["hosts"]] == [
        ("h1", "source", "web1"), ("h2", "destination", "overlay")]
    # h2 was asked with the VXLAN payload h1's overlay port would send, from h1's VTEP
    host, body = hosts.asked[1]
    assert (host, body["port"], body["from_vtep"]) == ("h2", "overlay", H1)
    assert bytes.fromhex(body["frame"])[8:] == data  # the VXLAN header, then the frame
    hop, = path["overlay"]
    assert (hop["from_host"], hop["to_host"], hop["outer_src"], hop["outer_dst"]) == (
        "h1", "h2", H1, H2)
    assert (hop["vni"], hop["vlan"], hop["via"], hop["udp_dport"]) == (10010, 10, "learned",
                                                                       4789)
    assert hop["outer_ip_bytes"] == 20 + 8 + 8 + len(data) and hop["fits"]
    assert path["hosts"][1]["arrival"]["vlan"] == 10
    delivered, = path["delivered"]
    assert (delivered["host"], delivered["port"], delivered["vm"]) == ("h2", "web2", "vm2")
    assert bytes.fromhex(delivered["frame"]) == data
    assert path["drops"] == [] and path["notes"] == []
    copy, = path["copies"]
    assert (copy["host"], copy["session"], copy["part"], copy["to"]) == (
        "h1", "watch", "watch.tx", ["snf (h2)"])
    assert "mirror VLAN 4000" in copy["via"]
    assert path["verdict"] == "delivered to VM vm2 (port web2, host h2, VLAN pop)"
    text = render(path, "trace: title")
    assert "host h2 (destination), into port overlay from VTEP 198.18.1.2 (VNI 10010 -> " \
           "VLAN 10):" in text
    assert f"{H1}:{hop['udp_sport']} -> {H2}:4789 (host h2; VTEP learned)" in text
    assert text.endswith("verdict: delivered to VM vm2 (port web2, host h2, VLAN pop)")
    # the plans changed nothing on either overlay
    assert len(h1.table) == 1 and len(h2.table) == 0
    assert h1.counters.tx_frames == h2.counters.rx_frames == 0


def test_a_drop_on_the_destination_host_names_host_stage_reason_rule() -> None:
    h1, h2 = overlay(H1, [H2]), overlay(H2, [H1])
    path = trace_across(dvs(), LIVE, "web1", frame(), Hosts(h1, h2, drop_at_h2=True))
    assert path["delivered"] == []
    assert path["drops"] == [{"host": "h2", "stage": "firewall", "reason": "firewall-deny",
                              "rule": "no-udp", "port": "web2", "detail": ""}]
    assert path["overlay"][0]["via"] == "flood"  # MAC not learned: the flood list
    assert path["verdict"] == ("dropped at host h2, stage firewall: firewall-deny, rule "
                               "no-udp (port web2)")


def test_too_big_for_the_underlay_is_dropped_at_the_overlay_and_not_sent_on() -> None:
    h1, h2 = overlay(H1, [H2], mtu=1000), overlay(H2, [H1], mtu=1000)
    hosts = Hosts(h1, h2)
    path = trace_across(dvs(), LIVE, "web1", frame(1000), hosts)
    assert [h for h, _ in hosts.asked] == ["h1"]
    hop, = path["overlay"]
    assert not hop["fits"] and hop["reason"] == "mtu"
    drop, = path["drops"]
    assert (drop["host"], drop["stage"], drop["reason"]) == ("h1", "overlay", "mtu")
    assert "> underlay MTU 1000" in drop["detail"]


def test_receiver_refusing_the_sender_is_an_overlay_drop_there() -> None:
    h1 = overlay(H1, [H2])
    h2 = overlay(H2, [H3])  # h2 does not accept h1's VTEP
    h2_cfg = h2.config.model_copy(update={"peers": ()})
    h2 = VxlanPort("overlay", h2_cfg)
    path = trace_across(dvs(), LIVE, "web1", frame(), Hosts(h1, h2))
    drop, = path["drops"]
    assert (drop["host"], drop["stage"], drop["reason"]) == ("h2", "overlay", "unknown-vtep")


def test_a_vtep_without_a_running_agent_is_a_note() -> None:
    h1, h2 = overlay(H1, [H2, H3]), overlay(H2, [H1])
    path = trace_across(dvs(), LIVE, "web1", frame(), Hosts(h1, h2))
    assert [hop["to_host"] for hop in path["overlay"]] == ["h2", None]
    assert path["notes"] == [f"VTEP {H3}: no running agent registered it, the path is not "
                             "traced beyond the overlay"]
    assert path["drops"] == []


def test_source_host_without_agent() -> None:
    with pytest.raises(CrossTraceError, match="host h1's agent is not running"):
        trace_across(dvs(), {"h2": LIVE["h2"]}, "web1", frame(), Hosts(overlay(H1, []),
                                                                       overlay(H2, [])))


def test_overlay_plans_use_the_ports_own_checks() -> None:
    port = overlay(H1, [H2])
    assert port.plan_tx(tagged(frame(), 30)).reason == "unmapped-vlan"
    assert port.plan_tx(tagged(tagged(frame(), 5))).reason == "inner-vlan-tag"
    assert port.plan_tx(b"\x00" * 10).reason == "malformed"
    plan = port.plan_tx(tagged(frame()))
    payload = plan.packets[0]
    assert port.plan_rx("192.0.2.1", payload).reason == "unknown-vtep"
    assert port.plan_rx(H2, payload[:10]).reason == "truncated"
    assert port.plan_rx(H2, b"\x00" + payload[1:]).reason == "bad-flags"
    assert port.plan_rx(H2, payload[:4] + b"\x00\x00\x07" + payload[7:]).reason == \
        "unknown-vni"
    rx = port.plan_rx(H2, payload)
    assert (rx.reason, rx.vni, rx.vlan, rx.learns) == ("", 10010, 10, True)
    assert rx.frame == tagged(frame())
    assert len(port.table) == 0 and port.rx_drops == {} and port.tx_drops == {}


def test_trace_api_refuses_vxlan_payloads_where_there_is_no_overlay(tmp_path: Path) -> None:
    cfg = parse_config({"switch": {"state_dir": str(tmp_path)},
                        "ports": {"a": {"type": "memory"}, "b": {"type": "memory"}}}, "t")
    agent = Agent(cfg, lambda name, _cfg: MemoryPort(name))
    tokens = SqliteTokenStore(str(tmp_path / "auth.db"))
    guard = Guard(tokens, AuditLog(str(tmp_path / "audit.jsonl")),
                  lambda: agent.config.switch.roles, 0)
    viewer = tokens.create("v", Role.VIEWER)  # a trace changes nothing: viewers may
    try:
        with TestClient(create_app(agent, guard),
                        headers={"Authorization": f"Bearer {viewer}"}) as c:
            ok = c.post("/trace", json={"port": "a", "frame": frame().hex()})
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["overlay"] == [] and "arrival" not in body
            assert sorted(o["port"] for o in body["outputs"]) == ["b"]  # flooded
            bad = c.post("/trace", json={"port": "a", "frame": frame().hex(),
                                         "from_vtep": H1})
            assert bad.status_code == 400
            assert "not an open vxlan port" in bad.json()["error"]
            for vtep in ("999.1.1.1", "10.0.0.1; rm", "", "::1"):
                resp = c.post("/trace", json={"port": "a", "frame": "00", "from_vtep": vtep})
                assert resp.status_code == 422, vtep
    finally:
        agent.stop()


def test_the_predicted_outcome_decides_where_the_agent_gives_one() -> None:
    """Agents that replay the decision with peeked per-frame checks answer an ``outcome``:
    a connection-tracking drop the static decision cannot know, and only the copies that
    are really made (a sampled-out session makes none)."""
    h1, h2 = overlay(H1, [H2]), overlay(H2, [H1])
    plain = Hosts(h1, h2)

    def ask(host: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = plain(host, body)
        if host == "h1":
            return answer | {"outcome": {"outputs": [{"port": "overlay", "bytes": 64}],
                                         "copies": [], "drops": []}}
        return answer | {"outcome": {"outputs": [], "copies": [], "drops": [
            {"reason": "firewall-state-invalid", "port": "web2", "rule": "default",
             "detail": "no connection"}]}}

    path = trace_across(dvs(), LIVE, "web1", frame(), ask)
    assert path["delivered"] == [] and path["copies"] == []
    drop, = path["drops"]
    assert (drop["host"], drop["stage"], drop["reason"], drop["rule"]) == (
        "h2", "firewall", "firewall-state-invalid", "default")

    def copying(host: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = plain(host, body)
        if host == "h1":
            return answer | {"outcome": {"outputs": [{"port": "overlay", "bytes": 64}],
                                         "drops": [], "copies": [
                {"session": "watch.tx", "to": "overlay", "bytes": 64, "truncated": False,
                 "delivered": True}]}}
        return answer

    copy, = trace_across(dvs(), LIVE, "web1", frame(), copying)["copies"]
    assert (copy["session"], copy["point"], copy["to"], copy["delivered"]) == (
        "watch", "ingress", ["snf (h2)"], True)
