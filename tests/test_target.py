"""Ask for a sparsity and get it: the final sparsity over the pruned layers lands within 0.5
percentage points of the target, for soft thresholding (LATS with a λ controller) and the
sparsity-driven baselines."""

import re
import warnings

import pytest
import torch
from torch import nn

from snnprune import Pruner
from snnprune.schedules import LATS, TargetSparsity


def task(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(256, 32)
    return model, x, x[:, :10].argmax(1)


def train(model, pruner, x, y, steps, lr=0.05, opt=None):
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if pruner.has_regularization:  # as the engine does
            loss = loss + pruner.regularization()
        loss.backward()
        opt.step()
        pruner.step(opt)
        sched.step()


@pytest.mark.parametrize("target", [0.9, 0.995])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_soft_threshold_lands_on_the_requested_sparsity(target, scope):
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=target, total_steps=100, scope=scope)
    train(model, pruner, x, y, 100)
    assert abs(pruner.sparsity().pruned - target) <= 0.005
    assert abs(pruner.sparsity().total - target) <= 0.005  # nothing kept dense: the same denominator


def test_the_controller_keeps_the_lats_shape_and_logs_every_change_of_lambda():
    model, x, y = task()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100)
    schedule = TargetSparsity(0.9, lr=sched, every=10)
    pruner = Pruner(model, "soft_threshold", schedule, target_sparsity=0.9, total_steps=100, reach=1.0)
    thresholds = []
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step(opt)
        sched.step()
        thresholds.append(pruner.threshold)
    history = pruner.schedule.history
    assert [h[0] for h in history] == list(range(0, 101, 10))
    assert all(b >= a - 1e-12 for a, b in zip(thresholds, thresholds[1:]))  # the threshold only rises
    # between two retargets the implied λ = Δd/η is constant
    lrs = [0.05 * (1 + torch.cos(torch.tensor(torch.pi * t / 100)).item()) / 2 for t in range(100)]
    implied = [(thresholds[t] - thresholds[t - 1]) / lrs[t] for t in range(12, 20)]
    assert max(implied) == pytest.approx(min(implied), rel=1e-4)


def test_gmp_and_one_shot_magnitude_hit_the_target_exactly():
    for method in ("gmp", "magnitude", "random"):
        model, x, y = task()
        pruner = Pruner(model, method, target_sparsity=0.95, total_steps=60)
        train(model, pruner, x, y, 60)
        assert abs(pruner.sparsity().pruned - 0.95) <= 0.005, method


def test_a_target_that_ties_cannot_reach_warns_why():
    model, x, y = task()
    with torch.no_grad():
        model[0].weight.zero_()
        model[2].weight[:, :32].zero_()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.5, total_steps=1)
    with pytest.warns(UserWarning, match="not reached"):
        pruner.step(lr=0.0)


