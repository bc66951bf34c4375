"""``ports.<name>.tap``: the TAP settings of a QEMU/libvirt port (issue 7 item 9)."""

from __future__ import annotations

import pytest

from vspan.config.diff import diff
from vspan.config.load import ConfigError, load_text
from vspan.ports.factory import open_backend
from vspan.ports.tap import TapPort

BAD = [
    ("ports: {vm: {type: tap, tap: {create: false, owner: qemu}}}",
     "ports.vm.tap: 'owner' only applies when vspan creates the TAP (create: true)"),
    ("ports: {vm: {type: tap, tap: {create: false, multi_queue: true}}}",
     "ports.vm.tap: 'multi_queue' only applies when vspan creates the TAP (create: true)"),
    ("ports: {vm: {tap: {create: true}}}",
     "ports.vm: 'tap' settings are only for type: tap (type is afpacket)"),
    ("ports: {vm: {type: tap, tap: {owner: 'bad name'}}}",
     "ports.vm.tap.owner: 'bad name' is not a user or group (a name or a number)"),
    ("ports: {vm: {type: tap, tap: {group: -1}}}",
     "ports.vm.tap.group: -1 is not a user or group id"),
    ("ports: {vm: {type: tap, tap: {owner: true}}}",
     "ports.vm.tap.owner: True is not a user or group (a name or a number)"),
    ("ports: {vm: {type: tap, tap: {owner: '../etc'}}}",
     "ports.vm.tap.owner: '../etc' is not a user or group (a name or a number)"),
    ("ports: {vm: {type: tap, tap: {queues: 4}}}", "ports.vm.tap.queues: unknown key"),
    ("ports: {vm: {type: tap, tap: {vnet_hdr: maybe}}}", "ports.vm.tap.vnet_hdr: Input should"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_tap_settings_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(text)
    assert expected in str(err.value)


def test_tap_settings_reach_the_backend() -> None:
    cfg = load_text("ports:\n"
                    "  vm1: {type: tap, interface: tap-vm1, tap: {owner: libvirt-qemu, "
                    "group: 64055, multi_queue: true, vnet_hdr: false}}\n"
                    "  vm2: {type: tap, tap: {create: false}}\n"
                    "  vm3: {type: tap}\n")
    vm1 = open_backend("vm1", cfg.ports["vm1"])
    assert isinstance(vm1, TapPort) and vm1.create and vm1.ifname == "tap-vm1"
    assert (vm1._owner, vm1._group, vm1._multi_queue, vm1._vnet_hdr) == (
        "libvirt-qemu", "64055", True, False)
    vm2 = open_backend("vm2", cfg.ports["vm2"])
    assert isinstance(vm2, TapPort) and not vm2.create
    vm3 = cfg.ports["vm3"].tap_settings()
    assert vm3.create and vm3.vnet_hdr and not vm3.multi_queue and vm3.owner is None


def test_changed_tap_settings_reopen_the_port() -> None:
    old = load_text("ports: {vm: {type: tap, tap: {owner: '1000'}}}")
    new = load_text("ports: {vm: {type: tap, tap: {owner: '1001'}}}")
    same = load_text("ports: {vm: {type: tap, tap: {owner: 1000}}}")
    assert diff(old, new).ports_reopened == ("vm",)
    assert diff(old, same).empty
    # the defaults written out are the same backend as no tap settings at all
    assert not diff(load_text("ports: {vm: {type: tap}}"),
                    load_text("ports: {vm: {type: tap, tap: {create: true}}}")).ports_reopened
