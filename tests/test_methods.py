"""Every registered pruning method, on an ANN and on a SEW SNN: what is reported pruned is what
finalize zeroes, the finalized model loads into its own architecture; and each method's own rules
(magnitude = torch.nn.utils.prune, GMP follows the cubic, LTP's gradients and L0 term, the smooth
threshold's shape and regulariser)."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from snnprune import Pruner
from snnprune.models import create_model
from snnprune.reparam import METHODS, SmoothThreshold, smooth_threshold, zero_optimizer_state
from snnprune.schedules import Constant, Cubic

#: the library's own methods (toy methods registered by other tests are not in snnprune.*)
LIBRARY_METHODS = sorted(n for n, cls in METHODS.items() if cls.__module__.startswith("snnprune."))

#: options that make a few steps prune something visible
OPTIONS = {
    "str": {"s_init": -3.5},  # d = sigmoid(-3.5) ≈ 0.03
    "ltp": {"l0": 1.0, "tau_init": 0.5},  # w² < mean(w²)/2 pruned at the start
    "smooth_threshold": {"threshold_reg": 1.0, "t_init": 0.5},
}


def ann() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )


def snn() -> nn.Module:
    return create_model("sew_digits", T=2)


ARCHITECTURES = {"ann": ann, "snn": snn}


def attach(model: nn.Module, method: str, **kwargs) -> Pruner:
    control = METHODS[method].control
    pruner = Pruner(model, method, Constant(0.0) if control == "threshold" else None,
                    method_kwargs=OPTIONS.get(method), **kwargs)
    if control in ("threshold", "sparsity"):
        pruner.prune_to(0.5)
    return pruner


def train(model: nn.Module, pruner: Pruner, steps: int = 3, lr: float = 0.05) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.rand(6, 1, 8, 8, generator=gen), torch.randint(0, 10, (6,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + pruner.regularization()
        loss.backward()
        opt.step()
        pruner.step(opt)


def trained(method: str, arch: str) -> tuple[nn.Module, Pruner]:
    model = ARCHITECTURES[arch]()
    pruner = attach(model, method)
    train(model, pruner)
    return model, pruner


def test_every_library_method_is_covered():
    assert {"soft_threshold", "str", "magnitude", "gmp", "random", "ltp", "smooth_threshold"} <= set(LIBRARY_METHODS)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_what_is_reported_pruned_is_exactly_what_finalize_zeroes(method, arch):
    _, pruner = trained(method, arch)
    masks, report = pruner.masks(), pruner.sparsity()
    assert 0 < report.total < 1
    plain = pruner.finalize()
    weights = dict(plain.named_modules())
    for name, keep in masks.items():
        weight = weights[name].weight
        assert torch.equal(weight != 0, keep), name
        assert report.layers[name] == float((weight == 0).sum()) / weight.numel()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_the_finalized_state_dict_loads_strictly_into_the_architecture_and_computes_the_same(method, arch):
    _, pruner = trained(method, arch)
    plain = pruner.finalize().eval()
    fresh = ARCHITECTURES[arch]()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    fresh.eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(plain(x), fresh(x))


# -- magnitude baselines ------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_masks_equal_torch_prune_masks(arch, scope):
    model = ARCHITECTURES[arch]()
    reference = copy.deepcopy(model)
    pruner = Pruner(model, "magnitude", scope=scope)
    pruner.prune_to(0.5)
    modules = dict(reference.named_modules())
    targets = [(modules[name], "weight") for name in pruner.layer_names]
    if scope == "layer":
        for module, tensor in targets:
            torch_prune.l1_unstructured(module, tensor, amount=0.5)
    else:
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.5)
    for (name, keep), (module, _) in zip(pruner.masks().items(), targets):
        assert torch.equal(keep, module.weight_mask.bool()), name


def _masked_layer(kind):
    """A layer with a fixed mask, trained before the cut with momentum (the optimizer's state is
    non-zero where the mask cuts): a hard-mask method after ``prune_to``, or a frozen soft
    threshold."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    pruner = Pruner(layer, kind) if kind != "soft_threshold" else Pruner(layer, kind, Constant(0.05))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(4, 16)).pow(2).mean().backward()
        opt.step()
        pruner.step(opt)
    if kind == "soft_threshold":
        pruner.freeze()
    else:
        pruner.prune_to(0.5)
    (_, _, r), = pruner.layers()
    return layer, pruner, opt, r, layer.parametrizations.weight.original


