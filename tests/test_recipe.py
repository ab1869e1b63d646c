import json
import subprocess
import sys

import pytest

from snnprune.cli import main
from snnprune.recipe import RecipeError, list_recipes, load_recipe, parse_override


@pytest.mark.parametrize("path", list_recipes(), ids=lambda p: p.stem)
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def test_shipped_recipes_cover_each_family_for_digits_snn_and_twin():
    names = {p.stem for p in list_recipes()}
    for kind in ("snn", "ann"):
        for family in ("dense", "lats", "early", "pai"):
            assert f"digits_{kind}_{family}" in names
    families = {load_recipe(p).family for p in list_recipes()}
    assert families == {"dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization"}


def test_overrides_are_read_as_toml_values():
    assert parse_override("optim.lr=0.05") == (["optim", "lr"], 0.05)
    assert parse_override("model.twin=true") == (["model", "twin"], True)
    assert parse_override("data.name=digits") == (["data", "name"], "digits")
    r = load_recipe("digits_snn_lats", ["epochs=3", "pruning.final_threshold=0.1"])
    assert (r.epochs, r.pruning.final_threshold) == (3, 0.1)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optim.lr=abc", "optim.lr: input should be a valid number"),
        ("optim.lr=-1", "optim.lr: input should be greater than 0"),
        ("epochs=0", "epochs: input should be greater than or equal to 1"),
        ("pruning.beta=0", "pruning.beta: input should be greater than 0"),
        ("pruning.freeze_epoch=3", "freeze_epoch belongs to family 'early_pruning'"),
        ("pruning.l1=0.001", "exactly one of pruning.final_threshold"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(override, message):
    with pytest.raises(RecipeError) as info:
        load_recipe("digits_snn_lats", [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_family_rules():
    with pytest.raises(RecipeError, match="early_pruning uses"):
        load_recipe("digits_snn_early", ["pruning.beta=1.0"])
    with pytest.raises(RecipeError, match="freeze_epoch between"):
        load_recipe("digits_snn_early", ["pruning.freeze_epoch=12"])
    with pytest.raises(RecipeError, match="target_sparsity"):
        load_recipe("digits_snn_pai", ["pruning.target_sparsity=1.0"])


def test_json_recipe_round_trip(tmp_path):
    recipe = load_recipe("digits_snn_lats")
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())
    assert load_recipe(path) == recipe


def test_unknown_recipe_name_suggests_the_closest():
    with pytest.raises(RecipeError, match="did you mean 'digits_snn_lats'"):
        load_recipe("digits_snn_lat")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snnprune", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_process_exits_2_with_one_line_on_bad_input():
    proc = run_cli("train", "digits_snn_lats", "--set", "optim.lrr=0.1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "snnprune: bad recipe: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "digits_snn_lats", "--set", "optim.lrr=0.1"], "did you mean 'optim.lr'"),
        (["train", "digits_snn_lats", "--set", "optim.lr=abc"], "optim.lr"),
        (["train", "digits_snn_lats", "--set", "optim.momentum=1.5"], "optim.momentum"),
        (["train", "no_such_recipe"], "no recipe file"),
        (["train"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_cli_lists_recipes(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "digits_snn_lats" in out and "early_pruning" in out


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["recipes", "--help"], ["demo", "--help"]])
def test_cli_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 0 and "usage" in capsys.readouterr().out
