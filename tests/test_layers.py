"""The layering rule, checked on every import statement of the first-party packages.

Top to bottom: nasfarm (the command and composition) -> scheduler -> workers -> db -> farm. A
module may import its own layer and the layers below it, never one above; and the domain layer
(farm) and the job table (db) stay free of Ray, and farm of SQL too. Imports inside functions
count as much as module-level ones: a lazy import that runs upward is still an upward arrow.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["farm", "db", "workers", "scheduler", "nasfarm"]  # bottom to top
# Third-party packages a layer must not import, with the reason.
FORBIDDEN = {
    "farm": {"sqlalchemy": "the domain has no SQL", "ray": "the domain has no Ray",
             "alembic": "the domain has no SQL", "psycopg2": "the domain has no SQL"},
    "db": {"ray": "the job table has no Ray", "torch": "the job table does not train"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module name) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def upward_imports() -> list[str]:
    problems = []
    for rank, layer in enumerate(LAYERS):
        above = set(LAYERS[rank + 1 :])
        for path in _modules(layer):
            for line, name in _imports(path):
                where = f"{path.relative_to(ROOT)}:{line}"
                if name in above:
                    problems.append(f"{where} imports {name} (a layer above {layer})")
                reason = FORBIDDEN.get(layer, {}).get(name)
                if reason:
                    problems.append(f"{where} imports {name}: {reason}")
    return problems


def module_cycles(layer: str) -> list[list[str]]:
    """Import cycles between the modules of one package (module-level and lazy imports alike)."""
    graph: dict[str, set[str]] = {}
    for path in _modules(layer):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = targets
    edges = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return cycles


def test_every_layer_exists():
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file(), layer


def test_no_import_runs_up_a_layer():
    assert upward_imports() == []


@pytest.mark.parametrize("layer", LAYERS)
def test_no_import_cycle_inside_a_layer(layer):
    assert module_cycles(layer) == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule is not vacuous: a planted upward import (even a lazy one) is reported."""
    fake = tmp_path / "farm"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from db.queue import JobQueue\n    import ray\n")
    for layer in LAYERS[1:]:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = upward_imports()
    assert any("farm/bad.py:2 imports db" in p for p in problems), problems
    assert any("farm/bad.py:3 imports ray" in p for p in problems), problems
    (fake / "a.py").write_text("from farm.b import x\n")
    (fake / "b.py").write_text("def x():\n    from farm.a import y\n")
    assert module_cycles("farm") == [["farm.a", "farm.b", "farm.a"]]
