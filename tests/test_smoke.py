"""`snnprune train RECIPE --smoke`: every shipped recipe runs each of its phases for one epoch of a
few small batches, on its own data where this machine has it and on a stand-in where not."""

from __future__ import annotations

import json

import pytest
import torch

from snnprune.cli import main
from snnprune.recipe import list_recipes, load_recipe
from snnprune.recipe.smoke import SMOKE_BATCH_SIZE, SMOKE_BATCHES, smoke_settings

#: ResNet-50, SEW-ResNet-18, MobileNet and ResNet-56: the slowest smoke runs (every epoch saves and checks
#: the large net); make test runs them, -m "not smoke_heavy" leaves them out of a quick run
SLOW = {"imagenet_resnet50_channels", "imagenet_resnet50_gmp", "imagenet_resnet50_lats", "imagenet_resnet50_ltp",
        "imagenet_resnet50_str", "imagenet_sew_resnet18_channels", "imagenet_sew_resnet18_lats",
        "imagenet_mobilenet_v1_lats", "cifar10_resnet56_channels"}
RECIPES = [pytest.param(p, id=p.stem, marks=[pytest.mark.slow, pytest.mark.smoke_heavy] if p.stem in SLOW else [])
           for p in list_recipes()]


def phases(settings: dict) -> list[tuple[str, int]]:
    """The recipe's inner epoch boundaries in order, as (key, epoch) pairs."""
    found = []

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif key != "epochs" and (key.endswith(("_epoch", "_epochs")) or key == "milestones"):
                for v in value if isinstance(value, list) else [value]:
                    if 0 < v < settings["epochs"]:
                        found.append((prefix + key, v))

    walk(settings, "")
    return sorted(found, key=lambda kv: kv[1])


@pytest.mark.parametrize("path", list_recipes(), ids=lambda p: p.stem)
def test_the_smoke_version_keeps_every_phase_for_one_epoch_each(path):
    import tomllib

    settings = tomllib.loads(path.read_text())
    smoke = smoke_settings(settings)
    before, after = phases(settings), phases(smoke)
    assert [k for k, _ in after] == [k for k, _ in before]  # no phase lost, none reordered
    distinct = sorted({v for _, v in before})
    assert smoke["epochs"] == len(distinct) + 1
    assert [v for _, v in after] == [distinct.index(v) + 1 for _, v in before]
    load_recipe(path, smoke=True)  # and it is a valid recipe
    assert smoke["batch_size"] <= SMOKE_BATCH_SIZE and smoke["data"]["limit"] == SMOKE_BATCHES * smoke["batch_size"]


def test_the_smoke_version_of_a_run_without_phases_is_one_epoch_and_overrides_come_after():
    r = load_recipe("digits_snn_lats", ["batch_size=2"], smoke=True)
    limit = SMOKE_BATCHES * SMOKE_BATCH_SIZE  # set before the override
    assert (r.epochs, r.batch_size, r.data.limit, r.data.workers) == (1, 2, limit, 0)
    assert load_recipe("digits_snn_lats", ["epochs=3"], smoke=True).epochs == 3


@pytest.mark.parametrize("path", RECIPES)
def test_every_shipped_recipe_runs_as_a_smoke_test(path, tmp_path, data_home, capsys):
    """data_home holds no data set: the generated digits appear there, every other set is missing."""
    out = tmp_path / "run"
    assert main(["train", path.stem, "--smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    recipe = load_recipe(path, smoke=True)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(1, recipe.epochs + 1))
    final = torch.load(out / "final_model.pt", weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in final["model"].values() if v.is_floating_point())
    saved = json.loads((out / "recipe.json").read_text())
    if recipe.data.name in ("digits", "digits_dvs"):  # shipped or generated: always the real data
        assert saved["data"]["root"] is None and "stand-in" not in printed.out
    else:  # not on this machine: the stand-in, said in one line
        assert saved["data"]["root"] == str(data_home / "standin" / recipe.data.name)
        notes = [line for line in printed.out.splitlines() if line.startswith("smoke:")]
        assert len(notes) == 1 and f"{recipe.data.name} is not in" in notes[0] and "data.root" in notes[0]
    if recipe.channels is not None:  # the channel family made its cut
        events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert any(e["kind"] == "channel_prune" for e in events)


def test_a_smoke_run_uses_the_real_data_when_it_is_there(tmp_path, data_home, capsys):
    from snnprune.data.standin import write_standin

    real = write_standin("cifar10", tmp_path / "cifar")  # "real" data at a root the recipe names
    out = tmp_path / "run"
    assert main(["train", "cifar10_resnet_lats", "--smoke", "--set", f"data.root={real}", "--out", str(out)]) == 0
    assert "stand-in" not in capsys.readouterr().out
    assert json.loads((out / "recipe.json").read_text())["data"]["root"] == str(real)


def test_a_smoke_run_of_an_unknown_data_set_is_one_line(tmp_path, capsys):
    code = main(["train", "digits_snn_lats", "--smoke", "--set", "data.name=digts", "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "did you mean 'digits'" in lines[0]
