import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from snnprune import Pruner
from snnprune.reparam import STR, SoftThreshold, soft_threshold
from snnprune.schedules import Constant


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


def test_the_weight_follows_every_optimizer_step_and_threshold_change():
    layer, theta = parametrized_linear()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        layer(torch.randn(5, 6)).sum().backward()
        optimizer.step()
        assert torch.equal(layer.weight, reference_soft_threshold(theta.detach(), 0.1))
    layer.parametrizations.weight[0].set_threshold(0.3)
    assert torch.equal(layer.weight, reference_soft_threshold(theta.detach(), 0.3))
    with torch.no_grad():
        layer.parametrizations.weight[0].threshold.fill_(0.4)  # the buffer is the one source of truth
    assert torch.equal(layer.weight, reference_soft_threshold(theta.detach(), 0.4))


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


def test_str_gradients_in_theta_and_s_are_the_papers():
    theta = torch.randn(300, dtype=torch.float64, requires_grad=True)
    r = STR(s_init=-1.0).double()
    g = torch.randn(300, dtype=torch.float64)
    (r(theta) * g).sum().backward()
    x = theta.detach().clone().requires_grad_(True)
    s = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    d = torch.sigmoid(s)
    (torch.sign(x) * torch.relu(x.abs() - d) * g).sum().backward()  # Kusupati et al., eq. 3
    assert torch.equal(r(theta).detach(), (torch.sign(x) * torch.relu(x.abs() - d)).detach())
    torch.testing.assert_close(theta.grad, x.grad, rtol=0, atol=0)
    torch.testing.assert_close(r.s.grad, s.grad)


METHOD_OPTIONS = {"soft_threshold": {"schedule": Constant(0.05)}, "ltp": {"method_kwargs": {"tau_init": 0.5}},
                  "str": {"method_kwargs": {"s_init": -3.0}}, "smooth_threshold": {"method_kwargs": {"t_init": 0.5}}}


def _pruned_mlp(method, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    options = dict(METHOD_OPTIONS.get(method, {}))
    pruner = Pruner(model, method, options.pop("schedule", None), **options)
    if method in ("magnitude", "random", "gmp"):
        pruner.prune_to(0.5)
    return model, pruner


def _train_steps(model, pruner, opt, steps, ema=None):
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        opt.zero_grad()
        (model(torch.randn(4, 8, generator=gen)).pow(2).mean() + pruner.regularization()).backward()
        opt.step()
        pruner.step(opt)
        if ema is not None:
            ema.update_parameters(model)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("method", ["soft_threshold", "str", "ltp", "smooth_threshold", "magnitude", "random", "gmp"])
def test_a_state_dict_round_trip_resumes_the_same_weights_masks_and_gradients(method, frozen):
    model, pruner = _pruned_mlp(method)
    _train_steps(model, pruner, torch.optim.SGD(model.parameters(), lr=0.1), 2)
    if frozen:
        pruner.freeze()
    fresh, fresh_pruner = _pruned_mlp(method, seed=1)
    fresh.load_state_dict(model.state_dict())
    assert fresh_pruner.frozen == frozen
    x = torch.randn(3, 8)
    for m in (model, fresh):
        m.zero_grad()
        (m(x).pow(2).mean() + 0 * x.sum()).backward()
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a.detach(), b.detach()), name
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), name
    for name in ("0", "2"):
        assert torch.equal(model.get_submodule(name).weight, fresh.get_submodule(name).weight)
    assert {k: torch.equal(v, fresh_pruner.masks()[k]) for k, v in pruner.masks().items()} == {"0": True, "2": True}


def test_a_checkpoint_from_before_is_frozen_existed_loads():
    layer, theta = parametrized_linear()
    layer.parametrizations.weight[0].freeze(theta)
    state = layer.state_dict()
    del state["parametrizations.weight.0.is_frozen"]  # a mask entry alone meant frozen
    fresh, _ = parametrized_linear(0.0)
    fresh.load_state_dict(state)
    assert fresh.parametrizations.weight[0].frozen
    assert torch.equal(fresh.weight, layer.weight)
    hard = nn.Linear(6, 4)  # a hard mask's mask was saved as "keep"
    Pruner(hard, "magnitude").prune_to(0.5)
    state = hard.state_dict()
    state["parametrizations.weight.0.keep"] = state.pop("parametrizations.weight.0.mask")
    del state["parametrizations.weight.0.is_frozen"]
    other = nn.Linear(6, 4)
    Pruner(other, "magnitude")
    other.load_state_dict(state)
    assert torch.equal(other.weight, hard.weight) and int((other.weight == 0).sum()) == 12


@pytest.mark.parametrize("method", ["soft_threshold", "ltp", "smooth_threshold", "str", "magnitude", "gmp"])
def test_an_ema_with_averaged_buffers_keeps_updating_through_freeze_and_the_last_projection(method):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    if method in ("soft_threshold", "ltp", "smooth_threshold", "str", "gmp"):
        # a target: the learned methods freeze at its last projection
        pruner = Pruner(model, method, target_sparsity=0.5, total_steps=3)
    else:
        pruner = Pruner(model, method)
        pruner.prune_to(0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    shapes = [b.shape for b in model.buffers()]
    _train_steps(model, pruner, opt, 2, ema)
    pruner.freeze()  # (a no-op for a pruner its projection froze already)
    _train_steps(model, pruner, opt, 3, ema)
    assert pruner.frozen
    assert [b.shape for b in model.buffers()] == shapes  # the buffer list never changed
    live = dict(model.named_buffers())
    for name, averaged in ema.module.named_buffers():
        assert averaged.shape == live[name].shape, name
    before = [t.detach().clone() for t in (*ema.module.parameters(), *ema.module.buffers())]
    ema.update_parameters(model)  # one more update after freezing: each entry moves halfway to the live one
    after = [*ema.module.parameters(), *ema.module.buffers()]
    for old, new, now in zip(before, after, (*model.parameters(), *model.buffers())):
        if new.is_floating_point():
            torch.testing.assert_close(new.detach(), torch.lerp(old, now.detach(), 0.5))


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
