"""The package's import graph agrees with ARCHITECTURE.md: every import allowed by its table, and no circles.

The table is the documentation; this test keeps it true. It reads the source with ``ast`` (nothing is imported),
so function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "nasforge"
ROOT_UNIT = "nasforge"  # the package's own __init__.py, which re-exports the public API


def _allowed_imports() -> dict[str, set[str]]:
    """``package -> packages it may import``, from the table in ARCHITECTURE.md."""
    table: dict[str, set[str]] = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`[\w]+`", cells[0]):
            continue
        table[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    return table


def _unit_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return ROOT_UNIT if rel.name == "__init__.py" else rel.stem


def _imported_units(path: Path) -> set[str]:
    """Top-level nasforge packages/modules that ``path`` imports (relative or absolute)."""
    rel = path.relative_to(PACKAGE)
    return _units_imported_by(path.read_text(), list(rel.parts[:-1]), str(rel))


def _units_imported_by(source: str, package: list[str], rel: str) -> set[str]:
    """``package``: the package path a module's relative imports start from (``[]`` at the top level)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=rel)):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level - 1 > len(package):
                raise AssertionError(f"{rel}: relative import beyond the package")
            base = package[:len(package) - (node.level - 1)]
            mod = node.module.split(".") if node.module else []
            targets = [base + mod] if mod else [base + [a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nasforge":
            targets = [node.module.split(".")[1:]]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "nasforge"]
        for t in targets:
            out.add(t[0] if t else ROOT_UNIT)
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit_of(path)
        graph.setdefault(unit, set()).update(u for u in _imported_units(path) if u != unit)
    return graph


def test_table_covers_every_package() -> None:
    table = _allowed_imports()
    missing = sorted(set(_graph()) - set(table) - {ROOT_UNIT})
    assert not missing, f"add these to the table in ARCHITECTURE.md: {missing}"
    unknown = sorted({u for deps in table.values() for u in deps} - set(table))
    assert not unknown, f"the table allows imports of packages it does not list: {unknown}"


@pytest.mark.parametrize("unit", sorted(set(_graph()) - {ROOT_UNIT}))
def test_imports_follow_the_table(unit: str) -> None:
    allowed = _allowed_imports().get(unit, set())
    forbidden = sorted(_graph()[unit] - allowed)
    assert not forbidden, f"{unit} imports {forbidden}, which ARCHITECTURE.md does not allow (allowed: " \
                          f"{sorted(allowed)})"


def test_no_import_circles() -> None:
    graph = {u: deps - {ROOT_UNIT} for u, deps in _graph().items() if u != ROOT_UNIT}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(u: str, path: list[str]) -> None:
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(v):] + [u, v])}"
                                     if v in path else f"import circle through {u} -> {v}")
            if v not in state:
                visit(v, path + [u])
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u, [])


def test_no_module_circles_inside_genotypes() -> None:
    """The IR (core) knows none of its text formats: converters import core, never the other way round."""
    imports = _imported_units_within(PACKAGE / "genotypes" / "core.py")
    assert not imports & {"darts_text", "nb201_text", "published", "nao_seq"}, imports


def _imported_units_within(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return out


def test_checker_sees_forbidden_imports() -> None:
    """The walker is not blind: relative, absolute and function-level imports are all found."""
    source = "from ..supernets import SuperNet\nimport nasforge.strategies\ndef f():\n    from .. import viz\n"
    assert _units_imported_by(source, ["genotypes"], "genotypes/x.py") == {"supernets", "strategies", "viz"}
    assert _units_imported_by("from . import errors\n", [], "x.py") == {"errors"}
    assert not {"supernets", "strategies", "viz"} & _allowed_imports()["genotypes"]
