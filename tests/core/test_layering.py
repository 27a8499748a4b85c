"""The model side's imports only go down: builder -> methods -> backbones -> inject -> modules.

Read from the source (no import needed), so a new upward import fails here with the file and line that made it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ivtune"
FLOORS = ["modules", "inject", "backbones", "methods", "builder"]  # bottom to top


def _floor(module: str) -> str | None:
    head = module.split(".")[1] if module.startswith("ivtune.") else None
    return head if head in FLOORS else None


def _imports(path: Path) -> list[tuple[int, str]]:
    package = ".".join(("ivtune", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(p for p in (base, node.module) if p)
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _files(floor: str) -> list[Path]:
    return [SRC / "builder.py"] if floor == "builder" else sorted((SRC / floor).rglob("*.py"))


@pytest.mark.parametrize("floor", FLOORS[:-1])
def test_no_upward_imports(floor):
    above = set(FLOORS[FLOORS.index(floor) + 1:])
    bad = [f"{path.relative_to(SRC)}:{line} imports {name}" for path in _files(floor)
           for line, name in _imports(path) if _floor(name) in above]
    assert not bad, "upward imports: " + "; ".join(bad)