@pytest.mark.parametrize("kind", ["magnitude", "random", "gmp", "soft_threshold"])
def test_fixed_masks_are_latent_times_mask_with_the_masked_gradient_as_in_torch_prune(kind):
    layer, pruner, opt, r, latent = _masked_layer(kind)
    keep = pruner.masks()[""]
    assert 0 < int(keep.sum()) < keep.numel()
    for _ in range(3):  # the momentum from before the cut moves the cut latent weights: the mask hides them
        opt.zero_grad()
        x = torch.randn(4, 16)
        out = layer(x)
        assert torch.equal(layer.weight.detach(), latent.detach() * keep)
        out.pow(2).mean().backward()
        theta = latent.detach().clone().requires_grad_(True)
        nn.functional.linear(x, theta * keep.float(), layer.bias.detach()).pow(2).mean().backward()
        assert torch.equal(latent.grad, theta.grad)  # exactly torch.nn.utils.prune's gradient
        assert torch.count_nonzero(latent.grad[~keep]) == 0
        opt.step()
        pruner.step(opt)
    assert torch.equal(pruner.masks()[""], keep)
    with torch.inference_mode():  # a validation pass sees the same weight
        assert torch.equal(layer.weight != 0, keep & (latent != 0))


def test_zero_optimizer_state_stops_the_momentum_of_the_cut_weights():
    layer, pruner, opt, r, latent = _masked_layer("magnitude")
    keep = pruner.masks()[""]
    zero_optimizer_state(opt, latent, keep)
    before = latent.detach().clone()
    opt.zero_grad()
    layer(torch.randn(4, 16)).pow(2).mean().backward()
    opt.step()
    assert torch.equal(latent.detach()[~keep], before[~keep])  # no gradient, no momentum: at rest
    assert not torch.equal(latent.detach()[keep], before[keep])


def test_a_checkpoint_loads_into_a_masked_layer():
    layer, pruner, _, _, latent = _masked_layer("magnitude")
    keep = pruner.masks()[""]
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["parametrizations.weight.original"].fill_(-1.0)  # a checkpoint with values where it is cut
    layer.load_state_dict(state)
    assert torch.equal(layer.weight.detach(), -1.0 * keep)


