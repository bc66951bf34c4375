"""RPS steering of a veth port's receive queues: the decision, the masks, undoing it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vspan.config.model import PortConfig
from vspan.ports import rxsteer
from vspan.ports.rxsteer import (
    OFF_RATE,
    ON_RATE,
    RxSteering,
    format_mask,
    parse_mask,
    plan,
    wanted,
)


def sysfs(tmp_path: Path, ifname: str = "veth0", masks: tuple[str, ...] = ("0",)) -> Path:
    """A fake /sys/class/net with ``ifname``'s rx queues holding ``masks``."""
    for i, mask in enumerate(masks):
        q = tmp_path / ifname / "queues" / f"rx-{i}"
        q.mkdir(parents=True)
        (q / "rps_cpus").write_text(mask + "\n")
        (q / "rps_flow_cnt").write_text("0\n")
    return tmp_path


def masks(root: Path, ifname: str = "veth0") -> list[str]:
    return [p.read_text().strip()
            for p in sorted((root / ifname / "queues").glob("rx-*/rps_cpus"))]


# ------------------------------------------------------------------- masks
def test_format_and_parse_masks() -> None:
    assert format_mask([0]) == "00000001"
    assert format_mask([0, 1]) == "00000003"
    assert format_mask([33, 1]) == "00000002,00000002"
    assert parse_mask("00000002,00000002") == (1 << 33) | 2
    assert parse_mask("0\n") == 0
    for bad in ("", "xyz", ","):
        with pytest.raises(ValueError):
            parse_mask(bad)
    with pytest.raises(ValueError):
        format_mask([-1])


# ---------------------------------------------------------------- decision
def test_plan_steers_a_veth_away_from_the_switch_cpus() -> None:
    p = plan(enabled=True, driver="veth", masks=["0"], cpu_count=4, switch_cpus={1})
    assert p.steer and p.cpus == {0, 2, 3}
    assert "0,2,3" in p.reason


def test_plan_for_an_unpinned_switch_uses_every_cpu() -> None:
    p = plan(enabled=True, driver="veth", masks=["0", "0"], cpu_count=2, switch_cpus={0, 1})
    assert p.cpus == {0, 1}
    assert "all CPUs" in p.reason


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"enabled": False}, "never"),
    ({"driver": "tun"}, "not a veth (tun)"),
    ({"driver": None}, "driver unknown"),
    ({"masks": []}, "kernel without RPS"),
    ({"masks": ["0", "00000002"]}, "already set"),
    ({"masks": ["?"]}, "unreadable"),
    ({"cpu_count": 1}, "one CPU"),
])
def test_plan_leaves_the_queues_alone(kwargs: dict[str, object], why: str) -> None:
    args: dict[str, object] = {"enabled": True, "driver": "veth", "masks": ["0"],
                               "cpu_count": 2, "switch_cpus": {1}}
    args.update(kwargs)
    p = plan(**args)  # type: ignore[arg-type]
    assert not p.steer and not p.cpus
    assert why in p.reason


def test_auto_hysteresis() -> None:
    assert not wanted(False, ON_RATE - 1)
    assert wanted(False, ON_RATE)
    assert wanted(True, OFF_RATE)  # stays on between the two rates
    assert wanted(True, ON_RATE - 1)
    assert not wanted(True, OFF_RATE - 1)
    assert not wanted(False, OFF_RATE)


# ------------------------------------------------------------ apply / undo
def test_always_writes_every_queue_and_restores_on_close(tmp_path: Path) -> None:
    root = sysfs(tmp_path, masks=("0", "00000000"))
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    assert s.active
    assert masks(root) == ["00000001", "00000001"]
    s.restore()
    assert not s.active
    assert masks(root) == ["0", "00000000"]


def test_restore_leaves_a_mask_someone_changed_meanwhile(tmp_path: Path) -> None:
    root = sysfs(tmp_path)
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    (root / "veth0" / "queues" / "rx-0" / "rps_cpus").write_text("3\n")  # the admin's
    s.restore()
    assert masks(root) == ["3"]


