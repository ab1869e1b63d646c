"""The package's import graph, read from the source: no module imports itself through others, and
report/ and export/ read run folders through snnprune.runs, never the engine.

Imports at module level and inside functions count. Imports under ``if TYPE_CHECKING:`` never
run, so the package-wide check leaves them out; the engine is held to the stricter rule (its
``Run`` and the hooks that receive it once named each other that way). An edge goes to the module
named, not to the packages above it (importing ``snnprune.runs.folder`` runs
``snnprune/__init__.py`` too, but that is Python's package machinery, not a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import snnprune

PACKAGE = Path(snnprune.__file__).resolve().parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict, annotations: bool) -> set[str]:
    """The modules of the package that ``name`` imports anywhere in its source (with
    ``annotations``, also those under ``if TYPE_CHECKING:``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for statement in node.body for n in ast.walk(statement))
    out = set()
    for node in ast.walk(tree):
        if id(node) in type_only and not annotations:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from .pkg import mod` imports the module pkg.mod
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {m for m in out if m in known and m != name}


def graph(annotations: bool = False) -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known, annotations) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_graph_sees_relative_lazy_and_annotation_only_imports():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    g = graph()
    assert "snnprune.runs.checkpoint" in g["snnprune.runs.folder"]  # from .checkpoint import ...
    assert "snnprune.build" in g["snnprune.runs.model"]  # an import inside a function
    assert "snnprune.engine.run" in g["snnprune.engine.families"]
    assert "snnprune.recipe.schema" in graph(annotations=True)["snnprune.recipe.methods"]  # under TYPE_CHECKING
    assert "snnprune.recipe.schema" not in g["snnprune.recipe.methods"]


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_the_engine_has_no_import_cycle_even_through_annotations():
    g = graph(annotations=True)
    engine = {name: {m for m in edges if m.startswith("snnprune.engine")}
              for name, edges in g.items() if name.startswith("snnprune.engine")}
    assert cycles(engine) == []


def test_report_and_export_read_runs_without_the_engine():
    g = graph()
    for name in g:
        if name.startswith(("snnprune.report", "snnprune.export")):
            engine = sorted(m for m in reachable(g, name) if m.startswith("snnprune.engine"))
            assert engine == [], f"{name} reaches {engine}"
    assert "snnprune.runs" in reachable(g, "snnprune.report.runs")
    assert "snnprune.runs" in reachable(g, "snnprune.export.run")
