"""Per-layer allocation: ERK as RigL's formula, uniform and dict sparsities reached per layer,
prune_to under every allocation, and bad values in one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from snnprune import Pruner
from snnprune.allocation import ALLOCATIONS, erk_sparsities
from snnprune.schedules import Constant


def net() -> nn.Module:
    torch.manual_seed(0)
    # the first conv is so small against the others that ERK keeps it dense at 80%
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


SHAPES = [(8, 1, 3, 3), (64, 128), (10, 64)]


def erk_by_hand(target: float, shapes) -> list[float]:
    """density ∝ Σdims/Πdims; the densest layer is made dense while its density would exceed 1."""
    sizes = [math.prod(s) for s in shapes]
    dense: list[int] = []
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        keep = (1 - target) * sum(sizes) - sum(sizes[i] for i in dense)
        eps = keep / sum(sum(shapes[i]) for i in free)
        density = {i: eps * sum(shapes[i]) / sizes[i] for i in free}
        worst = max(free, key=lambda i: density[i])
        if density[worst] <= 1:
            return [0.0 if i in dense else 1 - density[i] for i in range(len(shapes))]
        dense.append(worst)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_erk_sparsities_are_the_formula(target):
    got = erk_sparsities(target, SHAPES)
    want = erk_by_hand(target, SHAPES)
    for g, w, shape in zip(got, want, SHAPES):
        assert abs(g - w) * math.prod(shape) <= 1.0  # within one weight per layer
    assert erk_sparsities(0.8, SHAPES)[0] == 0.0  # the first conv forced dense


@pytest.mark.parametrize("method", ["magnitude", "soft_threshold", "random"])
@pytest.mark.parametrize("allocation", ["uniform", "erk", {"4": 0.5}])
def test_prune_to_reaches_every_layers_sparsity(method, allocation):
    model = net()
    pruner = Pruner(model, method, Constant(0.0) if method == "soft_threshold" else None, allocation=allocation,
                    min_weights=0)
    pruner.prune_to(0.8)
    sizes = [math.prod(s) for s in SHAPES]
    if allocation == "uniform":
        want = [0.8] * 3
    elif allocation == "erk":
        want = erk_by_hand(0.8, SHAPES)
    else:
        rest = (0.8 * sum(sizes) - 0.5 * sizes[2]) / (sizes[0] + sizes[1])
        want = [rest, rest, 0.5]
    got = pruner.layer_sparsity()
    for (name, g), w, n in zip(got.items(), want, sizes):
        assert abs(g - w) * n <= 1.0, name
    assert abs(pruner.sparsity().pruned - 0.8) < 0.01


def test_prune_to_global_is_one_ranking():
    model = net()
    pruner = Pruner(model, "magnitude", allocation="global", min_weights=0)
    pruner.prune_to(0.8)
    weights = [m.weight.detach().abs() for m in (model[0], model[2], model[4])]
    cut = torch.cat([w.flatten() for w in weights]).kthvalue(round(0.8 * sum(w.numel() for w in weights))).values
    for w, keep in zip(weights, pruner.masks().values()):
        assert torch.equal(keep, w > cut)


@pytest.mark.parametrize("method", ["soft_threshold", "gmp", "ltp"])
@pytest.mark.parametrize("allocation", ["uniform", "erk"])
def test_a_target_under_an_allocation_reaches_each_layers_sparsity(method, allocation):
    model = net()
    pruner = Pruner(model, method, target_sparsity=0.8, total_steps=30, allocation=allocation)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, y = torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if pruner.has_regularization:
            loss = loss + pruner.regularization()
        loss.backward()
        opt.step()
        pruner.step(opt)
    targets, reached = pruner.layer_targets(), pruner.layer_sparsity()
    assert pruner.frozen and pruner.steps == 30
    for name, shape in zip(targets, SHAPES):
        assert abs(targets[name] - reached[name]) * math.prod(shape) <= 1.0 + 0.01 * math.prod(shape), name


def test_bad_allocations_fail_in_one_line_and_leave_the_model_alone():
    model = net()
    cases = [("erc", "unknown allocation 'erc'"), ({"nope*": 0.5}, "matches no pruned layer"),
             ({"2": 1.5}, "allocation['2']"), (3, "allocation must be")]
    for allocation, message in cases:
        with pytest.raises(ValueError) as info:
            Pruner(model, "gmp", target_sparsity=0.8, total_steps=10, allocation=allocation)
        assert message in str(info.value) and "\n" not in str(info.value)
        assert not any(hasattr(m, "parametrizations") for m in model)
    with pytest.raises(ValueError, match="give allocation= or scope=, not both"):
        Pruner(model, "gmp", target_sparsity=0.8, total_steps=10, allocation="erk", scope="layer")
    with pytest.raises(ValueError, match="other layers would need sparsity"):
        Pruner(model, "gmp", target_sparsity=0.95, total_steps=10, allocation={"2": 0.1})
    assert set(ALLOCATIONS) == {"global", "uniform", "erk"}


def test_recipes_pass_reach_and_allocation_to_the_pruner():
    from snnprune.build import build_pruner
    from snnprune.models import create_model
    from snnprune.pruner import DEFAULT_REACH
    from snnprune.recipe import RecipeError, load_recipe

    def pruner_of(overrides):
        recipe = load_recipe("digits_snn_lats", ["pruning={method='soft_threshold', target_sparsity=0.9}", *overrides])
        return build_pruner(recipe, create_model("sew_digits", T=2), steps_per_epoch=10, total_steps=100,
                            lr=[0.1] * 100)

    assert pruner_of([]).reach_step == round(DEFAULT_REACH * 100)
    erk = pruner_of(["pruning.allocation=erk", "pruning.reach=0.5"])
    assert erk.reach_step == 50 and erk.allocation == "erk"
    shapes = [tuple(m.weight.shape) for _, m, _ in erk.layers()]
    assert list(erk.layer_targets().values()) == erk_sparsities(0.9, shapes)
    early = load_recipe("digits_snn_target99")
    assert build_pruner(early, create_model("sew_digits", T=2), steps_per_epoch=10, total_steps=60,
                        lr=[0.1] * 60).reach_step == 60  # early_pruning: its freeze_epoch is the reach
    with pytest.raises(RecipeError) as info:
        pruner_of(["pruning.allocation=erx"])
    assert "unknown allocation 'erx'" in str(info.value) and "\n" not in str(info.value)


def test_report_gives_each_layers_target_under_the_recipes_allocation():
    from snnprune.models import create_model
    from snnprune.recipe import load_recipe
    from snnprune.report.runs import layer_targets

    model = create_model("sew_digits", T=2)
    lats = "pruning={method='soft_threshold', target_sparsity=0.9}"
    erk = load_recipe("digits_snn_lats", [lats, "pruning.allocation=erk"])
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(layer_targets(erk, model).values()) == erk_sparsities(0.9, shapes)
    assert layer_targets(load_recipe("digits_snn_lats", [lats]), model) == {}  # one global ranking


@pytest.mark.parametrize("method", ["magnitude", "gmp"])
def test_floors_are_counted_in_a_per_layer_budget(method):
    # uniform 95% would leave the conv 3.6 weights and the last layer 32: both keep their floor of
    # 40, and the middle layer gives up the difference, so the layers together are still at 95%
    model = net()
    pruner = Pruner(model, method, allocation="uniform", min_weights=40)
    pruner.prune_to(0.95)
    kept = {name: int(m.sum()) for name, m in pruner.masks().items()}
    total = sum(math.prod(s) for s in SHAPES)
    assert min(kept.values()) >= 40
    assert abs(sum(kept.values()) - 0.05 * total) <= 1.0
    assert kept["0"] == 40 and kept["4"] == 40


def test_gmp_under_a_target_with_floors_lands_on_the_target():
    model = net()
    pruner = Pruner(model, "gmp", target_sparsity=0.95, total_steps=20, min_weights=40)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step(opt)
    assert pruner.sparsity().pruned == pytest.approx(0.95, abs=1.5 / sum(math.prod(s) for s in SHAPES))
