"""The ``type: vxlan`` port schema: path-precise errors, round trip, diff classification."""

from __future__ import annotations

import json

import pytest

from vspan.config.diff import diff
from vspan.config.load import ConfigError, load_text, parse_config
from vspan.datapath.state import NO_VLAN, SwitchState

OV = "ports: {{ov: {{type: vxlan, vxlan: {{local_ip: 10.0.0.1, vnis: {{10: 5010}}{extra}}}}}}}"

BAD = [
    ("ports: {ov: {type: vxlan}}", "ports.ov: a vxlan port needs a 'vxlan' block"),
    ("ports: {ov: {vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}}",
     "ports.ov.vxlan: only ports of type vxlan have a 'vxlan' block"),
    ("ports: {ov: {type: vxlan, interface: eth0, vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}}",
     "ports.ov.interface: a vxlan port has no interface"),
    ("ports: {ov: {type: vxlan, vlan: {mode: access, id: 3}, "
     "vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}}",
     "ports.ov.vlan: a vxlan port's VLANs come from vxlan.vnis"),
    ("ports: {ov: {type: vxlan, mtu: 1451, vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}}",
     "ports.ov.vxlan: the port's mtu 1451 is larger than underlay_mtu 1500"),
    ("ports: {ov: {type: vxlan, vxlan: {vnis: {10: 1}}}}",
     "ports.ov.vxlan.local_ip: Field required"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1}}}",
     "ports.ov.vxlan.vnis: Field required"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 'fe80::1', vnis: {10: 1}}}}",
     "ports.ov.vxlan.local_ip: 'fe80::1': only IPv4 underlays are supported"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 224.0.0.5, vnis: {10: 1}}}}",
     "ports.ov.vxlan.local_ip: '224.0.0.5' is not a unicast address"),
    (OV.format(extra=", colour: red"), "ports.ov.vxlan.colour: unknown key"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}, "
     "mirror_vlans: [20]}}}", "ports.ov.vxlan.mirror_vlans: VLAN 20 has no VNI in 'vnis'"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {0: 1}, "
     "mirror_vlans: [0]}}}", "ports.ov.vxlan.mirror_vlans: the untagged network (VLAN 0) "
     "cannot carry mirror copies"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {}}}}",
     "ports.ov.vxlan.vnis: map at least one VLAN to a VNI"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {4095: 1}}}}",
     "ports.ov.vxlan.vnis.4095: 4095 is not a VLAN id (0-4094, 0 = the untagged network)"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {10: 16777216}}}}",
     "ports.ov.vxlan.vnis.10: 16777216 is not a VNI (0-16777215)"),
    ("ports: {ov: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {10: 7, 20: 7}}}}",
     "ports.ov.vxlan.vnis: VNI 7 is mapped from VLAN 10 and VLAN 20"),
    (OV.format(extra=", flood: {20: [10.0.0.2]}"),
     "ports.ov.vxlan.flood: VLAN 20 has no VNI in 'vnis'"),
    (OV.format(extra=", flood: {10: [10.0.0.2, 10.0.0.2]}"),
     "ports.ov.vxlan.flood: VLAN 10: VTEP 10.0.0.2 listed twice"),
    (OV.format(extra=", flood: {10: [10.0.0.1]}"),
     "ports.ov.vxlan.flood: VLAN 10: 10.0.0.1 is this host's own local_ip"),
    (OV.format(extra=", flood: {10: [10.0.0.2, nonsense]}"),
     "ports.ov.vxlan.flood.10.1: 'nonsense' is not an IPv4 address"),
    (OV.format(extra=", peers: [10.0.0.1]"),
     "ports.ov.vxlan.peers: 10.0.0.1 is this host's own local_ip"),
    (OV.format(extra=", static: [{mac: 'ff:ff:ff:ff:ff:ff', vlan: 10, vtep: 10.0.0.2}]"),
     "ports.ov.vxlan.static.0.mac: 'ff:ff:ff:ff:ff:ff' is a group (multicast) address"),
    (OV.format(extra=", static: [{mac: '02:00:00:00:00:01', vlan: 20, vtep: 10.0.0.2}]"),
     "ports.ov.vxlan.static: entry 0: VLAN 20 has no VNI in 'vnis'"),
    (OV.format(extra=", static: [{mac: '02:00:00:00:00:01', vlan: 10, vtep: 10.0.0.2}, "
                     "{mac: '02:00:00:00:00:01', vlan: 10, vtep: 10.0.0.3}]"),
     "ports.ov.vxlan.static: entry 1: 02:00:00:00:00:01 on VLAN 10 listed twice"),
    (OV.format(extra=", static: [{mac: '02:00:00:00:00:01', vlan: 10}]"),
     "ports.ov.vxlan.static.0.vtep: Field required"),
    (OV.format(extra=", underlay_mtu: 100"),
     "ports.ov.vxlan.underlay_mtu: Input should be greater than or equal to 576"),
    (OV.format(extra=", udp_port: 0"), "ports.ov.vxlan.udp_port: Input should be greater"),
    (OV.format(extra=", ttl: 0"), "ports.ov.vxlan.ttl: Input should be greater"),
    ("ports: {a: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}, "
     "b: {type: vxlan, vxlan: {local_ip: 10.0.0.1, vnis: {10: 1}}}}",
     "ports.b.vxlan: 10.0.0.1 port 4789 is already used by port 'a'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_errors_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, "switch.yaml")
    assert any(expected in e for e in info.value.errors), info.value.errors


FULL = """
ports:
  vm1: {interface: veth-vm1}
  ov:
    type: vxlan
    vxlan:
      local_ip: 10.1.0.1
      vnis: {0: 5000, 10: 5010, 20: 5020}
      flood: {0: [10.1.0.2], 10: [10.1.0.2, 10.1.0.3]}
      peers: [10.1.0.4]
      static: [{mac: "02-00-00-00-01-05", vlan: 10, vtep: 10.1.0.9}]
      underlay_mtu: 9000
"""


def test_defaults_derived_values_and_json_round_trip() -> None:
    cfg = load_text(FULL)
    ov = cfg.ports["ov"]
    assert ov.vxlan is not None
    vx = ov.vxlan
    assert (vx.udp_port, vx.learning, vx.aging_seconds, vx.ttl, vx.tos) == (4789, True, 300,
                                                                            64, 0)
    assert vx.static[0].mac == "02:00:00:00:01:05"
    assert ov.effective_mtu() == 8950 == vx.inner_mtu
    assert vx.vteps() == {"10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.9"}
    assert cfg.ports["vm1"].effective_mtu() is None
    # what the control API and the distributed agents exchange: JSON (string keys)
    data = json.loads(json.dumps(cfg.model_dump(mode="json", exclude_none=True)))
    assert data["ports"]["ov"]["vxlan"]["vnis"] == {"0": 5000, "10": 5010, "20": 5020}
    assert parse_config(data) == cfg


def test_vlan_membership_of_the_overlay_port() -> None:
    st = SwitchState(load_text(FULL))
    ov = st.port("ov")
    assert ov.untagged_vlan == 0 and ov.egress_untagged == 0  # VLAN 0 travels untagged
    assert ov.tagged_vlans == {10, 20}
    assert ov.members == {0, 10, 20}
    assert ov.mtu == 8950
    st2 = SwitchState(load_text(OV.format(extra="")))
    assert st2.port("ov").untagged_vlan == NO_VLAN  # no VLAN 0: untagged frames not taken
    assert st2.port("ov").members == {10}


def test_overlay_changes_are_applied_live_socket_changes_reopen() -> None:
    old = load_text(FULL)
    more = "underlay_mtu: 9000\n      "
    live = [FULL.replace("10: [10.1.0.2, 10.1.0.3]", "10: [10.1.0.3]"),
            FULL.replace("peers: [10.1.0.4]", "peers: []"),
            FULL.replace("20: 5020", "20: 6020"),
            FULL.replace("underlay_mtu: 9000", "underlay_mtu: 1500"),
            FULL.replace("underlay_mtu: 9000", more + "ttl: 9\n      tos: 184"),
            FULL.replace("underlay_mtu: 9000", more + "learning: false\n      max_macs: 5")]
    for text in live:
        cs = diff(old, load_text(text))
        assert cs.ports_changed == ("ov",) and not cs.ports_reopened, text
    for text in (FULL.replace("local_ip: 10.1.0.1", "local_ip: 10.1.0.7"),
                 FULL.replace("underlay_mtu: 9000", more + "udp_port: 8472")):
        cs = diff(old, load_text(text))
        assert cs.ports_reopened == ("ov",) and not cs.ports_changed, text


def test_vni_map_change_flushes_the_switch_fdb_of_the_port() -> None:
    st = SwitchState(load_text(FULL))
    ov = st.port("ov")
    st.fdb.learn(10, b"\x02\0\0\0\0\x07", ov.index, 1.0)
    for text, left in ((FULL.replace("10: [10.1.0.2, 10.1.0.3]", "10: [10.1.0.3]"), 1),
                       (FULL.replace("10: 5010", "10: 5011"), 0)):
        new = load_text(text)
        st.apply(new, diff(st.config, new))
        assert len(st.fdb) == left  # flood lists do not change what the switch learned


def test_known_addresses_skip_a_second_check_but_bad_ones_are_still_refused() -> None:
    from pydantic import ValidationError

    from vspan.config.vxlan import KNOWN_IPV4, VxlanConfig

    known: set[str] = set()
    data = {"local_ip": "192.0.2.1", "vnis": {10: 5010},
            "flood": {10: [" 192.0.2.2", "192.0.2.3"]}, "peers": ["192.0.2.2"]}
    cfg = VxlanConfig.model_validate(data, context={KNOWN_IPV4: known})
    assert cfg.flood[10] == ("192.0.2.2", "192.0.2.3")  # canonical text, as without
    assert known == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    for bad in ("224.0.0.1", "192.0.2.300", "::1", " 192.0.2.2 x"):
        with pytest.raises(ValidationError, match="flood"):
            VxlanConfig.model_validate({**data, "flood": {10: ["192.0.2.3", bad]}},
                                       context={KNOWN_IPV4: known})
    assert known == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}  # nothing bad was remembered
    with pytest.raises(ValidationError, match="own local_ip"):  # cross-checks still run
        VxlanConfig.model_validate({**data, "peers": ["192.0.2.1"]},
                                   context={KNOWN_IPV4: known})


