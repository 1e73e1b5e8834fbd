"""The house rules of the code's shape, checked on every run: no import
cycle between our modules (imports made only for type checking count too:
they are a dependency a reader follows), no function over 60 lines, no
module of the service over 450 lines (split one along its seams)."""

from __future__ import annotations

import ast
from pathlib import Path

from .helpers import ROOT

FUNCTION_MAX, MODULE_MAX = 60, 450


def modules(package: str) -> dict[str, Path]:
    base = ROOT / package
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that module `name` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module in known and module != name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph`, as the modules along it; None if there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle():
    known = modules("app") | modules("bench")
    graph = {name: imported(name, path, known) for name, path in known.items()}
    # A package imports its own modules; that is not a cycle between stages.
    graph = {name: {m for m in graph[name] if not m.startswith(name + ".")} for name in graph}
    assert cycle(graph) is None


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_over_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for package in ("app", "bench", "tests", "scripts")
        for path in modules(package).values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > FUNCTION_MAX
    ]
    assert long == []


def test_no_module_over_450_lines():
    long = [
        f"{path.relative_to(ROOT)} ({count})"
        for package in ("app", "bench")
        for path in modules(package).values()
        if (count := len(path.read_text().splitlines())) > MODULE_MAX
    ]
    long += [
        f"{path.relative_to(ROOT)} ({count})"
        for path in sorted((ROOT / "app").rglob("*.js"))
        if (count := len(path.read_text().splitlines())) > MODULE_MAX
    ]
    assert long == []
