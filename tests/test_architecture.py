"""The layers written in pyproject.toml ([tool.importlinter]) hold: no module imports a layer above it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. the import circles."""
    modules = sorted(graph.modules)
    edges = {m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in edges[module]:
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            group = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(group) > 1:
                found.append(group)

    for module in modules:
        if module not in order:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others():
    # grimp reads every import statement, those inside functions included: a function-level import that
    # dodges a circle at run time is still a circle here.
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter")
    sys.path.insert(0, str(ROOT / "src"))
    try:
        graph = grimp.build_graph("pneumo")
    finally:
        sys.path.remove(str(ROOT / "src"))
    assert _cycles(graph) == []


def test_cycle_finder_sees_a_circle():
    class Graph:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[module]

    assert [sorted(group) for group in _cycles(Graph())] == [["a", "b"]]


def test_modules_and_functions_stay_small():
    # Read in one sitting: no file over 350 lines, no function over 50 (issue 27's limits).
    import ast

    too_long = []
    for path in sorted((ROOT / "src" / "pneumo").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT / "src").as_posix()
        if text.count("\n") > 350:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 50:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
