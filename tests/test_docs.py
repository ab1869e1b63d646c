"""The examples in the docstrings of every module of snnprune run and print what they say, and
the README's quick start runs."""

import doctest
import importlib
import os
import pkgutil

import pytest

import snnprune

#: every module of the package (``__main__`` runs the command line when imported)
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(snnprune.__path__, "snnprune.") if not m.name.endswith("__main__")
)


def test_the_public_core_modules_have_examples():
    core = ("snnprune.reparam", "snnprune.schedules", "snnprune.pruner", "snnprune.recipe", "snnprune.engine.build")
    for name in core:
        assert doctest.DocTestFinder().find(importlib.import_module(name)), name


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    module = importlib.import_module(name)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    environ = dict(os.environ)
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:  # an example that sets an environment variable does not leak into other tests
        os.environ.clear()
        os.environ.update(environ)
    assert result.failed == 0


def test_readme_quick_start_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["pruner"].sparsity().total > 0
    assert (tmp_path / "sew_resnet18_pruned.pt").exists()