def test_target_and_schedule_together_is_an_error():
    model, _, _ = task()
    with pytest.raises(ValueError, match="either a schedule or target_sparsity"):
        Pruner(model, "soft_threshold", LATS(l1=0.1), target_sparsity=0.9, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        Pruner(model, "soft_threshold", target_sparsity=0.9)
    with pytest.raises(ValueError, match="learns its thresholds"):
        Pruner(model, "str", LATS(l1=0.1), target_sparsity=0.9, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        Pruner(model, "str", target_sparsity=0.9)


def test_a_resumed_controller_continues_exactly():
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.9, total_steps=40)
    train(model, pruner, x, y, 20)
    state, weights = pruner.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    model2, _, _ = task()
    pruner2 = Pruner(model2, "soft_threshold", target_sparsity=0.9, total_steps=40)
    model2.load_state_dict(weights)
    pruner2.load_state_dict(state)
    assert pruner2.threshold == pruner.threshold
    assert pruner2.schedule.history == pruner.schedule.history


@pytest.mark.parametrize("method, kwargs", [("ltp", {}), ("smooth_threshold", {}), ("str", {"s_init": -5.0})])
def test_learned_methods_land_on_the_target_through_their_regulariser_and_a_last_projection(method, kwargs):
    model, x, y = task()
    pruner = Pruner(model, method, target_sparsity=0.9, total_steps=80, method_kwargs=kwargs, reach=1.0)
    train(model, pruner, x, y, 80)
    assert abs(pruner.sparsity().pruned - 0.9) <= 0.005
    history = pruner.controller.history
    assert len(history) >= 10 and history[-1][0] == 80
    if pruner.has_regularization:  # the gain moved to follow the planned ramp
        assert len({round(h[3], 6) for h in history}) > 1


@pytest.mark.parametrize("method, kwargs, target", [("ltp", {"tau_init": 4.0}, 0.9),
                                                    ("smooth_threshold", {"t_init": 2.5}, 0.9),
                                                    # v(θ) underflows to 0 far below t: brought back all the same
                                                    ("smooth_threshold", {"t_init": 6.0}, 0.5),
                                                    ("str", {"s_init": 0.0}, 0.9)])  # w = 0 where pruned
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_an_overshoot_of_a_learned_threshold_is_undone_by_scaling_every_threshold_by_one_factor(
        method, kwargs, target, scope):
    model, x, y = task()
    steps = 40
    # initial thresholds far above the weights: everything is pruned before the last step
    pruner = Pruner(model, method, target_sparsity=target, total_steps=steps, method_kwargs=kwargs, scope=scope,
                    min_weights=0, reach=1.0)
    if method == "str":  # attaching keeps every weight (θ moves out by d): raise d past them after
        for _, _, r in pruner.layers():
            r.s.data.fill_(5.0)  # d = 0.993 > every |θ|
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if step == steps - 1:
            before = pruner.sparsity().pruned
            ratios = [module.parametrizations.weight.original.detach().abs() / r.current_threshold()
                      for _, module, r in pruner.layers()]
            latents = [module.parametrizations.weight.original.detach().clone() for _, module, _ in pruner.layers()]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # reached: no "not reached" warning
            pruner.step(opt)
    assert before > 0.95
    assert abs(pruner.sparsity().pruned - target) <= 0.005
    masks = list(pruner.masks().values())
    groups = [list(zip(ratios, masks))] if scope == "global" else [[pair] for pair in zip(ratios, masks)]
    for group in groups:  # brought back: the highest ratios |θ|/t_l of the group, whatever the layer
        kept = torch.cat([r[m] for r, m in group])
        pruned = torch.cat([r[~m] for r, m in group])
        assert kept.min() > pruned.max()
    if method == "ltp":  # a weight brought back is its latent value, as every kept one
        for (_, module, _), latent, m in zip(pruner.layers(), latents, masks):
            assert torch.equal(module.parametrizations.weight.original.detach()[m], latent[m])


@pytest.mark.parametrize("method, kwargs", [("ltp", {"l0": 0.0}), ("smooth_threshold", {"threshold_reg": 0.0})])
def test_an_undershoot_is_projected_by_global_magnitude_of_the_final_weights(method, kwargs):
    from snnprune.selection import magnitude_masks

    model, x, y = task()
    steps = 12
    pruner = Pruner(model, method, target_sparsity=0.9, total_steps=steps, method_kwargs=kwargs, min_weights=0,
                    reach=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if step == steps - 1:
            assert pruner.sparsity().pruned < 0.5  # no push: far below the target
            finals = [r.final_weight(module.parametrizations.weight.original).abs() for _, module, r in pruner.layers()]
        pruner.step(opt)
    want = magnitude_masks(finals, 0.9, "global")
    assert all(torch.equal(got, w) for got, w in zip(pruner.masks().values(), want))


def test_min_weights_keeps_every_layer_alive_and_the_target_still_lands():
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.98, total_steps=60, min_weights=20)
    train(model, pruner, x, y, 60)
    masks = pruner.masks()
    assert all(int(m.sum()) >= 20 for m in masks.values())  # 54 weights in all, 20 of them in the 640-weight head
    assert abs(pruner.sparsity().pruned - 0.98) <= 0.005


def test_a_target_floors_every_layer_by_default_so_none_is_cut_off():
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.995, total_steps=60)
    assert pruner.min_weights == 3  # 13 weights left for 2 layers: floors take at most half
    train(model, pruner, x, y, 60)
    assert all(int(m.sum()) >= 3 for m in pruner.masks().values())
    assert abs(pruner.sparsity().pruned - 0.995) <= 0.005
    assert Pruner(task()[0], "soft_threshold", target_sparsity=0.995, total_steps=6, min_weights=0).min_weights == 0
    assert Pruner(task()[0], "soft_threshold", LATS(l1=0.1)).min_weights == 0  # no target, no floor
    assert Pruner(task()[0], "ltp", target_sparsity=0.9, total_steps=6).min_weights == 32


def test_an_explicit_sparsity_schedule_floors_every_layer_like_a_target():
    from snnprune.schedules import Cubic

    model, x, y = task()
    pruner = Pruner(model, "gmp", Cubic(final=0.995, start=0, end=40, every=5), scope="global")
    assert pruner.min_weights == Pruner(task()[0], "gmp", target_sparsity=0.995, total_steps=40,
                                        scope="global").min_weights == 3
    train(model, pruner, x, y, 45)
    assert all(int(m.sum()) >= 3 for m in pruner.masks().values())  # no layer cut off
    assert abs(pruner.sparsity().pruned - 0.995) <= 0.005
    assert Pruner(task()[0], "gmp", Cubic(final=0.995, start=0, end=40, every=5), min_weights=0).min_weights == 0


