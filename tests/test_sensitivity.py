"""Sensitivity analysis: one layer pruned at a time, the model restored exactly, the allocation
meeting its target, and `snnprune sensitivity` on a tiny run."""

import json

import pytest
import torch
from torch import nn

from snnprune.cli import main
from snnprune.selection import prunable_tensors
from snnprune.sensitivity import allocation_from_curves, allocation_from_file, sensitivity


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_each_probe_prunes_one_layer_by_magnitude_and_the_model_comes_back_bit_for_bit():
    model = small_net()
    before = state(model)
    seen = []

    def evaluate(m):  # which layers have zeros, and how many, in this probe
        zeros = {name: int((mod.weight == 0).sum()) for name, mod, _ in prunable_tensors(m)}
        seen.append(zeros)
        return 1.0 - sum(zeros.values()) / 1000

    result = sensitivity(model, evaluate, sparsities=(0.5, 0.9))
    assert result["baseline"] == 1.0 and result["sparsities"] == [0.5, 0.9]
    probes = seen[1:]  # after the baseline
    assert probes == [{"0": 36, "3": 0}, {"0": 65, "3": 0}, {"0": 0, "3": 18}, {"0": 0, "3": 32}]
    assert result["layers"]["0"] == {"numel": 72, "sparsity": 0.0, "accuracy": [1 - 36 / 1000, 1 - 65 / 1000]}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_smallest_magnitudes_go_first():
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.3, -0.1, 2.0, -0.05]]))
    kept = []
    sensitivity(model, lambda m: kept.append((m[0].weight != 0).tolist()) or 0.0, sparsities=(0.5,))
    assert kept[1] == [[True, False, True, False]]


def test_a_probe_that_fails_leaves_the_model_as_it_was():
    model = small_net()
    before = state(model)
    calls = []

    def evaluate(m):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("evaluation broke")
        return 0.5

    with pytest.raises(RuntimeError, match="evaluation broke"):
        sensitivity(model, evaluate, sparsities=(0.5, 0.9))
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_a_loader_measures_top1_accuracy_in_eval_mode_and_keeps_the_training_flag():
    model = small_net().train()
    before = state(model)
    x = torch.randn(40, 6)
    y = model.eval()(x).argmax(1)  # the labels the unpruned model gives: accuracy 1
    model.train()
    result = sensitivity(model, [(x[:20], y[:20]), (x[20:], y[20:])], sparsities=(0.99,))
    assert result["baseline"] == 1.0 and model.training
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)  # running stats untouched
    one = sensitivity(model, [(x[:20], y[:20]), (x[20:], y[20:])], sparsities=(0.99,), batches=1)
    assert one["baseline"] == 1.0


def test_a_pruned_model_or_a_bad_grid_is_one_clear_error():
    from snnprune import Pruner

    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        sensitivity(small_net(), lambda m: 1.0, sparsities=(0.5, 1.0))
    model = small_net()
    Pruner(model, "magnitude")
    with pytest.raises(ValueError, match="bake"):
        sensitivity(model, lambda m: 1.0)
    with pytest.raises(ValueError, match="matches 'fc'"):
        sensitivity(small_net(), lambda m: 1.0, layers="fc")


CURVES = {"format": "snnprune.sensitivity/1", "baseline": 0.9, "sparsities": [0.5, 0.8, 0.9, 0.99], "layers": {
    "flat": {"accuracy": [0.9, 0.9, 0.9, 0.9]},
    "mild": {"accuracy": [0.9, 0.88, 0.85, 0.7]},
    "steep": {"accuracy": [0.7, 0.3, 0.1, 0.1]},
}}
SIZES = {"flat": 1000, "mild": 2000, "steep": 500}


@pytest.mark.parametrize("target", [0.3, 0.6, 0.8, 0.9])
def test_the_allocation_meets_the_target_and_prunes_the_insensitive_layers_furthest(target):
    alloc = allocation_from_curves(CURVES, target, SIZES)
    weighted = sum(SIZES[n] * s for n, s in alloc.items()) / sum(SIZES.values())
    assert weighted == pytest.approx(target, abs=1e-9)
    assert alloc["flat"] >= alloc["mild"] >= alloc["steep"] >= 0
    assert max(alloc.values()) <= 0.99 + 1e-12  # never beyond the grid


