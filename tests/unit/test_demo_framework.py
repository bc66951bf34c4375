"""``vspan demo``: the list, the exit status rules, cleanup on failure and interrupts.

The demos themselves run in ``tests/system/test_demos.py`` (root); here the
runner is driven with small fake demos, so the exit status rules are checked
without namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vspan.cli.firewall_cmd import service_text
from vspan.demos import DEFAULT, DEMOS, find, runner
from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError, Evidence
from vspan.demos.narrate import Narrator


def vspan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vspan.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_list_shows_each_demo_once_in_story_order() -> None:
    proc = vspan("demo", "--list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()[:len(DEMOS)]]
    assert names == ["mirror", "rspan", "erspan", "firewall", "lbfo", "troubleshoot", "metro"]
    assert [s.number for s in DEMOS] == sorted(s.number for s in DEMOS)
    rows = {ln.split()[0]: " ".join(ln.split()[1:]) for ln in proc.stdout.splitlines()[:len(DEMOS)]}
    assert rows["mirror"].startswith("1. Hyper-V port mirroring (story 000): ")
    assert rows["rspan"].startswith("2. vDS remote mirroring over a mirror VLAN (story 003): ")
    assert rows["troubleshoot"].startswith("6. VLAN and ACL troubleshooting (story 002): ")
    assert f"`vspan demo` alone runs '{DEFAULT}'" in proc.stdout


def test_each_demo_is_a_subcommand() -> None:
    proc = vspan("demo", "--help")
    assert proc.returncode == 0
    for spec in DEMOS:
        assert spec.name in proc.stdout
    assert vspan("demo", "nosuchdemo").returncode == 2  # argparse: invalid choice


def test_find() -> None:
    assert find("rspan").seed == "003"
    with pytest.raises(KeyError):
        find("teams")  # not built yet: not listed either


def test_not_root_is_exit_2_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    out: list[str] = []
    err: list[str] = []
    assert runner.run_demo(find("mirror"), out.append, err.append) == 2
    assert out == []
    assert err == ["vspan demo mirror: the demos need root (they create network namespaces)"]


def test_missing_tool_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    spec = DemoSpec("fake", 9, "999", "fake", "fake", ("no-such-tool-xyz",), lambda c: None)
    err: list[str] = []
    assert runner.run_demo(spec, lambda s: None, err.append) == 2
    assert "missing tools: no-such-tool-xyz" in err[0]


def _fake(body: object) -> DemoSpec:
    return DemoSpec("fake", 9, "999", "a fake story", "fake", (), body)  # type: ignore[arg-type]


def _run(monkeypatch: pytest.MonkeyPatch, spec: DemoSpec) -> tuple[int, list[str], list[str]]:
    monkeypatch.setattr(runner, "preflight", lambda s: None)
    out: list[str] = []
    err: list[str] = []
    rc = runner.run_demo(spec, out.append, err.append)
    return rc, out, err


def test_observed_evidence_is_exit_0(monkeypatch: pytest.MonkeyPatch) -> None:
    def body(ctx: DemoContext) -> None:
        ctx.evidence.expect(True, "the frames were captured", "no frames")

    rc, out, err = _run(monkeypatch, _fake(body))
    assert rc == 0, err
    assert out[-2:] == ["demo ok: fake", "  observed: the frames were captured"]


def test_missing_evidence_is_exit_1_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def body(ctx: DemoContext) -> None:
        ctx.evidence.expect(True, "the switch started", "no switch")
        ctx.evidence.expect(False, "the stream was followed", "the stream was not in the file")

    rc, out, err = _run(monkeypatch, _fake(body))
    assert rc == 1
    assert err == ["vspan demo fake: NOT OBSERVED: the stream was not in the file"]
    assert not any(line.startswith("demo ok") for line in out)


def test_no_evidence_at_all_is_not_success(monkeypatch: pytest.MonkeyPatch) -> None:
    rc, _out, err = _run(monkeypatch, _fake(lambda ctx: None))
    assert rc == 1 and err == ["vspan demo fake: NOT OBSERVED: the demo observed nothing"]


def test_a_failed_step_is_exit_1_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Path] = {}

    def body(ctx: DemoContext) -> None:
        seen["dir"] = ctx.lab.workdir
        ctx.path("capture.pcap").write_bytes(b"x")
        raise DemoError("the switch did not come up")

    rc, out, err = _run(monkeypatch, _fake(body))
    assert rc == 1
    assert err == ["vspan demo fake: failed: the switch did not come up"]
    assert not seen["dir"].exists()
    assert any(line.startswith("cleanup:") for line in out)


@pytest.mark.parametrize(("exc", "status"), [(KeyboardInterrupt, 130),
                                             (runner.Terminated, 143)])
def test_interrupt_cleans_up(monkeypatch: pytest.MonkeyPatch, exc: type[BaseException],
                             status: int) -> None:
    seen: dict[str, Path] = {}

    def body(ctx: DemoContext) -> None:
        seen["dir"] = ctx.lab.workdir
        raise exc

    rc, _out, err = _run(monkeypatch, _fake(body))
    assert rc == status
    assert "interrupted; everything it made is removed" in err[0]
    assert not seen["dir"].exists()


def test_evidence_and_narration() -> None:
    ev = Evidence()
    assert not ev.ok
    assert ev.expect(True, "a", "not a") and ev.ok
    assert not ev.expect(False, "b", "not b") and not ev.ok
    assert ev.seen == ["a"] and ev.missing == ["not b"]
    lines: list[str] = []
    say = Narrator(lines.append)
    say.command("esx1", "vspan show mirrors")
    say.block("l1\nl2\nl3\n", limit=2)
    assert lines == ["esx1$ vspan show mirrors", "    l1", "    l2", "    ... (1 more lines)"]


def test_firewall_show_services_text() -> None:
    assert service_text({"protocol": "tcp", "ports": ["80", "443"], "source_ports": []}) \
        == "tcp/80,443"
    assert service_text({"protocol": "icmp", "ports": [], "icmp_type": 3, "icmp_code": 13}) \
        == "icmp/3:13"
    assert service_text({"protocol": "udp", "ports": ["53"], "source_ports": ["1024-65535"]}) \
        == "udp/53 from 1024-65535"
    assert service_text("tcp/22") == "tcp/22"
