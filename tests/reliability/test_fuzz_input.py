"""Bad input, fuzzed with hypothesis: random recipe files (broken TOML, random keys, values of every
type) and ``--set`` values never give a traceback, only exit code 2 and one line on stderr; the
Python API's argument checks (``Pruner(...)``, the schedules) raise ValueError or TypeError with a
one-line message, never an internal error. Recipes that do validate go through the real builders
(data, model, pruner), which must accept or refuse them the same way."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib

import pytest
import torch
from faults import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import snnprune.engine
from snnprune import schedules
from snnprune.pruner import Pruner
from snnprune.recipe import FAMILIES, method_config, recipe_dir
from snnprune.recipe.schema import Recipe
from snnprune.reparam import METHODS as REGISTERED

# modest and reproducible by default; SNNPRUNE_FUZZ_EXAMPLES=2000 fuzzes deeper with fresh random inputs
EXAMPLES = int(os.environ.get("SNNPRUNE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="SNNPRUNE_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASE = tomllib.loads((recipe_dir() / "digits_ann_lats.toml").read_text())


def _keys(model, prefix="") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        kind = field.annotation
        if isinstance(kind, type) and hasattr(kind, "model_fields"):
            out += _keys(kind, prefix + name + ".")
    return out


#: every key a recipe may hold (the pruning keys of every method), a few keys inside kwargs, and
#: made-up ones
KEYS = sorted(set(_keys(Recipe))
              | {f"pruning.{k}" for c in map(method_config, REGISTERED.values()) for k in c.model_fields}
              | {f"{f.section}.{k}" for f in FAMILIES.values() if f.Config for k in f.Config.model_fields}
              | {"model.kwargs.in_channels", "model.kwargs.width", "model.kwargs.input_size", "data.kwargs.size",
                 "model.kwargs.T", "pruning.options.x", "bogus", "optim.bogus", "pruning.s_nit", "a.b.c"})

scalars = st.one_of(
    st.integers(-5, 200), st.sampled_from([0, 1, 2, -1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12),
    st.sampled_from(["sgd", "cosine", "lats", "soft_threshold", "str", "gmp", "none", "digits_dvs", "cifar10",
                     "sew_digits", "resnet50", "cpu", "cuda", "stop", "skip", "early_pruning", "dense"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["a", "x", "width", "T"]),
                                                                       inner, max_size=2)), max_leaves=4)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(d: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())


class Valid(Exception):
    """The recipe validated and the real builders accepted it."""


@pytest.fixture
def builders_only(monkeypatch, tmp_path, data_home):
    """``snnprune train`` runs the builders of the recipe (data, model, pruner) instead of training;
    the data only from the default root (a fuzzed ``data.root`` could be anywhere on this machine)."""
    monkeypatch.chdir(tmp_path)

    def train(recipe, out=None, **kwargs):
        from snnprune.build import build_datasets, build_model, build_pruner, call_with_kwargs
        from snnprune.data import dataset_info
        from snnprune.engine.families import get_family

        if recipe.data.root is None:
            _, _, info = build_datasets(recipe)
        else:
            info = call_with_kwargs("data.name", dataset_info, recipe.data.name)
        model = build_model(recipe, info)
        build_pruner(recipe, model, steps_per_epoch=2, total_steps=get_family(recipe).schedule_steps(2))
        raise Valid

    monkeypatch.setattr(snnprune.engine, "train", train)


def check_cli(argv, capsys) -> None:
    try:
        code, lines = run_main(argv, capsys)
    except Valid:
        capsys.readouterr()
        return
    assert code == 2, (argv, code, lines)
    assert len(lines) == 1 and lines[0].startswith("snnprune"), (argv, lines)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.sampled_from(['name = "x"\n[model', "epochs = \n", "a = [1,\n",
                                                              'pruning = {method = "lats"', "\x00", "[[data]]\n"])))
def test_a_recipe_file_of_random_text_is_one_line_and_exit_2(text, tmp_path, capsys, builders_only):
    path = tmp_path / "r.toml"
    path.write_bytes(text.encode("utf-8", "replace"))
    check_cli(["train", path, "--out", tmp_path / "run"], capsys)
    assert not (tmp_path / "run").exists()


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(values, st.just(...))), min_size=1, max_size=3),
       as_json=st.booleans())
def test_a_recipe_with_random_keys_and_values_is_refused_in_one_line_or_builds(edits, as_json, tmp_path, capsys,
                                                                              builders_only):
    data = json.loads(json.dumps(BASE))
    for key, value in edits:
        *parents, last = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        if value is ...:
            node.pop(last, None)  # a key removed
        else:
            node[last] = value
    path = tmp_path / ("r.json" if as_json else "r.toml")
    path.write_text(json.dumps(data) if as_json else toml_text(data))
    check_cli(["train", path, "--out", tmp_path / "run"], capsys)


raw_values = st.one_of(values.map(toml_value), st.text(max_size=15),
                       st.sampled_from(["", "[1,", "{", '"open', "1e400", "-0", "0x10", "nan", "true false", "=",
                                        "{method='str', s_init=-100}", "{method='bogus'}", "[]", "{}"]))


@FUZZ
@given(sets=st.lists(st.tuples(st.sampled_from([*KEYS, "", "model..name", ".x"]), raw_values), min_size=1, max_size=3))
def test_random_set_values_are_refused_in_one_line_or_build(sets, tmp_path, capsys, builders_only):
    argv = ["train", "digits_ann_lats", "--out", tmp_path / "run"]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    check_cli(argv, capsys)


@pytest.mark.parametrize("argv, needle", [
    (["train", "digits_ann_lats", "--set", "optim.lr=-1"], "optim.lr"),
    (["train", "digits_ann_lats", "--set", "epochs=[1,"], "epochs"),
])
def test_the_real_exit_code_is_2_with_one_line_and_no_traceback(argv, needle, tmp_path):
    """A few through a real process: the exit code the shell sees."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "snnprune", *argv, "--out", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


