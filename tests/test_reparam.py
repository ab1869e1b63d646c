import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from snnprune.reparam import STR, SoftThreshold, soft_threshold


def reference_soft_threshold(theta, d):
    return torch.sign(theta) * torch.clamp(theta.abs() - d, min=0)


def test_soft_threshold_value_matches_formula():
    theta = torch.randn(1000, dtype=torch.float64)
    for d in (0.0, 0.1, 0.7, 5.0):
        out = SoftThreshold(d)(theta)
        assert torch.equal(out, reference_soft_threshold(theta, d))


def test_soft_threshold_gradient_is_one_everywhere_including_zero_latent():
    theta = torch.tensor([-2.0, -0.05, 0.0, 0.05, 2.0], requires_grad=True)
    upstream = torch.tensor([0.3, -1.0, 2.0, 4.0, -5.0])
    (SoftThreshold(0.1)(theta) * upstream).sum().backward()
    assert torch.equal(theta.grad, upstream)
    assert theta.grad[2] == 2.0  # a latent weight of exactly 0 still learns


def test_ste_and_str_gradients_differ_exactly_on_pruned_coordinates():
    theta0 = torch.randn(500)
    d = 0.4
    s_init = torch.logit(torch.tensor(d)).item()
    upstream = torch.randn(500)
    grads = []
    for reparam in (SoftThreshold(d), STR(s_init=s_init)):
        theta = theta0.clone().requires_grad_(True)
        (reparam(theta) * upstream).sum().backward()
        grads.append(theta.grad)
    ste, str_ = grads
    pruned = theta0.abs() <= d
    assert pruned.any() and (~pruned).any()
    differ = ste != str_
    assert torch.equal(differ, pruned & (upstream != 0))
    assert torch.equal(str_[pruned], torch.zeros(int(pruned.sum())))
    assert torch.equal(ste[~pruned], str_[~pruned])


def test_str_threshold_is_sigmoid_of_s_and_learns():
    reparam = STR(s_init=-1.0)
    theta = torch.randn(100)
    expected = reference_soft_threshold(theta, torch.sigmoid(torch.tensor(-1.0)))
    assert torch.allclose(reparam(theta), expected)
    reparam(theta).pow(2).sum().backward()
    assert reparam.s.grad is not None and reparam.s.grad != 0


def test_negative_threshold_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        SoftThreshold(-0.1)
    with pytest.raises(ValueError, match="threshold"):
        SoftThreshold(0.1).set_threshold(-1)
    with pytest.raises(ValueError, match="threshold"):
        soft_threshold(torch.ones(2), -1.0)


def test_functional_soft_threshold_true_gradient_option():
    theta = torch.tensor([-1.0, 0.05, 1.0], requires_grad=True)
    soft_threshold(theta, 0.1, straight_through=False).sum().backward()
    assert torch.equal(theta.grad, torch.tensor([1.0, 0.0, 1.0]))


def test_is_a_parametrization_keeping_the_same_parameter_object():
    layer = nn.Linear(6, 3)
    original = layer.weight
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)  # built before pruning
    parametrize.register_parametrization(layer, "weight", SoftThreshold(0.2))
    assert layer.parametrizations.weight.original is original
    before = original.detach().clone()
    layer(torch.randn(4, 6)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, original.detach())


def test_threshold_survives_state_dict_round_trip():
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    parametrize.register_parametrization(a, "weight", SoftThreshold(0.3))
    parametrize.register_parametrization(b, "weight", SoftThreshold(0.0))
    b.load_state_dict(a.state_dict())
    assert b.parametrizations.weight[0].current_threshold() == pytest.approx(0.3)
    assert torch.equal(a.weight, b.weight)


def test_freeze_keeps_weights_and_fixes_mask():
    layer = nn.Linear(20, 20)
    parametrize.register_parametrization(layer, "weight", SoftThreshold(0.1))
    before = layer.weight.detach().clone()
    reparam = layer.parametrizations.weight[0]
    reparam.freeze(layer.parametrizations.weight.original)
    assert torch.equal(layer.weight, before)
    layer(torch.randn(3, 20)).sum().backward()
    grad = layer.parametrizations.weight.original.grad
    assert torch.equal(grad[before == 0], torch.zeros(int((before == 0).sum())))
    # a frozen mask is restored into a layer that was never frozen
    fresh = nn.Linear(20, 20)
    parametrize.register_parametrization(fresh, "weight", SoftThreshold(0.0))
    fresh.load_state_dict(layer.state_dict())
    assert fresh.parametrizations.weight[0].frozen
    assert torch.equal(fresh.weight, before)


def test_compiled_path_matches_eager():
    reparam = SoftThreshold(0.25)
    theta = torch.randn(64)
    compiled = torch.compile(lambda t: reparam(t), backend="eager", fullgraph=True)
    assert torch.equal(compiled(theta), reparam(theta))