def test_per_layer_masks_keep_each_layer_s_share_with_a_floor_of_one_and_land_on_the_target():
    model, x, y = task()
    pruner = Pruner(model, "gmp", target_sparsity=0.5, total_steps=8)  # GMP: per layer by default
    assert pruner.scope == "layer" and pruner.min_weights == 1
    train(model, pruner, x, y, 8)
    assert all(v == pytest.approx(0.5) for v in pruner.sparsity().layers.values())
    assert pruner.sparsity().pruned == 0.5


def test_a_floor_above_the_budget_warns():
    model, x, y = task()
    with pytest.warns(UserWarning, match="cannot be reached: min_weights=20 keeps at least 40"):  # at once
        pruner = Pruner(model, "soft_threshold", target_sparsity=0.995, total_steps=5, min_weights=20)
    with pytest.warns(UserWarning, match="not reached"):  # and at the end
        train(model, pruner, x, y, 5)


@pytest.mark.parametrize("method", ["soft_threshold", "magnitude"])
def test_min_weights_holds_in_prune_to(method):
    model, _, _ = task()
    pruner = Pruner(model, method, **({"schedule": LATS(l1=0.0)} if method == "soft_threshold" else {}),
                    min_weights=30)
    pruner.prune_to(0.999)
    assert all(int(m.sum()) >= 30 for m in pruner.masks().values())
    assert pruner.sparsity().pruned == pytest.approx(1 - 60 / (32 * 64 + 64 * 10), abs=0.01)


def test_floors_above_the_budget_warn_at_once_and_say_why():
    model, _, _ = task()
    with pytest.warns(UserWarning, match="cannot be reached: min_weights=500 keeps at least 1000 of the 2688"):
        Pruner(model, "ltp", target_sparsity=0.9, total_steps=10, min_weights=500)


# -- the same through a recipe and the command line ------------------------------------------
RECIPE = """
name = "target"
family = "sparsify_during_training"
epochs = 2
batch_size = 64
[model]
name = "sew_digits"
kwargs = { in_channels = 2, input_size = 24 }
[data]
name = "digits_dvs"
T = 4
limit = 128
[pruning]
method = "soft_threshold"
target_sparsity = 0.9
"""


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "target.toml"
    path.write_text(RECIPE)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method, target, key", [("soft_threshold", 0.95, "target_lambda"),
                                                 ("ltp", 0.9, "target_gain")])
def test_a_recipe_target_lands_through_the_command_line_and_logs_its_controller(recipe_file, tmp_path, method,
                                                                                target, key):
    import json

    from snnprune.cli import main

    out = tmp_path / "run"
    code = main(["train", str(recipe_file), "--out", str(out), "--set", f"pruning.method={method}",
                 "--set", f"pruning.target_sparsity={target}"])
    assert code == 0
    final = torch.load(out / "final_model.pt", weights_only=True)
    assert abs(final["sparsity"] - target) <= 0.005  # every conv/linear weight is pruned: .total is .pruned
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["kind"] == "epoch"]
    updates = [e[f"{key}_updates"] for e in epochs]
    assert len(epochs) == 2 and 0 < updates[0] < updates[1] and all(e[key] > 0 for e in epochs)


@pytest.mark.slow
def test_an_early_pruning_target_is_reached_at_the_freeze_and_then_held(recipe_file, tmp_path):
    import json

    from snnprune.cli import main

    out = tmp_path / "run"
    code = main(["train", str(recipe_file), "--out", str(out), "--set", "family='early_pruning'",
                 "--set", "pruning.freeze_epoch=1", "--set", "pruning.target_sparsity=0.95"])
    assert code == 0
    epochs = [e for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if e["kind"] == "epoch"]
    assert abs(epochs[0]["sparsity"] - 0.95) <= 0.005  # reached at the end of epoch 1 ...
    assert epochs[1]["sparsity"] == epochs[0]["sparsity"] and epochs[1]["regrowth"] == 0  # ... and frozen there


