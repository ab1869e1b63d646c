import json
import subprocess
import sys
from pathlib import Path

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
    assert families == {"dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization",
                        "channel_pruning"}


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
        ("optim.lr=abc", "optim.lr='abc': input should be a valid number"),
        ("optim.lr=-1", "optim.lr=-1: input should be greater than 0: add --set optim.lr=0.1"),
        ("epochs=0", "epochs=0: input should be greater than or equal to 1: add --set epochs=1"),
        ("pruning.beta=0", "pruning.beta=0: input should be greater than 0: add --set pruning.beta=0.1"),
        ("pruning.freeze_epoch=3", "unknown key 'pruning.freeze_epoch' for method 'soft_threshold' (freeze_epoch is "
                                   "a key of family 'early_pruning')"),
        ("pruning.l1=0.001", "pruning.l1=0.001 and pruning.final_threshold=0.2 are two forms of one threshold"),
        ("pruning.fixed_mask=false", "fixed_mask is a key of family 'pruning_at_initialization'"),
        ("pruning.schedule='lnear'", "pruning.schedule='lnear' is not a threshold schedule (known: lats, "
                                    "slats, pgh, sine, linear, constant): add --set pruning.schedule=linear"),
        ("family='early_prunning'", "unknown family 'early_prunning' (did you mean 'early_pruning'?)"),
        ("channels={prune_epoch=3}", "the channels section belongs to family 'channel_pruning', not "
                                     "'sparsify_during_training'"),
        # a during-training target replaces D: both together is refused
        ("pruning.target_sparsity=0.5", "pruning.final_threshold=0.2 and pruning.target_sparsity=0.5 both set the "
                                        "threshold"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(override, message):
    with pytest.raises(RecipeError) as info:
        load_recipe("digits_snn_lats", [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "pruning, message",
    [
        ("{method='soft_threshold', final_threshold=0.1, s_init=-5}",
         "unknown key 'pruning.s_init' for method 'soft_threshold' (s_init is a key of method 'str')"),
        ("{method='soft_threshold', final_treshold=0.1}",
         "unknown key 'pruning.final_treshold' (did you mean 'pruning.final_threshold'?)"),
        ("{method='str', final_threshold=0.1}",
         "unknown key 'pruning.final_threshold' for method 'str' (final_threshold is a key of method "
         "'soft_threshold')"),
        ("{method='str', s_int=-5}", "unknown key 'pruning.s_int' (did you mean 'pruning.s_init'?)"),
        ("{method='ltp', temprature=2}",
         "unknown key 'pruning.temprature' (did you mean 'pruning.temperature'?)"),
        ("{method='ltp', beta=2}", "unknown key 'pruning.beta' for method 'ltp' (beta is a key of method"),
        ("{method='smooth_threshold', threshold_regularization=1}",
         "unknown key 'pruning.threshold_regularization' (did you mean 'pruning.threshold_reg'?)"),
        ("{method='magnitude', target_sparsity=0.5, schedule='lats'}",
         "unknown key 'pruning.schedule' for method 'magnitude' (schedule is a key of method 'soft_threshold')"),
        ("{method='magnitude'}", "missing key 'pruning.target_sparsity'"),
        ("{method='gmp', final_sparsity=0.9, update_evry=10}",
         "unknown key 'pruning.update_evry' (did you mean 'pruning.update_every'?)"),
        ("{method='gmp', final_sparsity=0.5, initial_sparsity=0.6}",
         "pruning.initial_sparsity=0.6 must not exceed pruning.final_sparsity=0.5: add --set "
         "pruning.initial_sparsity=0.0"),
        ("{method='gmp', final_sparsity=0.5, end_epoch=20}",
         "pruning.end_epoch=20 must not exceed epochs=12: add --set pruning.end_epoch=12"),
        ("{method='random', target_sparsity=1.5}", "pruning.target_sparsity=1.5: input should be less than 1"),
        ("{method='sot_threshold', final_threshold=0.1}",
         "unknown pruning method 'sot_threshold' (did you mean 'soft_threshold'?)"),
        ("{method='none'}", "pruning.method='none' does not prune, family 'sparsify_during_training' does: add "
                           "--set pruning.method=soft_threshold"),
    ],
)
def test_each_method_takes_only_its_own_keys(pruning, message):
    with pytest.raises(RecipeError) as info:
        load_recipe("digits_snn_lats", [f"pruning={pruning}"])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "pruning, label",
    [
        ("{method='str', s_init=-5}", "str (learned)"),
        ("{method='ltp', l0=0.1, temperature=2, tau_init=0.01, window=10}", "ltp (learned)"),
        ("{method='smooth_threshold', beta=5, threshold_reg=1e-3, t_init=0.01}", "smooth_threshold (learned)"),
        ("{method='magnitude', target_sparsity=0.5}", "magnitude / one-shot"),
        ("{method='random', target_sparsity=0.5}", "random / one-shot"),
        ("{method='gmp', final_sparsity=0.9, start_epoch=1, end_epoch=10, update_every=5}", "gmp / cubic"),
        ("{method='Soft-Threshold', l1=1e-4}", "soft_threshold / lats"),
        ("{method='toy_recipe', a=1, final_threshold=0.1}", "toy_recipe / lats"),
        ("{method='toy_recipe_learned'}", "toy_recipe_learned (learned)"),
    ],
)
def test_every_method_config_validates_and_round_trips(pruning, label, tmp_path, toy_methods):
    from snnprune.report import method_label

    recipe = load_recipe("digits_snn_lats", [f"pruning={pruning}"])
    assert method_label(recipe) == label
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())
    assert load_recipe(path) == recipe