def test_the_allocation_equalises_the_drop_read_off_the_interpolated_curves():
    # flat loses nothing up to 99%; at a tolerated drop δ <= 0.02 the mild layer may go to
    # 0.5 + 0.3·δ/0.02 and the steep one to 0.5·δ/0.2; the target 0.6 of 3500 weights needs
    # 990 + 2000·(0.5 + 15δ) + 500·2.5δ = 2100, so δ = 110 / 31250
    alloc = allocation_from_curves(CURVES, 0.6, SIZES)
    delta = 110 / 31250
    assert alloc == pytest.approx({"flat": 0.99, "mild": 0.5 + 15 * delta, "steep": 2.5 * delta}, rel=1e-6)


def test_the_allocation_refuses_a_missing_layer_or_an_unreachable_target(tmp_path):
    with pytest.raises(ValueError, match="no curve for layer 'other'"):
        allocation_from_curves(CURVES, 0.5, {"other": 10})
    with pytest.raises(ValueError, match="probe larger sparsities"):
        allocation_from_curves(CURVES, 0.995, SIZES)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(CURVES))
    assert allocation_from_file(path, 0.5, SIZES) == allocation_from_curves(CURVES, 0.5, SIZES)
    with pytest.raises(ValueError, match="cannot read the sensitivity file"):
        allocation_from_file(tmp_path / "missing.json", 0.5, SIZES)
    path.write_text(json.dumps({"layers": {}}))
    with pytest.raises(ValueError, match="not a sensitivity result"):
        allocation_from_file(path, 0.5, SIZES)


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from snnprune.engine import train
    from snnprune.recipe import load_recipe

    recipe = load_recipe("digits_snn_lats", overrides=["epochs=1", "data.limit=96", "pruning.final_threshold=0.02"])
    return train(recipe, tmp_path_factory.mktemp("runs") / "tiny").run_dir


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sensitivity_of_a_run_writes_json_and_png_and_feeds_the_allocation(tiny_run, capsys, tmp_path):
    from snnprune.runs import load_run_model

    code, out, _ = run_cli(capsys, "sensitivity", tiny_run, "--sparsities", "0.5", "0.9", "--batches", "1",
                           "--out", tmp_path)
    assert code == 0 and "sensitivity.json" in out
    result = json.loads((tmp_path / "sensitivity.json").read_text())
    model, _ = load_run_model(tiny_run)
    names = [n for n, _, _ in prunable_tensors(model)]
    assert list(result["layers"]) == names and result["sparsities"] == [0.5, 0.9]
    assert all(len(r["accuracy"]) == 2 and all(0 <= a <= 1 for a in r["accuracy"]) for r in result["layers"].values())
    assert 0 <= result["baseline"] <= 1
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "sensitivity.png")
    assert image.shape[0] > 300 and image.std() > 0
    sizes = {n: m.weight.numel() for n, m, _ in prunable_tensors(model)}
    alloc = allocation_from_file(tmp_path / "sensitivity.json", 0.8, sizes)
    assert sum(sizes[n] * s for n, s in alloc.items()) == pytest.approx(0.8 * sum(sizes.values()))
    # the Pruner reads the file: each layer pruned to its share, the target met over the pruned weights
    from snnprune import Pruner

    pruner = Pruner(model, "magnitude", allocation=f"sensitivity:{tmp_path / 'sensitivity.json'}")
    pruner.prune_to(0.8)
    assert pruner.sparsity().pruned == pytest.approx(0.8, abs=1e-3)
    reached = {name: float((~mask).float().mean()) for name, mask in pruner.masks().items()}
    assert reached == pytest.approx(alloc, abs=2 / min(sizes.values()))


def test_sensitivity_of_a_recipe_smoke(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "sensitivity", "digits_ann_lats", "--smoke", "--out", tmp_path)
    assert code == 0 and (tmp_path / "sensitivity.png").is_file()
    assert json.loads((tmp_path / "sensitivity.json").read_text())["sparsities"] == [0.5, 0.9]


@pytest.mark.parametrize("argv, message", [
    (["no_such_recipe"], "no_such_recipe"),
    (["digits_snn_lats", "--sparsities", "1.5"], "--sparsities 1.5"),
    (["digits_snn_lats", "--batches", "0"], "--batches 0"),
])
def test_bad_sensitivity_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, "sensitivity", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
