"""Config validation errors name their exact path; diffs classify changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vspan.config.diff import diff
from vspan.config.load import ConfigError, load_file, load_text, parse_config

BAD = [
    ("ports: {web1: {vlan: {mode: trunk, allowed: [5000]}}}",
     "ports.web1.vlan.allowed: 5000 is not a VLAN id (1-4094)"),
    ("ports: {web1: {vlan: {mode: trunk, allowed: ['10-5']}}}",
     "ports.web1.vlan.allowed: '10-5' is an empty VLAN range"),
    ("ports: {web1: {vlan: {mode: access}}}", "ports.web1.vlan: access mode needs 'id'"),
    ("ports: {web1: {vlan: {mode: access, id: 0}}}",
     "ports.web1.vlan.id: 0 is not a VLAN id (1-4094)"),
    ("ports: {web1: {vlan: {mode: untagged, native: 3}}}",
     "ports.web1.vlan: 'allowed' and 'native' are only for trunk mode"),
    ("ports: {web1: {colour: red}}", "ports.web1.colour: unknown key"),
    ("bogus: 1", "bogus: unknown key"),
    ("ports: {web1: {type: floppy}}", "ports.web1.type: Input should be"),
    ("ports: {a: {}}\nmirrors: {m: {sources: [a], destinations: [b]}}",
     "mirrors.m.destinations.0: no port named 'b'"),
    ("ports: {a: {}}\nmirrors: {m: {sources: [{port: z}], destinations: [a]}}",
     "mirrors.m.sources.0.port: no port named 'z'"),
    ("ports: {a: {}, b: {}}\nmirrors: {m: {sources: [a], destinations: [a]}}",
     "mirrors.m: port 'a' is both a source and a destination of this session"),
    ("ports: {a: {}, b: {}}\nmirrors: {m: {sources: [a], destinations: [b], "
     "mirrored_packet_length: 59}}", "mirrors.m.mirrored_packet_length: Input should be greater"),
    ("ports: {a: {}, b: {}}\nmirrors: {m: {sources: [a], destinations: [b], sampling_rate: 0}}",
     "mirrors.m.sampling_rate: Input should be greater"),
    ("ports: {a: {}, b: {}}\nmirrors: {m: {sources: [{port: a, direction: sideways}], "
     "destinations: [b]}}", "mirrors.m.sources.0.direction: Input should be"),
    ("ports: {a: {interface: x}, b: {interface: x}}",
     "ports.b.interface: 'x' is already used by port 'a'"),
    ("ports: {a: {interface: this-name-is-too-long}}",
     "ports.a.interface: 'this-name-is-too-long' is not an interface name"),
    ("ports: {a: {}}\nmirrors: {m: {sources: [a], erspan: {type: erspan3, remote_ip: 10.0.0.1, "
     "platform_subheader: true, index: 70000}}}",
     "mirrors.m.erspan: index: 70000 does not fit the Type III platform subheader"),
    ("ports: {a: {}}\nmirrors: {m: {sources: [a], erspan: {remote_ip: '2001:db8::1', "
     "mtu: 600}}}", "mirrors.m.erspan: mtu: 600 is below the IPv6 minimum of 1280"),
    ("switch: {control_socket_group: ''}", "switch.control_socket_group: String should have"),
    ("ports: [1, 2]", "ports: Input should be a valid dictionary"),
    ("ports: {a: {]", "invalid YAML"),
    ("ports: {a: {mtu: true}}", "ports.a: mtu: a boolean is not accepted here"),
    ("switch: {batch_size: yes}", "switch: batch_size: a boolean is not accepted here"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_errors_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, "switch.yaml")
    assert any(expected in e for e in info.value.errors), info.value.errors
    assert str(info.value).startswith("switch.yaml: ")


def test_vlan_lists_accept_ranges_and_strings() -> None:
    cfg = load_text("ports: {t: {vlan: {mode: trunk, allowed: '10,20-22', native: 1}}}")
    assert cfg.ports["t"].vlan.allowed == (10, 20, 21, 22)


def test_config_objects_are_frozen() -> None:
    cfg = load_text("ports: {a: {}}")
    with pytest.raises(ValueError):
        cfg.ports["a"].enabled = False


def test_config_mappings_are_read_only() -> None:
    cfg = load_text("ports: {a: {}, b: {}}\nmirrors: {m: {sources: [a], destinations: [b]}}\n"
                    "firewall: {groups: {g: {ports: [a]}}}")
    assert cfg.firewall is not None
    for mapping in (cfg.ports, cfg.mirrors, cfg.firewall.groups):
        with pytest.raises(TypeError):
            mapping["x"] = mapping[next(iter(mapping))]  # type: ignore[index]
        assert not hasattr(mapping, "pop") and not hasattr(mapping, "clear")
    # serialised and re-validated, the configuration is equal
    assert parse_config(cfg.model_dump(mode="json", exclude_none=True)) == cfg


def test_diff_classifies_changes() -> None:
    old = load_text("""
ports: {a: {}, b: {}, c: {interface: eth9}, d: {}}
mirrors: {m: {sources: [a], destinations: [b]}}
""")
    new = load_text("""
ports: {a: {vlan: {mode: access, id: 5}}, b: {}, c: {interface: eth8}, e: {}}
mirrors: {n: {sources: [a], destinations: [b]}}
switch: {fdb_aging_seconds: 60}
""")
    cs = diff(old, new)
    assert cs.ports_added == ("e",) and cs.ports_removed == ("d",)
    assert cs.ports_changed == ("a",) and cs.ports_reopened == ("c",)
    assert cs.mirrors_added == ("n",) and cs.mirrors_removed == ("m",)
    assert cs.switch_changed == ("fdb_aging_seconds",)
    assert diff(new, new).empty


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Not a UnicodeDecodeError escaping to the caller (the API answered 500)."""
    f = tmp_path / "switch.yaml"
    f.write_bytes(b"switch: {name: t}\n# \xff\n")
    with pytest.raises(ConfigError) as err:
        load_file(f)
    assert err.value.source == str(f)
    assert err.value.errors == ["not UTF-8 text (byte 20: invalid start byte)"]