def test_family_keys_stay_with_their_family():
    early = load_recipe("digits_snn_early")
    assert early.pruning.freeze_epoch == 6
    pai = load_recipe("digits_snn_pai")
    assert (pai.pruning.target_sparsity, pai.pruning.fixed_mask) == (0.8, True)  # fixed_mask defaults to True
    with pytest.raises(RecipeError, match="pruning.final_threshold=0.1 is not used by pruning_at_initialization"):
        load_recipe("digits_snn_pai", ["pruning.final_threshold=0.1"])
    with pytest.raises(RecipeError, match="pruning.method='str' learns its own mask"):
        load_recipe("digits_snn_pai", ["pruning={method='str', target_sparsity=0.5}"])
    # magnitude's target sparsity is its own key, whatever the family
    assert load_recipe("digits_snn_lats", ["pruning={method='magnitude', target_sparsity=0.5}"]).pruning.target_sparsity


@pytest.fixture(scope="module")
def toy_methods():
    """Two methods of a user's module: keys from their constructors, no config class."""
    from snnprune.reparam import Reparameterization

    class ToyRecipe(Reparameterization):
        name = "toy_recipe"
        control = "threshold"

        def __init__(self, a: int = 0) -> None:
            super().__init__()

    class ToyRecipeLearned(Reparameterization):
        name = "toy_recipe_learned"
        control = "learned"

    yield ToyRecipe, ToyRecipeLearned
    from snnprune.reparam import METHODS

    METHODS.pop("toy_recipe"), METHODS.pop("toy_recipe_learned")


def test_a_method_registered_after_import_validates_with_its_constructor_keys(toy_methods):
    recipe = load_recipe("digits_snn_lats", ["pruning={method='toy_recipe', a=3, final_threshold=0.1}"])
    assert recipe.pruning.kwargs() == {"a": 3}
    with pytest.raises(RecipeError, match="pruning.a='x': input should be a valid integer"):
        load_recipe("digits_snn_lats", ["pruning={method='toy_recipe', a='x', final_threshold=0.1}"])
    with pytest.raises(RecipeError, match="unknown key 'pruning.b' for method 'toy_recipe'"):
        load_recipe("digits_snn_lats", ["pruning={method='toy_recipe', b=1, final_threshold=0.1}"])
    # the old form of a registered method's own arguments still loads
    old = load_recipe("digits_snn_lats", ["pruning={method='toy_recipe', options={a=2}, final_threshold=0.1}"])
    assert old.pruning.kwargs() == {"a": 2}


LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_run"


def test_a_recipe_saved_by_the_flat_schema_still_loads():
    """recipe.json of a run made at 7f94dc1: every old pruning key with its default (s_init,
    fixed_mask, ... on a LATS recipe); the ones that are not the method's are dropped."""
    saved = json.loads((LEGACY / "recipe.json").read_text())
    assert saved["pruning"]["s_init"] == -3200.0 and saved["pruning"]["fixed_mask"] is True
    recipe = load_recipe(LEGACY / "recipe.json")
    assert type(recipe.pruning).__name__ == "SoftThresholdConfig"
    assert recipe == load_recipe("digits_snn_lats", ["epochs=1", "data.limit=64", "batch_size=32", "optim.momentum=0"])
    # a hand-written section is not migrated: a foreign key is reported even with the old default
    with pytest.raises(RecipeError, match="unknown key 'pruning.s_init'"):
        load_recipe("digits_snn_lats", ["pruning.s_init=-3200.0"])
    # an old STR and an old dense section
    for method, extra in (("str", {}), ("none", {})):
        old = {**saved["pruning"], "method": method, "final_threshold": None, **extra}
        data = {**saved, "pruning": old, "family": "dense" if method == "none" else saved["family"]}
        assert load_recipe(data).pruning.method == method