@pytest.mark.parametrize("override, message", [
    ("pruning.target_sparsity=1.0", "target_sparsity"),
    ("pruning.target_sparsity=-0.1", "target_sparsity"),
    ("pruning.target_sparsity='most'", "target_sparsity"),
    ("pruning.final_threshold=0.2", "pruning.final_threshold=0.2 and pruning.target_sparsity"),
])
def test_bad_recipe_targets_exit_2_with_one_line(recipe_file, tmp_path, capsys, override, message):
    from snnprune.cli import main

    code = main(["train", str(recipe_file), "--out", str(tmp_path / "run"), "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_the_recipe_target_means_the_family_s_sparsity_and_old_recipes_still_load():
    from snnprune.recipe import RecipeError, load_recipe

    base = {"name": "x", "epochs": 4, "batch_size": 8, "model": {"name": "sew_digits"}, "data": {"name": "digits"}}
    during = load_recipe({**base, "family": "sparsify_during_training",
                          "pruning": {"method": "str", "target_sparsity": 0.9, "min_weights": 8}})
    assert during.pruning.target_sparsity == 0.9 and during.pruning.selection()["min_weights"] == 8
    at_init = load_recipe({**base, "family": "pruning_at_initialization",
                           "pruning": {"method": "soft_threshold", "target_sparsity": 0.9}})
    assert at_init.pruning.fixed_mask is True
    early = load_recipe({**base, "family": "early_pruning",
                         "pruning": {"method": "soft_threshold", "target_sparsity": 0.9, "freeze_epoch": 2}})
    assert early.pruning.schedule == "lats"  # no PGH needed: the target is reached at freeze_epoch
    with pytest.raises(RecipeError, match="pruning.target_sparsity"):
        load_recipe({**base, "family": "sparsify_during_training", "pruning": {"method": "soft_threshold"}})
    for name in ("digits_snn_lats", "digits_snn_pai", "digits_snn_ltp", "digits_snn_magnitude"):
        load_recipe(name)


def test_floors_moving_with_the_weights_raise_no_stale_threshold_warning_but_a_stale_model_does():
    import warnings

    from snnprune.schedules import Constant

    model, _, _ = task()
    pruner = Pruner(model, "soft_threshold", Constant(10.0), min_weights=5)  # every layer held by its floor
    assert [int(m.sum()) for m in pruner.masks().values()] == [5, 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            for p in model.parameters():
                p.data.mul_(1.1)  # what an optimizer step does to the floors' caps
            pruner.step(lr=0.1)
    trained, _, _ = task()
    lats = Pruner(trained, "soft_threshold", LATS(l1=1.0))
    for _ in range(3):
        lats.step(lr=0.1)
    fresh, _, _ = task()
    stale = Pruner(fresh, "soft_threshold", LATS(l1=1.0))
    fresh.load_state_dict(trained.state_dict())  # thresholds of step 3, this Pruner at step 0
    with pytest.warns(UserWarning, match="holds threshold"):
        stale.step(lr=0.1)


def test_a_learned_method_that_cannot_follow_the_plan_warns_once_and_says_what_to_do():
    model, x, y = task()
    pruner = Pruner(model, "ltp", target_sparsity=0.9, total_steps=120, min_weights=0)
    own = {id(p) for p in pruner.parameters()}
    # thresholds that barely move: a tiny learning rate on their group
    opt = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in own]},
                            {"params": list(pruner.parameters()), "lr": 1e-6}], lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, pruner, x, y, 120, opt=opt)
    stuck = [w for w in caught if "largest gain" in str(w.message)]
    assert len(stuck) == 1 and "learning rate" in str(stuck[0].message)
    assert abs(pruner.sparsity().pruned - 0.9) <= 0.005  # the projection still lands on the target


def test_a_learned_method_that_follows_the_plan_does_not_warn_about_its_gain():
    model, x, y = task()
    pruner = Pruner(model, "ltp", target_sparsity=0.9, total_steps=80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, pruner, x, y, 80)
    assert pruner.controller.history[-2][2] > 0.8  # the regulariser took it most of the way
    assert not [w for w in caught if "largest gain" in str(w.message)]


def _stuck_run(opt_class, **group):
    model, x, y = task()
    pruner = Pruner(model, "ltp", target_sparsity=0.9, total_steps=120, min_weights=0)
    own = {id(p) for p in pruner.parameters()}
    opt = opt_class([{"params": [p for p in model.parameters() if id(p) not in own]},
                     {"params": list(pruner.parameters()), "lr": 1e-7, **group}], lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, pruner, x, y, 120, opt=opt)
    return [str(w.message) for w in caught if "largest gain" in str(w.message)]


def test_the_largest_gain_advice_under_adam_says_the_penalty_cannot_speed_the_thresholds():
    (said,) = _stuck_run(torch.optim.Adam)
    assert "Under Adam a step's size does not grow with the penalty's gradient" in said
    assert re.search(r"larger learning rate than its [0-9.e-]+$", said) and "weight_decay" not in said


