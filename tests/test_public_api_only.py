"""snnprune uses torch and CPython through their public API only: no ``torch._*`` module, no
``sys.getrefcount``, and no private attribute (``x._name``) of an object snnprune does not define.

A private name counts as snnprune's own when snnprune defines it somewhere (a ``def``/``class``,
an assignment to ``self._name`` or ``x._name``, a module-level ``_name``). Anything else is
torch's or CPython's and may change without notice; the allow-list below names each exception
that remains, why, and the public API that would replace it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "snnprune"

#: private attributes read anyway: (file relative to snnprune/, attribute) -> why, and the public way
ALLOWED: dict[tuple[str, str], str] = {
    ("data/neuromorphic.py", "_folder_contains_at_least_n_files_of_type"): "tonic's (not torch's) check that a "
    "data set is on disk, the one its own data sets use; public: none in tonic",
}

#: names that are never allowed, whoever defines them (the introspection the core must not do)
FORBIDDEN = {"getrefcount", "_use_count", "_version", "_is_view", "_base", "_cdata", "_storage_Use_Count",
             "_found_inf_per_device", "_per_optimizer_states", "_getframe"}


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _own_private_names(trees: dict[Path, ast.AST]) -> set[str]:
    # snnprune's own private modules and packages (_validation, export/_common, _ops)
    names = {path.stem for path in trees} | {p.name for path in trees for p in path.relative_to(PACKAGE).parents}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)  # register_buffer("_name", ...), setattr(x, "_name", ...)
    return {n for n in names if n.startswith("_")}


def _foreign_private_reads() -> list[str]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in _files()}
    own = _own_private_names(trees)
    found = []
    for path, tree in trees.items():
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.ImportFrom):
                names = [part for part in (node.module or "").split(".")] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [part for a in node.names for part in a.name.split(".")]
            for name in names:
                dunder = name.startswith("__") and name.endswith("__")
                foreign = name.startswith("_") and not dunder and name not in own
                if name in FORBIDDEN or (foreign and (rel, name) not in ALLOWED):
                    found.append(f"{rel}:{node.lineno}: {name}")
    return found


def test_snnprune_reads_no_private_attribute_of_torch_or_cpython():
    assert _foreign_private_reads() == []


def test_every_allowed_exception_is_still_needed():
    trees = {path: ast.parse(path.read_text(), str(path)) for path in _files()}
    used = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path, tree in trees.items() for node in ast.walk(tree)
        for name in ([node.attr] if isinstance(node, ast.Attribute) else
                     [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else [])
    }
    assert [key for key in ALLOWED if key not in used] == []


def test_the_check_finds_what_it_forbids(tmp_path, monkeypatch):
    fake = tmp_path / "snnprune"
    fake.mkdir()
    (fake / "bad.py").write_text(
        "import sys\nimport torch\n"
        "def f(t):\n    return sys.getrefcount(t), t._version, torch._C._get_tracing_state(), t._use_count()\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = _foreign_private_reads()
    for name in ("getrefcount", "_version", "_C", "_get_tracing_state", "_use_count"):
        assert any(line.endswith(f": {name}") for line in found), name
