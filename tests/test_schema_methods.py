"""The recipe schema (pydantic only) and the method registry (torch) name the same methods and
agree on every default they both state."""

import inspect

import pytest

from snnprune.recipe.schema import METHOD_CONFIGS
from snnprune.reparam import METHODS


def shipped_methods():
    return {name: cls for name, cls in METHODS.items() if cls.__module__.startswith("snnprune.")}


def test_every_shipped_method_has_a_recipe_config_and_back():
    assert set(shipped_methods()) == set(METHOD_CONFIGS) - {"none"}


@pytest.mark.parametrize("name", sorted(set(METHOD_CONFIGS) - {"none"}))
def test_recipe_defaults_equal_the_method_defaults(name):
    config = METHOD_CONFIGS[name]
    signature = inspect.signature(METHODS[name])
    shared = [p for p in signature.parameters.values() if p.name in config.model_fields]
    for param in shared:
        assert config.model_fields[param.name].default == param.default, (name, param.name)
