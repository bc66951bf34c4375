"""vspan dedup and vspan flows stream: their peak memory does not grow with the file.

Files of 0.2 and 1.2 million packets (every frame at two capture points, block-
interleaved, with real retransmissions mixed in) come from ``bench/gencapture.py``,
a fast generator. Each command runs as a child of a small wrapper that reports
the child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``). This is a memory
bound, not a timing assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


REPO = Path(__file__).resolve().parents[2]
GEN = REPO / "bench" / "gencapture.py"
VSPAN = [sys.executable, "-m", "vspan.cli.main"]
WRAPPER = ("import resource, subprocess, sys\n"
           "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
           "sys.stderr.write(p.stdout.decode())\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
           "sys.exit(p.returncode)\n")
BOUND_KB = 150 * 1024  # fixed: whatever the file size
GROWTH_KB = 16 * 1024  # 6x the packets may cost at most this much more


def generate(path: Path, unique: int, *extra: str) -> int:
    out = subprocess.run([sys.executable, str(GEN), str(path), "--unique", str(unique),
                          "--retransmit", "1000", *extra], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


def peak_rss_kb(*args: str) -> tuple[int, str]:
    """Run ``vspan ARGS`` as a child; return its peak RSS in KiB and its stdout."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *VSPAN, *args], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip()), proc.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    d = tmp_path_factory.mktemp("big")
    out = {}
    for name, unique in (("small", 100_000), ("large", 600_000)):
        path = d / f"{name}.pcapng"
        out[name] = (path, generate(path, unique))
    assert out["large"][1] > 1_200_000
    return out


def test_dedup_memory_does_not_grow_with_the_file(files: dict[str, tuple[Path, int]],
                                                   tmp_path: Path) -> None:
    rss = {}
    for name, (path, packets) in files.items():
        rss[name], report = peak_rss_kb("dedup", str(path), "-w", str(tmp_path / f"{name}.out"),
                                        "--json")
        st = json.loads(report)
        unique = (packets - packets // 2001) // 2  # each frame twice, 1 in 1000 retransmitted
        assert st["packets_in"] == packets
        assert st["removed"] == unique and st["forced"] == 0 and st["forgotten"] == 0
        assert st["packets_out"] == packets - unique  # the retransmissions stay
    assert rss["large"] < BOUND_KB, rss
    assert rss["large"] - rss["small"] < GROWTH_KB, rss


def test_flows_memory_does_not_grow_with_the_file(files: dict[str, tuple[Path, int]]) -> None:
    rss = {}
    for name, (path, packets) in files.items():
        rss[name], _ = peak_rss_kb("flows", str(path), "-q", "--problems", "--state", "SF")
        assert packets
    assert rss["large"] < BOUND_KB, rss
    assert rss["large"] - rss["small"] < GROWTH_KB, rss


def test_dedup_memory_is_capped_when_the_clock_stands_still(tmp_path: Path) -> None:
    path = tmp_path / "frozen.pcapng"
    packets = generate(path, 300_000, "--step-ns", "0")  # every frame at the same instant
    rss, report = peak_rss_kb("dedup", str(path), "-w", str(tmp_path / "o.pcapng"),
                              "--max-buffer", "16", "--json")
    st = json.loads(report)
    assert st["packets_in"] == packets and st["forced"] > 0
    assert rss < BOUND_KB, rss