def parametrized_linear(d=0.1):
    layer = nn.Linear(6, 4)
    parametrize.register_parametrization(layer, "weight", SoftThreshold(d))
    return layer, layer.parametrizations.weight.original


def test_cached_weight_is_reused_and_follows_every_optimizer_step():
    layer, theta = parametrized_linear()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    first = layer.weight.data_ptr()  # (no reference kept: a kept weight gets a buffer of its own)
    for _ in range(3):
        layer(torch.randn(5, 6)).sum().backward()
        optimizer.step()
        assert torch.equal(layer.weight, reference_soft_threshold(theta.detach(), 0.1))
        assert layer.weight.data_ptr() == first  # the same buffer, no new allocation
    layer.parametrizations.weight[0].set_threshold(0.3)
    assert torch.equal(layer.weight, reference_soft_threshold(theta.detach(), 0.3))


def test_repeated_reads_in_one_forward_get_the_full_gradient():
    layer, theta = parametrized_linear()
    x = torch.randn(3, 6)
    (layer(x).sum() + layer(x).sum()).backward()  # e.g. a single-step SNN reading the weight T times
    dense = nn.Linear(6, 4)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        dense.bias.copy_(layer.bias)
    (dense(x).sum() + dense(x).sum()).backward()
    assert torch.allclose(theta.grad, dense.weight.grad)


def test_a_graph_built_before_a_change_backpropagates_through_the_weight_it_used():
    layer, theta = parametrized_linear()
    x = torch.randn(3, 6, requires_grad=True)
    used = layer.weight.detach().clone()
    out = layer(x).sum()
    with torch.no_grad():
        theta.add_(1.0)
    layer.parametrizations.weight[0].set_threshold(0.2)
    out2 = layer(x).sum()  # the buffer is still held by the first graph: a fresh one is filled
    (out + out2).backward()
    expected = used.sum(0) + reference_soft_threshold(theta.detach(), 0.2).sum(0)
    assert torch.allclose(x.grad, expected.expand_as(x))


def test_a_kept_weight_does_not_change_under_the_user():
    layer, theta = parametrized_linear()
    kept = layer.weight.detach()
    before = kept.clone()
    with torch.no_grad():
        theta.add_(1.0)
    layer(torch.randn(2, 6))
    assert torch.equal(kept, before)
    assert not torch.equal(layer.weight, before)


def test_writes_through_data_need_invalidate():
    layer, theta = parametrized_linear()
    _ = layer.weight  # fills the cache
    theta.data.fill_(1.0)  # bypasses the version counter
    layer.parametrizations.weight[0].invalidate()
    assert torch.equal(layer.weight, torch.full((4, 6), 0.9))


def test_deepcopy_does_not_share_the_cache():
    import copy

    layer, _ = parametrized_linear()
    _ = layer.weight  # fills the cache
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        twin.parametrizations.weight.original.fill_(2.0)
    assert torch.equal(twin.weight, torch.full((4, 6), 1.9))
    assert not torch.equal(layer.weight, twin.weight)
    assert layer.parametrizations.weight[0]._cache is not None


def test_frozen_mask_follows_the_latent_device_and_dtype_after_loading():
    layer, theta = parametrized_linear()
    layer.parametrizations.weight[0].freeze(theta)
    state = layer.state_dict()
    fresh, _ = parametrized_linear(0.0)
    fresh = fresh.double()  # a model on another dtype (or device) than the checkpoint
    fresh.load_state_dict(state)
    out = fresh(torch.randn(2, 6, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert torch.equal(fresh.weight.float(), layer.weight)


@pytest.mark.parametrize("threshold", [0.0, 1e-320, 0.5])
def test_threshold_projection_scores_are_finite_at_any_threshold(threshold):
    from snnprune.reparam.base import threshold_projection

    latent = torch.tensor([0.0, -0.25, 0.75, 2.0])
    kept = latent.abs() > threshold
    weight = latent * kept
    scores, back = threshold_projection(latent, kept, weight, threshold)
    assert torch.isfinite(scores).all() and scores.dtype == torch.float64
    assert float(scores[0]) == 0.0  # an exact zero scores 0 (never above a kept weight)
    assert (scores[kept] > 1).all() and (scores[~kept] <= 1).all()
    assert (back != 0).all()  # a weight brought back is never exactly 0
    torch.testing.assert_close(back[kept], latent[kept])


def test_str_projection_survives_a_threshold_that_underflowed():
    layer = nn.Linear(4, 3)
    r = STR(s_init=-200.0)  # sigmoid(-200) underflows to 0 in float32
    parametrize.register_parametrization(layer, "weight", r)
    latent = layer.parametrizations.weight.original
    assert r.current_threshold() == 0.0
    scores, _ = r.projection(latent)
    assert torch.isfinite(scores).all()