def test_the_largest_gain_advice_under_sgd_does_not_tell_an_sgd_user_to_use_sgd():
    (said,) = _stuck_run(torch.optim.SGD, momentum=0.9)
    assert "Under SGD" in said and re.search(r"their learning rate [0-9.e-]+ is too small", said)
    assert "with SGD" not in said and "Adam" not in said


def test_the_largest_gain_advice_names_weight_decay_on_the_thresholds():
    (said,) = _stuck_run(torch.optim.SGD, weight_decay=0.1)
    assert "weight_decay=0.1 also pulls the thresholds down" in said


def test_a_learned_method_whose_projection_cannot_bring_weights_back_says_so():
    from snnprune.reparam import Reparameterization

    class Overshoots(Reparameterization):  # a learned threshold far above every weight, the default projection
        control = "learned"

        def __init__(self):
            super().__init__()
            self.t = torch.nn.Parameter(torch.tensor(10.0))

        def transform(self, latent):
            return latent * (latent.abs() > self.t)

    model, x, y = task()
    pruner = Pruner(model, Overshoots(), target_sparsity=0.5, total_steps=2, min_weights=0)
    with pytest.warns(UserWarning, match=r"50.00% not reached: .* had pruned 100.00% .* can bring back only weights "
                                         r"that are not 0, so 100.00% stay pruned"):
        train(model, pruner, x, y, 2)


def test_the_floored_threshold_is_the_smallest_value_that_prunes_the_target_with_every_floor_kept():
    from snnprune.selection import floored_threshold

    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        sizes = torch.randint(1, 30, (int(torch.randint(1, 6, (1,), generator=gen)),), generator=gen).tolist()
        values = [torch.randn(n, generator=gen).abs() * 10 ** float(torch.randint(-2, 2, (1,), generator=gen))
                  for n in sizes]
        values = [v.round() if trial % 3 == 0 else v for v in values]  # ties
        sparsity, floor = trial / 300, trial % 7
        caps = [max(n - floor, 0) for n in sizes]
        k = min(round(sparsity * sum(sizes)), sum(caps))
        pruned = [sum(min(int((v <= t).sum()), c) for v, c in zip(values, caps)) for t in torch.cat(values)]
        want = min((float(t) for t, p in zip(torch.cat(values), pruned) if p >= k), default=None)
        assert floored_threshold(values, sparsity, floor) == (float("-inf") if k == 0 else want), trial


@pytest.mark.parametrize("method, kwargs", [("soft_threshold", {}), ("gmp", {}), ("ltp", {}),
                                            ("str", {"s_init": -5.0})])
def test_reach_lands_on_the_target_at_its_fraction_of_the_run_and_freezes_the_mask(method, kwargs):
    model, x, y = task()
    pruner = Pruner(model, method, target_sparsity=0.9, total_steps=60, reach=0.5, method_kwargs=kwargs)
    assert pruner.reach_step == 30
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen = {}
    for step in range(1, 61):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        (loss + pruner.regularization() if pruner.has_regularization else loss).backward()
        opt.step()
        pruner.step(opt)
        seen[step] = (pruner.sparsity().pruned, pruner.frozen, pruner.masks())
    assert abs(seen[30][0] - 0.9) <= 0.005 and seen[30][1] and not seen[29][1]
    assert all(torch.equal(seen[60][2][k], m) for k, m in seen[30][2].items())  # held to the end


def test_a_landing_that_removes_more_than_max_jump_at_once_warns_and_a_gradual_one_does_not():
    from snnprune.pruner import MAX_JUMP

    model, x, y = task()
    gradual = Pruner(model, "gmp", target_sparsity=0.9, total_steps=40, reach=0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, gradual, x, y, 40)
    model, x, y = task()
    pruner = Pruner(model, "ltp", target_sparsity=0.9, total_steps=20, reach=0.5, min_weights=0,
                    method_kwargs={"l0": 0.0})  # no push: the projection does it all at step 10
    with pytest.warns(UserWarning, match=r"step 10 removed .* of the surviving weights at once") as caught:
        train(model, pruner, x, y, 20)
    assert MAX_JUMP == 0.1 and len([w for w in caught if "at once" in str(w.message)]) == 1


def test_reach_needs_a_target_and_a_fraction():
    model, _, _ = task()
    with pytest.raises(ValueError, match="reach= goes with target_sparsity="):
        Pruner(model, "soft_threshold", LATS(l1=0.1), reach=0.5)
    with pytest.raises(ValueError, match=r"reach must be in \(0, 1\]"):
        Pruner(model, "soft_threshold", target_sparsity=0.9, total_steps=10, reach=1.5)
