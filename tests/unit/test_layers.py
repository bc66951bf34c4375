"""The layers: a module never imports one of a higher layer (or a sibling package of its
own layer). packet -> config -> ports -> datapath -> policy, capture, mirror -> analysis
-> control -> api -> cli -> demos (``vspan demo`` is their entry point)."""

from __future__ import annotations

import ast
from pathlib import Path

import vspan

RANKS = {
    "packet": 0,
    "config": 1,  # checks mirror filters with the packet layer's filter language
    "ports": 2,
    "datapath": 3,
    "policy": 4, "capture": 4, "mirror": 4,
    "analysis": 5,
    "control": 6,
    "api": 7,
    "cli": 8,  # the command line runs the API server (vspan up)
    "demos": 9,  # the demos drive the switch through vspan commands (cli.main in-process)
}
# the one way down a layer that is allowed: `vspan demo` is the demos' entry point
ENTRY_POINTS = {("cli/demo_cmd.py", "demos")}
SRC = Path(vspan.__file__).parent


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "vspan" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every ``vspan`` import of a file, wherever it stands (functions
    and TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("vspan"))
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("vspan")):
            out.append((node.lineno, node.module))
    return out


def violations() -> list[str]:
    """Every import that goes up a layer or across to a sibling package of the same layer."""
    bad: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own not in RANKS:
            continue
        for line, module in _imports(path):
            other = _package(module)
            if other is None or other == own or other not in RANKS:
                continue
            if (rel.as_posix(), other) in ENTRY_POINTS:
                continue
            if RANKS[other] >= RANKS[own]:
                bad.append(f"src/vspan/{rel}:{line} ({own}, layer {RANKS[own]}) imports "
                           f"{module} ({other}, layer {RANKS[other]})")
    return bad


def test_every_package_has_a_layer() -> None:
    packages = {p.name.removesuffix(".py") for p in SRC.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists())
                or (p.suffix == ".py" and p.name != "__init__.py")}
    assert packages <= set(RANKS), f"give these a layer: {sorted(packages - set(RANKS))}"


def test_no_import_goes_up_a_layer() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker is not blind: an upward import in a function body is found."""
    f = tmp_path / "x.py"
    f.write_text("def f() -> None:\n    from vspan.policy.stage import PolicyStage\n")
    assert _imports(f) == [(2, "vspan.policy.stage")]