def test_a_list_of_known_addresses_is_taken_whole_and_a_bad_item_still_named() -> None:
    """Flood and peer lists whose every address the context already knows skip the
    per-item check (one set operation); a list with anything else is checked item by item,
    and the error names the item."""
    from pydantic import ValidationError

    from vspan.config.vxlan import KNOWN_IPV4, VxlanConfig

    many = [f"192.0.2.{i}" for i in range(2, 200)]
    known = {"192.0.2.1", *many}
    data = {"local_ip": "192.0.2.1", "vnis": {10: 5010}, "flood": {10: many}, "peers": many}
    cfg = VxlanConfig.model_validate(data, context={KNOWN_IPV4: known})
    assert cfg.flood[10] == tuple(many) and cfg.peers == tuple(many)
    with pytest.raises(ValidationError) as err:
        VxlanConfig.model_validate({**data, "flood": {10: [*many, "192.0.2.300"]}},
                                   context={KNOWN_IPV4: known})
    assert err.value.errors()[0]["loc"] == ("flood", 10, len(many))
    for bad in ({"a": 1}, ["x"], 5):  # unhashable items, other types: refused as before
        with pytest.raises(ValidationError, match="peers"):
            VxlanConfig.model_validate({**data, "peers": [*many[:3], bad]},
                                       context={KNOWN_IPV4: known})
    # the cross-checks still run on a known list
    with pytest.raises(ValidationError, match="listed twice"):
        VxlanConfig.model_validate({**data, "flood": {10: [*many, many[0]]}},
                                   context={KNOWN_IPV4: known})
    with pytest.raises(ValidationError, match="own local_ip"):
        VxlanConfig.model_validate({**data, "peers": [*many, "192.0.2.1"]},
                                   context={KNOWN_IPV4: known})
