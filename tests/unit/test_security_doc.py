"""docs/security.md's endpoint table is the access table of the code, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from vspan.api.access import ACCESS
from vspan.control.roles import Permission, roles_with

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROW = re.compile(r"^\| `(?P<method>[A-Z]+) (?P<path>/[^`]*)` \| (?P<perm>[a-z]+) \| "
                 r"(?P<roles>[^|]+) \| (?P<action>[^|]+) \|(?P<extra>[^|]*)\|$")


def doc_rows() -> dict[tuple[str, str], tuple[str, str, str, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            key = (m["method"], m["path"])
            assert key not in rows, f"docs/security.md lists {key} twice"
            rows[key] = (m["perm"], m["roles"].strip(), m["action"].strip(), m["extra"].strip())
    return rows


def test_the_documented_table_is_the_code_table() -> None:
    rows = doc_rows()
    assert set(rows) == set(ACCESS), (f"missing in the doc: {set(ACCESS) - set(rows)}; "
                                      f"not in the code: {set(rows) - set(ACCESS)}")
    for key, rule in ACCESS.items():
        perm, roles, action, extra = rows[key]
        assert perm == rule.permission.value, key
        if rule.permission is Permission.PUBLIC:
            assert roles == "anyone", key
        elif rule.permission is Permission.IDENTIFIED:
            assert roles == "any identity", key
        else:
            assert roles == ", ".join(r.value for r in roles_with(rule.permission)), key
        assert action == (f"`{rule.action}`" if rule.action else "—"), key
        assert extra == (rule.extra or (f"only in `{rule.only_in}`" if rule.only_in else "")), key
