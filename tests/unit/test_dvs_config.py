"""The distributed switch's configuration: path-precise errors, port-group merge, port ids."""

from __future__ import annotations

import pytest

from vspan.config.dvs import DvsConfig, effective_port
from vspan.config.load import ConfigError, parse_model, read_yaml
from vspan.control.dvs.admin import DvsAdmin, DvsError
from vspan.control.store.memory import MemoryStore

BASE = """\
switch: {name: prod}
hosts: {esx1: {}, esx2: {}}
port_groups:
  web:
    vlan: {mode: access, id: 10}
    policy:
      guards: {mac_spoofing: false}
      acls: [{id: no-mgmt, action: deny, direction: both, remote_ip: 192.168.0.0/16}]
ports:
  web1: {host: esx1, mac: "02:00:00:00:00:01", port_group: web, policy: {addresses: [10.0.0.1]}}
  web2: {host: esx2, mac: "02:00:00:00:00:02", port_group: web}
  snf: {host: esx2}
"""


def load(text: str) -> DvsConfig:
    return parse_model(DvsConfig, read_yaml(text, "dvs.yaml"), "dvs.yaml")


BAD = [
    ("hosts: {h: {}}\nports: {a: {host: x}}", "ports.a.host: no host named 'x' (hosts: h)"),
    ("hosts: {h: {}}\nports: {a: {host: h, port_group: nope}}",
     "ports.a.port_group: no port group named 'nope'"),
    ("hosts: {h: {}}\nport_groups: {g: {vlan: {mode: access, id: 5}}}\n"
     "ports: {a: {host: h, port_group: g, vlan: {mode: access, id: 3}}}",
     "ports.a.vlan: set by port group 'g'"),
    ("hosts: {h: {}}\nport_groups: {g: {policy: {guards: {mac_spoofing: false}}}}\n"
     "ports: {a: {host: h, port_group: g}}",
     "ports.a.mac: port group 'g' forbids MAC spoofing"),
    ("hosts: {h: {}}\nports: {a: {host: h}}\nmirrors: {m: {sources: [{port_group: z}], "
     "destinations: [a]}}", "mirrors.m.sources.0.port_group: no port group named 'z'"),
    ("hosts: {h: {}}\nport_groups: {g: {}}\nports: {a: {host: h, port_group: g}}\n"
     "mirrors: {m: {sources: [{port_group: g}], destinations: [a]}}",
     "mirrors.m: port 'a' is both a source and a destination"),
    ("hosts: {h: {}}\nports: {a: {host: h, port_id: 1}, b: {host: h, port_id: '1'}}",
     "ports.b.port_id: '1' is already the id of port 'a'"),
    ("hosts: {h: {}}\nports: {a: {host: h, port_id: true}}",
     "ports.a.port_id: True is not a port id"),
    ("hosts: {h: {}}\nports: {a: {host: h, interface: x}, b: {host: h, interface: x}}",
     "ports.b.interface: 'x' is already used on host h by port 'a'"),
    ("hosts: {h: {}}\nports: {a: {host: h, colour: 1}}", "ports.a.colour: unknown key"),
    ("switch: {control_socket: /x}", "switch: control_socket is per host"),
    ("hosts: {h: {}}\nports: {a: {host: h}}\nfirewall: {sections: [{name: s, "
     "applied_to: [nogroup]}]}", "firewall.sections.0.applied_to.0: no port or group named"),
    ("hosts: {h: {}}\nport_groups: {a: {}}\nports: {a: {host: h}}",
     "port_groups.a: a port has the same name"),
    ("hosts: {h: {}}\nport_groups: {g: {vlan: {mode: trunk, allowed: [5000]}}}",
     "port_groups.g.vlan.allowed: 5000 is not a VLAN id"),
    ("hosts: {h: {}}\nport_groups: {g: {vlan: {mode: trunk, allowed: [10, 4001]}}}",
     "port_groups.g.vlan: VLAN 4001 is reserved for mirror copies between hosts "
     "(switch.mirror_vlans: 4000-4094)"),
    ("switch: {mirror_vlans: {first: 100, last: 199}}\nhosts: {h: {}}\n"
     "ports: {a: {host: h, vlan: {mode: access, id: 150}}}",
     "ports.a.vlan: VLAN 150 is reserved"),
    ("switch: {mirror_vlans: {first: 300, last: 200}}", "last (200) is below first (300)"),
    ("hosts: {h: {}}\nports: {a: {host: h}, b: {host: h}}\n"
     "mirrors: {m.rx: {sources: [a], destinations: [b]}}",
     "mirrors.m.rx: session names may not end in .tx or .rx"),
    ("hosts: {h: {}}\nports: {a: {host: h}, b: {host: h}}\n"
     "mirrors: {m: {sources: [a], destinations: [b], overlay_vlan: 12}}",
     "mirrors.m.overlay_vlan: 12 is not in switch.mirror_vlans (4000-4094)"),
    ("hosts: {h: {}}\nports: {a: {host: h}, b: {host: h}}\n"
     "mirrors: {m: {sources: [a], destinations: [b], overlay_vlan: 4000},\n"
     "          n: {sources: [b], destinations: [a], overlay_vlan: 4000}}",
     "mirrors.n.overlay_vlan: 4000 is already the overlay VLAN of session 'm'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_errors_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert any(expected in e for e in info.value.errors), info.value.errors


def test_port_group_policy_is_merged_into_the_port() -> None:
    dvs = load(BASE)
    web1 = effective_port(dvs, "web1")
    assert web1.vlan.id == 10
    assert web1.policy is not None
    assert [a.id for a in web1.policy.acls] == ["no-mgmt"]
    # "MAC address changes: reject": only the port's own MAC may send
    assert web1.policy.guards.mac_spoofing is False
    assert web1.policy.guards.macs == ("02:00:00:00:00:01",)
    assert web1.policy.addresses == ("10.0.0.1/32",)
    assert effective_port(dvs, "snf").vlan.mode.value == "untagged"


def test_apply_assigns_stable_port_ids_and_never_reuses_them() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    first = admin.apply(load(BASE))
    assert first.written and first.generation == 1
    ids = first.port_ids
    assert sorted(ids.values()) == ["1", "2", "3"]
    # the same file again: nothing written, ids kept
    again = admin.apply(load(BASE))
    assert not again.written and again.changes == [] and again.port_ids == ids
    # web2 removed: its id is retired; a new port never gets it
    text = BASE.replace('  web2: {host: esx2, mac: "02:00:00:00:00:02", port_group: web}\n', "")
    admin.apply(load(text))
    added = admin.apply(load(text + "  web3: {host: esx1, port_group: web, mac: "
                             "'02:00:00:00:00:03'}\n"))
    assert added.port_ids["web1"] == ids["web1"]
    assert added.port_ids["web3"] not in ids.values()
    with pytest.raises(DvsError, match="belonged to a removed port"):
        admin.apply(load(text + f"  web4: {{host: esx1, port_id: {ids['web2']}}}\n"))
    with pytest.raises(DvsError, match="a port's id never changes"):
        admin.apply(load(text.replace("port_group: web, policy", "port_id: 99, port_group: web,"
                                      " policy")))


def test_apply_is_one_transaction_guarded_against_lost_updates() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    admin.apply(load(BASE))
    rev = store.revision
    changed = load(BASE.replace("id: 10", "id: 20").replace("snf: {host: esx2}",
                                                            "snf: {host: esx1}"))
    result = admin.apply(changed)
    assert store.revision == rev + 1  # every key of the change in one revision
    assert "port group web changed" in result.changes
    assert any(c.startswith("port snf changed") for c in result.changes)

    # somebody else writes between our read and our transaction: refused, nothing written
    other = DvsAdmin(store, "prod")
    real_txn = store.txn

    def racing_txn(compares, ops):  # type: ignore[no-untyped-def]
        store.txn = real_txn  # type: ignore[method-assign]
        other.apply(load(BASE))
        return real_txn(compares, ops)

    store.txn = racing_txn  # type: ignore[method-assign]
    before = store.revision
    with pytest.raises(DvsError, match="changed by someone else"):
        admin.apply(load(BASE.replace("id: 10", "id: 30")))
    assert store.revision == before + 1  # only the other writer's transaction
    assert admin.state().config().port_groups["web"].vlan.id == 10


def test_apply_is_refused_when_the_schema_changed_since_its_read() -> None:
    """The schema guard compares with the read the change was based on (not a second
    read just before the transaction): a schema rewritten in between refuses the write."""
    from vspan.control.dvs.admin import read_state
    from vspan.control.dvs.document import dumps
    from vspan.control.dvs.keys import DvsKeys
    from vspan.control.store.base import Put

    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    admin.apply(load(BASE))
    base = read_state(store, "prod")
    assert base.schema_revision > 0
    store.txn([], [Put(DvsKeys("prod").schema, dumps({"schema": 1}))])  # e.g. a migration
    before = store.revision
    with pytest.raises(DvsError, match="changed by someone else"):
        admin.apply(load(BASE.replace("id: 10", "id: 30")), base=base)
    assert store.revision == before
    assert admin.apply(load(BASE.replace("id: 10", "id: 30"))).written  # a fresh read: fine


def test_edit_retries_on_a_concurrent_write_and_keeps_both() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    admin.apply(load(BASE))
    other = DvsAdmin(store, "prod")
    calls: list[int] = []

    def change(data: dict) -> None:  # type: ignore[type-arg]
        if not calls:  # the first attempt races with another writer
            other.edit(lambda d: d["ports"]["snf"].update({"description": "sniffer"}))
        calls.append(1)
        data["port_groups"]["web"]["vlan"] = {"mode": "access", "id": 30}

    admin.edit(change)
    cfg = admin.state().config()
    assert len(calls) == 2
    assert cfg.port_groups["web"].vlan.id == 30 and cfg.ports["snf"].description == "sniffer"


def test_wrong_switch_name_is_refused() -> None:
    with pytest.raises(DvsError, match="configures switch 'prod', not 'test'"):
        DvsAdmin(MemoryStore(), "test").apply(load(BASE))


def test_a_change_too_big_for_one_etcd_transaction_is_refused_with_advice() -> None:
    store = MemoryStore()  # etcd's default limit: 128 operations per transaction
    hosts = "".join(f"  h{i}: {{}}\n" for i in range(130))
    with pytest.raises(DvsError, match="--max-txn-ops"):
        DvsAdmin(store, "big").apply(load(f"switch: {{name: big}}\nhosts:\n{hosts}"))
    assert store.revision == 1  # nothing written


def test_apply_gives_each_session_a_stable_mirror_vlan() -> None:
    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    text = BASE + ("mirrors:\n  a: {sources: [web1], destinations: [snf]}\n"
                   "  b: {sources: [web2], rspan: {port: web1, vlan: 55}}\n"
                   "  c: {sources: [web1], erspan: {remote_ip: 192.0.2.9}}\n")
    admin.apply(load(text))
    got = {n: m.overlay_vlan for n, m in admin.state().config().mirrors.items()}
    assert got == {"a": 4000, "b": 4001, "c": None}  # ERSPAN goes from each host itself
    # removing a frees its VLAN for a new session; b keeps its own
    admin.apply(load(text.replace("  a: {sources: [web1], destinations: [snf]}\n",
                                  "  d: {sources: [web1], destinations: [snf]}\n")))
    got = {n: m.overlay_vlan for n, m in admin.state().config().mirrors.items()}
    assert got == {"b": 4001, "c": None, "d": 4000}
    # a full range is refused with advice, nothing written
    tiny = text.replace("switch: {name: prod}",
                        "switch: {name: prod, mirror_vlans: {first: 4000, last: 4000}}")
    with pytest.raises(DvsError, match=r"no free VLAN left in switch\.mirror_vlans"):
        admin.apply(load(tiny))


def test_apply_compares_with_the_stored_bytes_without_validating_the_stored_switch() -> None:
    """`dvs apply` diffs the new items' canonical bytes against the bytes as stored and
    takes ids from the stored items: the stored switch is not validated and re-encoded
    (a whole-switch validation per apply was most of its CPU). Only what differs from the
    stored bytes is written; a stored item something else broke is replaced, not fatal."""
    from vspan.control.dvs.document import dumps
    from vspan.control.dvs.keys import DvsKeys
    from vspan.control.store.base import Put

    store = MemoryStore()
    admin = DvsAdmin(store, "prod")
    ids = admin.apply(load(BASE)).port_ids
    keys = DvsKeys("prod")
    stored = admin.state().raw["ports"]["web2"]
    # the same item in other bytes (keys unsorted, spaces): one rewrite, to the canonical
    store.txn([], [Put(keys.item("ports", "web2"), json_unsorted(stored))])
    # an item that no longer validates (a port of an unknown host)
    store.txn([], [Put(keys.item("ports", "snf"),
                       dumps({**admin.state().raw["ports"]["snf"], "host": "gone"}))])
    rev = store.revision
    res = admin.apply(load(BASE))
    assert res.written and store.revision == rev + 1
    assert sorted(c.split(" (")[0] for c in res.changes) == ["port snf changed",
                                                             "port web2 changed"]
    assert res.port_ids == ids  # the stored ids, read from the stored items
    st = admin.state()
    assert st.stored["ports/web2"] == dumps(stored)
    assert st.config().ports["snf"].host == "esx2"
    again = admin.apply(load(BASE))
    assert not again.written and again.changes == []


def json_unsorted(data: dict[str, object]) -> bytes:
    """``data`` as JSON with its keys in reverse order and spaces (not canonical)."""
    import json

    return json.dumps(dict(reversed(list(data.items())))).encode()