# -- the Python API ----------------------------------------------------------------------------
def one_line_error(call) -> None:
    try:
        call()
    except (ValueError, TypeError) as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


api_values = st.one_of(scalars, st.none(), st.lists(scalars, max_size=2), st.just(object()),
                       st.sampled_from([["0"], ["*"], "0", "*conv*", -0.5, 1.5, 0.999]))
PRUNER_KEYS = ["method", "schedule", "include", "exclude", "scope", "keep_first", "keep_last", "total_steps",
               "method_kwargs", "target_sparsity", "min_weights", "bogus"]
METHODS = ["soft_threshold", "str", "ltp", "smooth_threshold", "magnitude", "gmp", "random", "softthreshold", ""]


@FUZZ
@given(kwargs=st.dictionaries(st.sampled_from(PRUNER_KEYS), st.one_of(api_values, st.sampled_from(METHODS)),
                              max_size=4),
       schedule=st.sampled_from([None, "lats", "cubic", "target"]))
def test_pruner_arguments_are_accepted_or_refused_with_one_line(kwargs, schedule):
    if schedule == "lats":
        kwargs["schedule"] = schedules.LATS(l1=1e-4)
    elif schedule == "cubic":
        kwargs["schedule"] = schedules.Cubic(0.5, end=10)

    def build():
        pruner = Pruner(tiny(), **kwargs)
        optimizer = torch.optim.SGD(pruner.model.parameters(), lr=0.1)
        pruner.step(optimizer)
        pruner.sparsity()

    one_line_error(build)


SCHEDULES = [schedules.LATS, schedules.SLATS, schedules.PGH, schedules.Sine, schedules.Linear, schedules.Constant,
             schedules.Cubic, schedules.OneShot, schedules.TargetSparsity, schedules.RegularizationFeedback]


@FUZZ
@given(cls=st.sampled_from(SCHEDULES), args=st.lists(api_values, max_size=2),
       kwargs=st.dictionaries(st.sampled_from(["final", "l1", "total_steps", "beta", "initial", "start", "end",
                                               "every", "at", "lr", "ramp", "k", "bogus"]), api_values, max_size=3))
def test_schedule_arguments_are_accepted_or_refused_with_one_line(cls, args, kwargs):
    def build():
        s = cls(*args, **kwargs)
        if hasattr(s, "bind"):
            s.bind(10)

    one_line_error(build)
