"""bench_dvs.py --write with --only: the part not rerun stays in bench/RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from bench_dvs import kept_part  # noqa: E402
from common import update_section  # noqa: E402

SECTION = """\
## Distributed switch (bench_dvs.py)

### Configuration propagation

old propagation table

### Migration

| measure | median | runs |
|---|---|---|
| switch-over ms | 164 | 164, 170, 142 |

targets met in every run: yes

Machine: date: 2026-11-26 17:33 UTC; vspan commit: 3c894e0

Other load seen at the end: none.
"""


def test_a_propagation_only_write_keeps_the_migration_table_with_its_machine(
        tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    update_section("dvs", SECTION, results)
    for run in (1, 2):  # twice: the kept part is noted once, with the original machine
        body = ["## Distributed switch (bench_dvs.py)", "", "### Configuration propagation",
                "", f"new table {run}", "", *kept_part("### Migration", results),
                f"Machine: date: run {run}", "", "Other load seen at the end: none."]
        update_section("dvs", "\n".join(body), results)
    text = results.read_text(encoding="utf-8")
    assert "new table 2" in text and "new table 1" not in text
    assert "old propagation table" not in text
    assert "| switch-over ms | 164 | 164, 170, 142 |" in text
    assert "targets met in every run: yes" in text
    assert text.count("(kept from an earlier run; Machine: date: 2026-11-26 17:33 UTC; "
                      "vspan commit: 3c894e0)") == 1
    assert "Machine: date: run 2" in text


def test_nothing_is_kept_without_a_section(tmp_path: Path) -> None:
    assert kept_part("### Migration", tmp_path / "missing.md") == []
    other = tmp_path / "RESULTS.md"
    update_section("other", "## something else", other)
    assert kept_part("### Migration", other) == []