def test_the_recipe_package_imports_pydantic_only():
    """snnprune.recipe loads with torch made unimportable, and validates every family's keys and
    rules (a method's keys come from its class, on the torch side)."""
    code = (
        "import sys, types; sys.modules['torch'] = None; "
        f"pkg = types.ModuleType('snnprune'); pkg.__path__ = [{str(Path(__file__).parents[1] / 'snnprune')!r}]; "
        "sys.modules['snnprune'] = pkg; "
        "from snnprune.recipe import load_recipe; print(load_recipe('digits_snn_channels').channels.prune_epoch); "
        "print(load_recipe('digits_snn_dense').pruning.label)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "dense"]
    recipe_dir = Path(__file__).parents[1] / "snnprune" / "recipe"
    assert not [p for p in recipe_dir.glob("*.py") if "import torch" in p.read_text()]


def test_family_rules():
    with pytest.raises(RecipeError, match="pruning.beta=1.0 does not prune early: .* add --set pruning.beta=0.1$"):
        load_recipe("digits_snn_early", ["pruning.beta=1.0"])
    with pytest.raises(RecipeError, match=r"pruning.freeze_epoch=12 must be between 1 and epochs - 1 .*\(epochs=12\): "
                       "add --set pruning.freeze_epoch=11$"):
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


def test_the_key_reference_names_every_key_a_recipe_may_hold(toy_methods):
    """docs/recipes.md's key reference is generated: every key of every section, every registered
    method (a user's too) and every family is in its table, and nothing else is."""
    import re

    from snnprune.recipe import FAMILIES, method_config
    from snnprune.recipe.reference import recipe_reference
    from snnprune.recipe.schema import Recipe
    from snnprune.reparam import METHODS
    from snnprune.schedules import THRESHOLD_SCHEDULES

    text = recipe_reference()
    tables = {m.group(1): set(re.findall(r"^\| `(\w+)` \|", m.group(2), flags=re.M))
              for m in re.finditer(r"^### (.+?)\n(.*?)(?=^### |\Z)", text, flags=re.M | re.S)}
    sections = ("model", "data", "optim", "lr_schedule")
    assert tables["Top-level keys"] == set(Recipe.model_fields) - {*sections, "pruning"}
    for name in sections:
        assert tables[f"`[{name}]`"] == set(Recipe.model_fields[name].annotation.model_fields)
    shared = tables["`[pruning]`: every method"]
    for name, cls in METHODS.items():
        assert shared | tables[f'`[pruning]` with `method = "{name}"`'] == set(method_config(cls).model_fields)
    for family in FAMILIES.values():
        if family.Config is not None:
            where = "pruning" if family.section == "pruning" else family.section
            assert tables[f'`[{where}]` with `family = "{family.name}"`'] == set(family.Config.model_fields)
    assert "toy_recipe" in text and "channel_pruning" in text
    assert all(f"- `{name}`:" in text for name in THRESHOLD_SCHEDULES)


def test_cli_lists_the_registered_methods(toy_methods, capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "pruning methods" in out and "toy_recipe" in out and "soft_threshold" in out


OLD_DUMPS = Path(__file__).resolve().parent / "fixtures" / "recipes_before_registries.json"


@pytest.mark.parametrize("name", sorted(json.loads(OLD_DUMPS.read_text())))
def test_a_recipe_json_written_before_the_registries_still_loads(name):
    """recipe.json as the schema of per-method config classes wrote it (every family key in every
    pruning section, a channels table of null) loads with every value it held; only nulls go."""
    saved = json.loads(OLD_DUMPS.read_text())[name]
    loaded = load_recipe(saved).model_dump()

    def flat(d, prefix=""):
        return {k2: v2 for k, v in d.items()
                for k2, v2 in (flat(v, f"{prefix}{k}.").items() if isinstance(v, dict) and k != "kwargs"
                               else [(prefix + k, v)])}

    before, after = flat(saved), flat(loaded)
    assert {k: v for k, v in before.items() if k in after} == {k: after[k] for k in before if k in after}
    assert all(v is None for k, v in before.items() if k not in after), name
    # no key appeared with a value: keys added since (pruning.reach, pruning.allocation) are unset
    assert all(after[k] is None for k in set(after) - set(before)), name


def test_one_families_registry_holds_the_engines_classes():
    import snnprune.engine
    from snnprune.engine.families import EarlyPruning, Family
    from snnprune.recipe import FAMILIES

    assert snnprune.engine.FAMILIES is FAMILIES
    assert FAMILIES["early_pruning"] is EarlyPruning and issubclass(EarlyPruning, Family)
    assert set(FAMILIES) >= {"dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization",
                             "channel_pruning"}


def test_a_threshold_schedule_added_to_the_registry_is_one_a_recipe_may_name():
    from types import SimpleNamespace

    from snnprune import schedules

    class Halfway(schedules.Linear):
        """Linear, but to half of D."""

        def __init__(self, final, total_steps=None):
            super().__init__(final / 2, total_steps)

    schedules.THRESHOLD_SCHEDULES["halfway"] = Halfway
    try:
        recipe = load_recipe("digits_snn_lats", ["pruning.schedule='halfway'"])
        ctx = SimpleNamespace(schedules=schedules, lr=None, steps_per_epoch=1, total_steps=10,
                              family=recipe.family)
        schedule = recipe.pruning.spec(ctx).schedule
        assert type(schedule) is Halfway and recipe.pruning.label == "soft_threshold / halfway"
    finally:
        del schedules.THRESHOLD_SCHEDULES["halfway"]
    with pytest.raises(RecipeError, match="pruning.schedule='halfway' is not a threshold schedule"):
        load_recipe("digits_snn_lats", ["pruning.schedule='halfway'"])
