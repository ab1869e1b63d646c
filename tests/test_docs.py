"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["snnprune.reparam", "snnprune.schedules", "snnprune.pruner"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
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
