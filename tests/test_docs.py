"""The examples in the docstrings of every module of snnprune run and print what they say, the
README's quick start runs, and the documentation site builds with warnings as errors (a broken
reference or a docstring that does not parse fails) with every page and every registered method."""

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
    core = ("snnprune.reparam", "snnprune.schedules", "snnprune.pruner", "snnprune.recipe", "snnprune.build")
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


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The documentation built as `make docs` builds it (warnings are errors), into a tmp dir."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("html")
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(root / "docs"), str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_the_docs_build_without_warnings_and_have_every_page(built_site):
    pages = ["getting-started", "methods", "recipes", "metrics", "sensitivity", "channels", "export", "training-loops",
             "reliability", "benchmarks", "extending", "api/index"]
    for page in pages:
        assert (built_site / f"{page}.html").is_file(), page
    index = (built_site / "index.html").read_text()
    for page in pages:  # each is reachable from the front page's table of contents
        assert f'href="{page}.html' in index, page


@pytest.mark.slow
def test_the_api_reference_lists_the_pruner_and_every_registered_method(built_site):
    from snnprune.reparam import METHODS

    assert 'id="snnprune.Pruner"' in (built_site / "api" / "pruner.html").read_text()
    lightning = (built_site / "api" / "integrations.html").read_text()
    assert 'id="snnprune.integrations.lightning.PruningCallback"' in lightning
    assert 'href="integrations.html"' in (built_site / "api" / "index.html").read_text()
    methods = (built_site / "api" / "methods.html").read_text()
    # the site is built in a fresh process: it lists the package's methods, not those a test
    # module registered in this one
    shipped = {name: cls for name, cls in METHODS.items() if cls.__module__.startswith("snnprune.")}
    assert shipped
    for name, cls in shipped.items():
        assert f"<span class=\"pre\">{name}</span>" in methods, name
        assert f'id="snnprune.reparam.{cls.__name__}"' in methods or f'id="{cls.__module__}.{cls.__qualname__}"' \
            in methods, cls


def test_a_method_registered_later_appears_in_the_generated_reference():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
    try:
        from snnprune_methods import registered_methods
    finally:
        sys.path.pop(0)
    from snnprune.reparam import METHODS, Reparameterization

    class DocsProbeMethod(Reparameterization):
        name = "docs_probe_method"
        control = "learned"

        def transform(self, theta):
            return theta

        def hard_mask(self, theta):
            return theta != 0

    try:
        rows = {name: path for name, path, _ in registered_methods()}
        assert rows["docs_probe_method"] == f"{__name__}.{DocsProbeMethod.__qualname__}"
        assert set(rows) == set(METHODS)
    finally:
        METHODS.pop("docs_probe_method", None)