def test_gmp_follows_the_cubic_at_every_update_and_changes_masks_only_then():
    model = ann()
    schedule = Cubic(final=0.8, start=2, end=14, every=3)
    pruner = Pruner(model, "gmp", schedule, scope="global")  # one ranking: the count is the cubic's
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    total = sum(m.numel() for m in pruner.masks().values())
    previous = pruner.masks()
    updates = 0
    gen = torch.Generator().manual_seed(2)
    for step in range(1, 19):
        opt.zero_grad()
        x, y = torch.rand(4, 1, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step(opt)
        masks = pruner.masks()
        changed = any(not torch.equal(masks[k], previous[k]) for k in masks)
        if schedule.updates_at(step):
            updates += 1
            pruned = sum(int((~m).sum()) for m in masks.values())
            assert pruned == round(schedule(step) * total), step
        else:
            assert not changed, step
        previous = masks
    assert updates == 5  # steps 2, 5, 8, 11, 14
    assert pruner.sparsity().pruned == pytest.approx(0.8, abs=1 / total)


# -- LTP -------------------------------------------------------------------------------------
def _ltp_layer(**kwargs):
    layer = nn.Linear(32, 16)
    pruner = Pruner(layer, "ltp", method_kwargs=kwargs)
    (_, module, reparam), = pruner.layers()
    return layer, pruner, reparam, module.parametrizations.weight.original


def test_ltp_forward_and_both_gradients_follow_the_formula():
    layer, _, r, w = _ltp_layer(temperature=0.3, tau_init=0.7)
    with torch.no_grad():
        r.tau.fill_(0.8)
    scale, temperature = float(r.scale), 0.3
    v = layer.weight
    g = torch.randn_like(v)
    (v * g).sum().backward()
    wd = w.detach()
    m = torch.sigmoid((wd**2 - 0.8 * scale) / (temperature * scale))  # σ((w² − τ_l)/T_l)
    torch.testing.assert_close(v.detach(), wd * m)
    torch.testing.assert_close(w.grad, g * m)  # the mask is a constant in w
    # ∂v/∂τ_l = −w·m(1−m)/T_l, and τ_l = tau·scale
    torch.testing.assert_close(r.tau.grad, (-(g * wd * m * (1 - m)).sum() / (temperature * scale)) * scale)


def test_ltp_hard_mask_and_final_weight_threshold_the_squared_weights():
    _, pruner, r, w = _ltp_layer(tau_init=1.0)
    keep = w.detach() ** 2 > float(r.scale)
    assert torch.equal(r.hard_mask(w), keep)
    assert torch.equal(r.final_weight(w), w.detach() * keep)
    assert pruner.thresholds()[""] == pytest.approx(math.sqrt(float(r.scale)))


def test_ltp_l0_term_is_the_soft_kept_fraction_over_all_pruned_layers():
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    pruner = Pruner(model, "ltp", method_kwargs={"l0": 2.0, "tau_init": -1e4})  # every m ≈ 1
    assert float(pruner.regularization().detach()) == pytest.approx(2.0)
    for _, _, r in pruner.layers():
        with torch.no_grad():
            r.tau.fill_(1e4)  # every m ≈ 0
    assert float(pruner.regularization().detach()) == pytest.approx(0.0, abs=1e-6)


def test_ltp_l0_term_alone_raises_every_threshold():
    model = ann()
    pruner = Pruner(model, "ltp", method_kwargs={"l0": 1.0})
    opt = torch.optim.SGD(pruner.parameters(), lr=0.5)
    before = {n: float(r.tau.detach()) for n, _, r in pruner.layers()}
    penalties = []
    for _ in range(5):
        opt.zero_grad()
        penalty = pruner.regularization()
        penalty.backward()
        opt.step()
        penalties.append(float(penalty.detach()))
    assert all(float(r.tau.detach()) > before[n] for n, _, r in pruner.layers())
    assert penalties == sorted(penalties, reverse=True) and penalties[-1] < penalties[0]
    assert pruner.sparsity().pruned > 0


def test_ltp_warns_once_when_every_mask_saturates_and_the_threshold_stalls():
    layer, pruner, _, _ = _ltp_layer(temperature=1e-6, window=2)  # T far below every w²
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            opt.zero_grad()
            (layer(torch.randn(4, 32)).pow(2).mean() + pruner.regularization()).backward()
            opt.step()
            pruner.step(opt)
    stalls = [w for w in caught if "premature termination" in str(w.message)]
    assert len(stalls) == 1


def test_ltp_does_not_warn_while_masks_are_soft():
    layer, pruner, _, _ = _ltp_layer(window=2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(6):
            opt.zero_grad()
            (layer(torch.randn(4, 32)).pow(2).mean() + pruner.regularization()).backward()
            opt.step()
            pruner.step(opt)


# -- smooth threshold ---------------------------------------------------------------------
def test_smooth_threshold_is_x_far_above_t_and_zero_below_it_when_sharp():
    t = torch.tensor(0.1)
    far = torch.tensor([-5.0, -2.0, 2.0, 5.0])
    torch.testing.assert_close(smooth_threshold(far, t, beta=50.0), far, rtol=1e-6, atol=1e-6)
    below = torch.linspace(-0.09, 0.09, 19)
    assert smooth_threshold(below, t, beta=1e4).abs().max() < 1e-6


def test_smooth_threshold_is_odd_non_decreasing_and_zero_at_zero():
    x = torch.linspace(-3, 3, 20001, dtype=torch.float64)
    t = torch.tensor(0.5, dtype=torch.float64)
    for beta in (1.0, 10.0, 100.0):
        v = smooth_threshold(x, t, beta)
        assert (v.diff() >= 0).all()
        torch.testing.assert_close(smooth_threshold(-x, t, beta), -v)
        assert float(smooth_threshold(torch.zeros(1, dtype=torch.float64), t, beta)) == 0


def test_smooth_threshold_forward_and_gradients_are_the_papers_formula_in_float64():
    layer = nn.Linear(10, 5)
    with torch.no_grad():
        layer.weight[0, :3] = 0.0  # sign(0): v ≡ 0 there, in t too
    pruner = Pruner(layer, "smooth_threshold", method_kwargs={"t_init": 0.6, "beta": 8.0})
    layer.double()
    (_, _, r), = pruner.layers()
    w = layer.parametrizations.weight.original
    scale = r.scale.detach().clone()

    def paper(x, raw):  # Manessi et al.: t = scale·softplus(raw), β = beta/scale
        t = scale * torch.nn.functional.softplus(raw)
        b = 8.0 / scale
        return (torch.relu(x - t) + t * torch.sigmoid(b * (x - t))
                - torch.relu(-x - t) - t * torch.sigmoid(b * (-x - t)))

    g = torch.randn(5, 10, dtype=torch.float64)
    v = layer.weight
    (v * g).sum().backward()
    x = w.detach().clone().requires_grad_(True)
    raw = r.raw_threshold.detach().clone().requires_grad_(True)
    want = paper(x, raw)
    (want * g).sum().backward()
    torch.testing.assert_close(v.detach(), want.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(w.grad, x.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.raw_threshold.grad, raw.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: torch.func.functional_call(r, {"raw_threshold": b}, (a,)),
                                    (x.detach().requires_grad_(), raw.detach().requires_grad_()), eps=1e-6, atol=1e-7)


def test_smooth_threshold_regulariser_alone_raises_every_threshold():
    model = ann()
    pruner = Pruner(model, "smooth_threshold", method_kwargs={"threshold_reg": 1.0})
    assert 0 < float(pruner.regularization().detach()) <= 1.0
    opt = torch.optim.SGD(pruner.parameters(), lr=1.0)
    before = pruner.thresholds()
    for _ in range(3):
        opt.zero_grad()
        pruner.regularization().backward()
        opt.step()
    after = pruner.thresholds()
    assert all(after[n] > before[n] for n in before)


def test_smooth_threshold_prunes_where_the_weight_is_at_most_the_threshold():
    layer = nn.Linear(16, 8)
    pruner = Pruner(layer, SmoothThreshold(t_init=0.8))
    (_, _, r), = pruner.layers()
    w = layer.parametrizations.weight.original
    t = r.current_threshold()
    assert torch.equal(pruner.masks()[""], w.detach().abs() > t)


