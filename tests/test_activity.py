"""The firing-rate regulariser: it lowers the firing rate, its gradient flows, and the Pruner, the
recipes and the engine's log reach it."""

import pytest
import torch
from torch import nn

from snnprune import Pruner
from snnprune.activity import ActivityRegularizer
from snnprune.data import create_dataset
from snnprune.metrics import firing_rates
from snnprune.models import create_model


def digits_batches(n: int = 4, batch: int = 16):
    data = create_dataset("digits", None, "train")
    x = torch.stack([data[i][0] for i in range(n * batch)])
    y = torch.tensor([data[i][1] for i in range(n * batch)])
    return list(zip(x.split(batch), y.split(batch)))


def train_rate(coef: float, steps: int = 12) -> tuple[float, float]:
    """Train the tiny digits SNN ``steps`` steps with a Pruner carrying ``activity=coef``; the mean
    firing rate on held-out samples after, and the last task loss."""
    torch.manual_seed(0)
    net = create_model("sew_digits", T=4)
    pruner = Pruner(net, "magnitude", activity=coef)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    batches = digits_batches()
    for step in range(steps):
        x, y = batches[step % len(batches)]
        task = nn.functional.cross_entropy(net(x), y)
        loss = task + pruner.regularization()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(opt)
    held_out = torch.stack([create_dataset("digits", None, "test")[i][0] for i in range(64)])
    return firing_rates(net, held_out).mean, float(task.detach())


@pytest.mark.slow
def test_the_regulariser_lowers_the_firing_rate_against_coef_zero():
    rate0, _ = train_rate(0.0)
    rate1, _ = train_rate(2.0)
    assert rate0 > 0.02
    assert rate1 < 0.6 * rate0, (rate0, rate1)


def test_the_penalty_is_coef_times_the_rate_and_its_gradient_reaches_the_weights():
    torch.manual_seed(0)
    net = create_model("sew_digits", T=4)
    reg = ActivityRegularizer(net, {"body.features.0.*": 1.0, "*": 0.5})
    x = torch.stack([create_dataset("digits", None, "train")[i][0] for i in range(16)])
    net(x)
    penalty = reg.penalty()
    expected = sum(reg.coefs[n] * r for n, r in reg.last_rates.items())
    value = float(penalty.detach())
    assert value == pytest.approx(expected, rel=1e-6) and value > 0
    assert reg.coefs["body.features.0.sn"] == 1.0 and all(
        c == 0.5 for n, c in reg.coefs.items() if n != "body.features.0.sn")
    # the rates are those the firing metrics measure on the same batch
    assert reg.last_rates == pytest.approx(firing_rates(net, x, eval_mode=False).rates, rel=1e-6)
    penalty.backward()
    stem = net.body.features[0].conv.weight.grad
    assert stem is not None and stem.abs().sum() > 0
    assert float(reg.penalty()) == 0.0  # consumed: nothing recorded since


def test_evaluation_without_gradients_is_not_recorded_and_a_target_rate_costs_nothing_below():
    net = create_model("sew_digits", T=4)
    reg = ActivityRegularizer(net, 1.0, target_rate=1.0)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        net(x)
    assert float(reg.penalty()) == 0.0 and reg.last_rates == {}
    net(x)
    assert float(reg.penalty().detach()) == 0.0 and reg.last_rates  # recorded, below the target


def test_bad_activity_arguments_are_one_clear_error_and_leave_the_model_as_it_was():
    ann = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(ValueError, match="no spiking neuron"):
        Pruner(ann, "magnitude", activity=0.1)
    assert not hasattr(ann[0], "parametrizations")
    net = create_model("sew_digits", T=4)
    with pytest.raises(ValueError, match="matches 'nothing.*'"):
        ActivityRegularizer(net, {"nothing.*": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ActivityRegularizer(net, -1.0)


def test_finalize_takes_the_hooks_off():
    net = create_model("sew_digits", T=4)
    pruner = Pruner(net, "magnitude", activity=1.0)
    reg = pruner.activity
    pruner.finalize()
    net(torch.rand(2, 1, 8, 8))
    assert reg.last_rates == {} and float(reg.penalty()) == 0.0


@pytest.mark.slow
def test_a_recipe_with_pruning_activity_logs_the_penalty_and_rates_per_epoch(tmp_path):
    from snnprune.engine import train
    from snnprune.recipe import load_recipe

    recipe = load_recipe("digits_snn_lats", ["epochs=1", "data.limit=64", "pruning.activity=0.5"])
    result = train(recipe, tmp_path / "run")
    epoch = result.history[-1]
    assert epoch["activity_penalty"] > 0
    rates = epoch["activity_rates"]
    assert rates and all(0 <= r <= 1 for r in rates.values())
    assert epoch["activity_penalty"] == pytest.approx(0.5 * sum(rates.values()), rel=0.5)


def test_the_compare_split_multiplies_to_the_sop_ratio_and_names_its_parts():
    from snnprune.metrics import count_ops
    from snnprune.report.runs import sops_split

    torch.manual_seed(0)
    fc = nn.Linear(16, 8, bias=False)
    pruned = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        pruned.weight.copy_(fc.weight * (fc.weight.abs() > 0.15))
    many = (torch.rand(32, 16) < 0.4).float()
    few = many * (torch.rand(32, 16) < 0.5).float()

    def row(model, x):
        r = count_ops(model, x, spiking=True)
        return {"sops": r.sops, "dense_sops": r.dense_sops}

    base = row(fc, many)
    weights_only, spikes_only, both = row(pruned, many), row(fc, few), row(pruned, few)
    split = sops_split(base, weights_only)
    assert split["sops_spike_ratio"] == 1.0 and split["sops_spike_share"] == pytest.approx(0.0, abs=1e-12)
    assert split["sops_weight_ratio"] == pytest.approx(weights_only["sops"] / base["sops"])
    split = sops_split(base, spikes_only)
    assert split["sops_weight_ratio"] == pytest.approx(1.0) and split["sops_spike_share"] == pytest.approx(1.0)
    split = sops_split(base, both)
    assert split["sops_spike_ratio"] * split["sops_weight_ratio"] == pytest.approx(both["sops"] / base["sops"])
    assert 0 < split["sops_spike_share"] < 1
    assert sops_split({"sops": 0, "dense_sops": 0}, both)["sops_spike_ratio"] is None  # an ANN: no split
