"""The core-size count: code lines leave out blank lines, comments and docstrings, not code."""

from __future__ import annotations

SOURCE = '''"""Module docstring,
two lines."""

import math  # a comment


def f(x):
    """Docstring."""
    # a comment line
    text = """a string that is
not a docstring"""
    return math.sqrt(x) + len(text)
'''


def test_code_lines_counts_code_and_multiline_strings_but_not_docstrings(load_bench):
    core_size = load_bench("core_size")
    assert core_size.code_lines(SOURCE) == 5   # import, def, text = (2 lines), return


def test_core_size_quick_path_counts_the_core_at_head(load_bench, capsys):
    core_size = load_bench("core_size")
    (lines, code), = core_size.main(["--quick"])["totals"].values()
    assert 0 < code < lines
    assert "snnprune/pruner.py" in capsys.readouterr().out
