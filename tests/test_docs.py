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