def test_a_mask_already_set_is_never_touched(tmp_path: Path) -> None:
    root = sysfs(tmp_path, masks=("2",))
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    s.update(0, 0.0)
    s.update(ON_RATE * 10, 1.0)
    assert not s.active and masks(root) == ["2"]
    assert "already set" in s.reason
    s.restore()
    assert masks(root) == ["2"]


def test_not_a_veth_or_never_writes_nothing(tmp_path: Path) -> None:
    root = sysfs(tmp_path)
    for mode, driver in (("always", "tun"), ("never", "veth")):
        s = RxSteering(mode, sysfs=str(root))
        s.attach("veth0", switch_cpus={1}, driver=driver)
        assert not s.active and masks(root) == ["0"]


def test_auto_steers_only_while_the_port_receives_in_bulk(tmp_path: Path) -> None:
    root = sysfs(tmp_path)
    s = RxSteering("auto", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    assert masks(root) == ["0"] and "idle" in s.reason
    s.update(0, 10.0)  # the first sample only starts the clock
    s.update(ON_RATE // 2, 11.0)
    assert not s.active
    s.update(ON_RATE // 2 + ON_RATE * 2, 13.0)  # ON_RATE per second over 2 s
    assert s.active and masks(root) == ["00000001"] and "bulk" in s.reason
    s.update(ON_RATE // 2 + ON_RATE * 2 + OFF_RATE, 14.0)  # between the rates: stays
    assert s.active
    s.update(ON_RATE // 2 + ON_RATE * 2 + OFF_RATE + 10, 15.0)
    assert not s.active and masks(root) == ["0"] and "idle" in s.reason
    s.update(1 << 40, 15.0)  # no time passed: no decision
    assert not s.active


def test_attach_again_after_the_device_was_recreated(tmp_path: Path) -> None:
    root = sysfs(tmp_path)
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    (root / "veth0" / "queues" / "rx-0" / "rps_cpus").write_text("0\n")  # a new device
    s.attach("veth0", switch_cpus={1}, driver="veth")
    assert masks(root) == ["00000001"]
    s.restore()
    assert masks(root) == ["0"]


def test_unwritable_queue_leaves_nothing_behind(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = sysfs(tmp_path, masks=("0", "0"))
    real_write = rxsteer._write

    def write(path: str, text: str) -> bool:  # rx-1 refuses, as a read-only sysfs would
        return False if "rx-1" in path else real_write(path, text)

    monkeypatch.setattr(rxsteer, "_write", write)
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    assert not s.active
    assert masks(root) == ["0", "0"]  # rx-0, written first, is put back
    assert "not writable" in s.reason


def test_unreadable_queue_is_left_alone(tmp_path: Path) -> None:
    root = sysfs(tmp_path, masks=("0", "0"))
    blocked = root / "veth0" / "queues" / "rx-1" / "rps_cpus"
    blocked.unlink()
    blocked.mkdir()
    s = RxSteering("always", sysfs=str(root))
    s.attach("veth0", switch_cpus={1}, driver="veth")
    assert not s.active and "unreadable" in s.reason
    assert (root / "veth0" / "queues" / "rx-0" / "rps_cpus").read_text().strip() == "0"


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="rx_steering"):
        RxSteering("sometimes")


# ------------------------------------------------------------------ config
def test_port_config_rx_steering() -> None:
    assert PortConfig().rx_steering == "auto"
    assert PortConfig(rx_steering=False).rx_steering == "never"  # type: ignore[arg-type]
    assert PortConfig(rx_steering=True).rx_steering == "always"  # type: ignore[arg-type]
    assert PortConfig(rx_steering="never").rx_steering == "never"
    with pytest.raises(ValidationError, match="rx_steering"):
        PortConfig(rx_steering="sometimes")  # type: ignore[arg-type]
