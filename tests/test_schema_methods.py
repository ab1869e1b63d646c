"""A method's recipe keys come from its class: its constructor's parameters with their defaults,
or the config it names; nothing is typed twice."""

import inspect

import pytest

from snnprune.recipe import method_config
from snnprune.reparam import METHODS, method_info


def shipped_methods():
    return {name: cls for name, cls in METHODS.items() if cls.__module__.startswith("snnprune.")}


@pytest.mark.parametrize("name", sorted(shipped_methods()))
def test_recipe_defaults_are_the_constructor_defaults(name):
    cls = METHODS[name]
    config = method_config(cls)
    signature = inspect.signature(cls)
    for key in config.constructor_keys:
        assert config.model_fields[key].default == signature.parameters[key].default, (name, key)
    assert config.control == cls.control and config().method == name if not any(
        f.is_required() for f in config.model_fields.values()) else True


@pytest.mark.parametrize("name", sorted(shipped_methods()))
def test_every_shipped_method_has_a_record(name):
    info = method_info(name)
    assert info.name == name and info.cls is METHODS[name] and info.description
    assert info.config.__name__ == f"{METHODS[name].__name__}Config"


def test_a_declared_config_replaces_the_constructor_keys():
    # SoftThreshold(threshold=...) is moved by the schedule: pruning.threshold is no recipe key
    assert "threshold" not in method_config(METHODS["soft_threshold"]).model_fields
    assert {"schedule", "final_threshold", "l1"} <= set(method_config(METHODS["soft_threshold"]).model_fields)
    assert {"final_sparsity", "update_every"} <= set(method_config(METHODS["gmp"]).model_fields)
