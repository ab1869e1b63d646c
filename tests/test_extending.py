"""A method, a data set and a recipe family added from a module of the user's own: the code of
docs/extending.md, written to a file outside the package, trains through a recipe dict."""

import importlib
import re
import sys
from pathlib import Path

import pytest

from snnprune.data import DATASETS
from snnprune.recipe import FAMILIES, RecipeError, load_recipe
from snnprune.reparam import METHODS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def section_code(title: str) -> str:
    """The Python blocks of the section ``## title`` of docs/extending.md."""
    text = DOCS.read_text()
    body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", body, flags=re.S))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """docs/extending.md's method, data set and family as the module ``my_extensions``; the
    registries are restored afterwards."""
    code = "\n".join(section_code(t) for t in ("A method", "A data set", "A recipe family"))
    (tmp_path / "my_extensions.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(METHODS), dict(DATASETS), dict(FAMILIES)
    module = importlib.import_module("my_extensions")
    yield module
    sys.modules.pop("my_extensions", None)
    for registry, before in zip((METHODS, DATASETS, FAMILIES), saved, strict=True):
        registry.clear()
        registry.update(before)


def test_a_users_method_data_set_and_family_train_from_a_recipe_dict(user_module, tmp_path, monkeypatch):
    assert METHODS["half_shrink"] is user_module.HalfShrink
    assert DATASETS["bars"].builder is user_module.bars
    assert FAMILIES["freeze_at_sparsity"] is user_module.FreezeAtSparsity
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(section_code("Training them from a recipe"), scope)
    recipe, result = scope["recipe"], scope["result"]

    assert recipe.pruning.kwargs() == {"strength": 1.0} and recipe.pruning.label == "half_shrink / linear"
    first, last = result.history
    assert first["threshold"] == pytest.approx(0.025)  # the linear schedule, halfway to D = 0.05
    assert first["sparsity"] >= 0.01  # the family froze the mask at the end of the first epoch...
    assert last["sparsity"] == first["sparsity"]  # ...so the second epoch pruned nothing more
    assert load_recipe(tmp_path / "runs" / "bars_half_shrink" / "recipe.json") == recipe


def test_a_users_keys_are_checked_like_the_shipped_ones(user_module):
    base = {"name": "x", "family": "freeze_at_sparsity", "epochs": 2, "batch_size": 8,
            "model": {"name": "sew_digits"}, "data": {"name": "bars"}}
    ok = {"method": "half_shrink", "final_threshold": 0.05, "freeze_at": 0.5}
    assert load_recipe({**base, "pruning": ok}).pruning.freeze_at == 0.5
    cases = [
        ({**ok, "strenght": 2}, "unknown key 'pruning.strenght' (did you mean 'pruning.strength'?)"),
        ({**ok, "strength": "x"}, "pruning.strength='x': input should be a valid number"),
        ({**ok, "method": "half_shrnk"}, "unknown pruning method 'half_shrnk' (did you mean 'half_shrink'?)"),
        ({**ok, "freeze_at": 1.5}, "pruning.freeze_at=1.5: input should be less than 1"),
        ({k: v for k, v in ok.items() if k != "freeze_at"}, "missing key 'pruning.freeze_at'"),
    ]
    for pruning, message in cases:
        with pytest.raises(RecipeError) as info:
            load_recipe({**base, "pruning": pruning})
        assert message in str(info.value)
    with pytest.raises(RecipeError, match="freeze_at_sparsity needs epochs >= 2"):
        load_recipe({**base, "epochs": 1, "pruning": ok})
    with pytest.raises(RecipeError, match="freeze_at is a key of family 'freeze_at_sparsity'"):
        load_recipe({**base, "family": "sparsify_during_training", "pruning": ok})
