"""Ask for a sparsity and get it: the final sparsity over the pruned layers lands within 0.5
percentage points of the target, for soft thresholding (LATS with a λ controller) and the
sparsity-driven baselines."""

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


def train(model, pruner, x, y, steps, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
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
    pruner = Pruner(model, "soft_threshold", schedule, target_sparsity=0.9, total_steps=100)
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
    pruner = Pruner(model, method, target_sparsity=0.9, total_steps=80, method_kwargs=kwargs)
    train(model, pruner, x, y, 80)
    assert abs(pruner.sparsity().pruned - 0.9) <= 0.005
    history = pruner.controller.history
    assert len(history) >= 10 and history[-1][0] == 80
    if pruner.has_regularization:  # the gain moved to follow the planned ramp
        assert len({round(h[3], 6) for h in history}) > 1


def test_min_weights_keeps_every_layer_alive_and_the_target_still_lands():
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.98, total_steps=60, min_weights=20)
    train(model, pruner, x, y, 60)
    masks = pruner.masks()
    assert all(int(m.sum()) >= 20 for m in masks.values())  # 54 weights in all, 20 of them in the 640-weight head
    assert abs(pruner.sparsity().pruned - 0.98) <= 0.005


def test_a_floor_above_the_budget_warns():
    model, x, y = task()
    pruner = Pruner(model, "soft_threshold", target_sparsity=0.995, total_steps=5, min_weights=20)
    with pytest.warns(UserWarning, match="not reached"):
        train(model, pruner, x, y, 5)


@pytest.mark.parametrize("method", ["soft_threshold", "magnitude"])
def test_min_weights_holds_in_prune_to(method):
    model, _, _ = task()
    pruner = Pruner(model, method, **({"schedule": LATS(l1=0.0)} if method == "soft_threshold" else {}),
                    min_weights=30)
    pruner.prune_to(0.999)
    assert all(int(m.sum()) >= 30 for m in pruner.masks().values())
    assert pruner.sparsity().pruned == pytest.approx(1 - 60 / (32 * 64 + 64 * 10), abs=0.01)
