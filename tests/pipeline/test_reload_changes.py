"""A live reload reports firewall changes and keeps the policy state of what it did not touch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.diffcount import count_diffs
from tests.helpers.policy_frames import PEER_MAC, VM_MAC, arp, tcp, udp
from tests.pipeline.harness import Switch, make_switch
from vspan.config.load import load_text
from vspan.datapath import engine as engine_mod
from vspan.datapath import state as state_mod
from vspan.policy.build import SwitchPolicy
from vspan.policy.layer import PolicyLayer

VM, PEER, OTHER = "10.0.0.5", "10.0.0.9", "10.0.0.7"
OTHER_MAC = "02:00:00:00:00:07"

CONFIG = """
ports:
  vm: {type: memory, policy: {addresses: [10.0.0.5]}}
  net: {type: memory}
  other:
    type: memory
    policy:
      addresses: [10.0.0.7]
      acls:
        - {id: meter-all, action: meter, direction: both, remote_ip: any}
      extended_acls:
        - {id: udp-out, action: allow, direction: out, weight: 100, protocol: udp,
           stateful: true}
        - {id: no-udp-in, action: deny, direction: in, weight: 10, protocol: udp}
      guards: {storm: {broadcast: 100}}
firewall:
  default_action: drop
  sections:
    - name: app
      rules:
        - {id: web-in, action: allow, direction: in, applied_to: [vm], services: [tcp/80]}
        - {id: web-out, action: allow, direction: out, applied_to: [net], services: [tcp/80]}
        - {id: udp-any, action: allow, services: [udp]}
"""

DNS_RULE = ("        - {id: dns, action: allow, direction: in, applied_to: [vm], "
            "services: [udp/53]}\n")


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    yield s
    s.engine.close()


def learn(sw: Switch) -> None:
    sw.send("net", arp(src_mac=PEER_MAC, psrc=PEER, pdst=VM))
    sw.send("vm", arp(src_mac=VM_MAC, psrc=VM, pdst=PEER))
    sw.send("other", arp(src_mac=OTHER_MAC, psrc=OTHER, pdst=PEER))
    for p in ("vm", "net", "other"):
        sw.got(p)


def open_connections(sw: Switch) -> None:
    """A TCP connection net -> vm:80, a UDP session other -> net (extended ACL), a drop."""
    learn(sw)
    sw.send("net", tcp(PEER, VM, 40000, 80, "S", seq=100, src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert len(sw.got("vm")) == 1
    sw.send("vm", tcp(VM, PEER, 80, 40000, "SA", seq=500, ack=101, src_mac=VM_MAC,
                      dst_mac=PEER_MAC))
    assert len(sw.got("net")) == 1
    sw.send("net", tcp(PEER, VM, 40001, 22, "S", src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert sw.got("vm") == []  # the default rule drops it
    sw.send("other", udp(OTHER, PEER, 5000, 6000, src_mac=OTHER_MAC, dst_mac=PEER_MAC))
    assert len(sw.got("net")) == 1


def policy(sw: Switch) -> SwitchPolicy:
    layer = sw.engine.policy
    assert isinstance(layer, PolicyLayer)
    return layer.policy


def hits(sw: Switch) -> dict[str, int]:
    fw = policy(sw).firewall
    assert fw is not None
    return dict(fw.ruleset.counters.hits)


def test_firewall_rule_added_by_reload_is_reported_and_keeps_state(sw: Switch) -> None:
    open_connections(sw)
    before = hits(sw)
    assert before["web-in"] >= 1 and before["default"] >= 1
    other = policy(sw).ports["other"]
    sessions, storm, acl = other.sessions, other.storm, other.acl
    assert len(sessions) == 1
    fw = policy(sw).firewall
    assert fw is not None
    vm_conns = list(fw.port("vm").conntrack)  # type: ignore[union-attr]
    assert len(vm_conns) == 1

    changes = sw.engine.reload(load_text(CONFIG.replace(
        "        - {id: udp-any,", DNS_RULE + "        - {id: udp-any,")))

    assert not changes.empty
    assert changes.summary() == ["firewall rule added: dns"]
    assert hits(sw) == before  # unchanged rules (and the default rule) keep their counters
    fw = policy(sw).firewall
    assert fw is not None
    assert list(fw.port("vm").conntrack) == vm_conns  # type: ignore[union-attr]
    other = policy(sw).ports["other"]
    assert other.sessions is sessions and other.storm is storm and other.acl is acl
    assert sum(m.packets for m in acl.meters()) >= 1
    # the established connection still passes; the new rule works
    sw.send("net", tcp(PEER, VM, 40000, 80, "A", seq=101, ack=501, src_mac=PEER_MAC,
                       dst_mac=VM_MAC))
    assert len(sw.got("vm")) == 1
    sw.send("net", udp(PEER, VM, 5353, 53, src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert len(sw.got("vm")) == 1
    assert hits(sw)["dns"] == 1


def test_changed_rule_and_default_lose_their_counters_only(sw: Switch) -> None:
    open_connections(sw)
    before = hits(sw)
    changed = CONFIG.replace("services: [tcp/80]}\n        - {id: web-out",
                             "services: [tcp/80, tcp/8080]}\n        - {id: web-out")
    changes = sw.engine.reload(load_text(changed.replace("default_action: drop",
                                                         "default_action: reject")))
    assert changes.firewall.rules.changed == ("web-in",)
    assert changes.firewall.settings == ("default_action",)
    after = hits(sw)
    assert "web-in" not in after and "default" not in after
    assert after["web-out"] == before["web-out"] and after["udp-any"] == before["udp-any"]


def test_acl_change_keeps_sessions_storm_and_other_ports(sw: Switch) -> None:
    open_connections(sw)
    other = policy(sw).ports["other"]
    sessions, storm = other.sessions, other.storm
    vm_policy = policy(sw).ports["vm"]
    before = hits(sw)
    changes = sw.engine.reload(load_text(CONFIG.replace(
        "        - {id: meter-all,",
        "        - {id: no-x, action: deny, direction: in, remote_ip: 10.9.9.9}\n"
        "        - {id: meter-all,")))
    assert changes.summary() == ["acl added: other/no-x"]
    other = policy(sw).ports["other"]
    assert other.sessions is sessions and other.storm is storm  # only the ACL was rebuilt
    assert policy(sw).ports["vm"] is vm_policy
    assert hits(sw) == before
    # the session still admits the return traffic the inbound rule would deny
    sw.send("net", udp(PEER, OTHER, 6000, 5000, src_mac=PEER_MAC, dst_mac=OTHER_MAC))
    assert len(sw.got("other")) == 1
    # and a change of the extended ACL itself starts its sessions afresh
    sw.engine.reload(load_text(CONFIG.replace("weight: 10, protocol: udp",
                                              "weight: 11, protocol: udp")))
    assert len(policy(sw).ports["other"].sessions) == 0


def test_reload_computes_the_change_set_once(sw: Switch,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_diffs(monkeypatch, engine_mod, state_mod)
    sw.engine.reload(load_text(CONFIG.replace("default_action: drop", "default_action: allow")))
    assert calls == ["diff"]
