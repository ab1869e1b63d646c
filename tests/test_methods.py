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
from snnprune.reparam import METHODS, SmoothThreshold, smooth_threshold
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
def test_fixed_masks_hand_out_the_latent_weight_zeroed_in_place_with_the_masked_gradient(kind):
    layer, pruner, opt, r, latent = _masked_layer(kind)
    keep = pruner.masks()[""]
    assert 0 < int(keep.sum()) < keep.numel()
    for _ in range(3):  # the momentum from before the cut moves the cut weights at every step
        opt.zero_grad()
        out = layer(torch.randn(4, 16))
        weight = layer.weight
        assert weight.data_ptr() == latent.data_ptr()  # no second copy of the weight
        assert torch.equal(weight.detach() != 0, keep)
        out.pow(2).mean().backward()
        assert torch.count_nonzero(latent.grad[~keep]) == 0  # the cut weights get no gradient
        opt.step()  # without pruner.step: the next forward zeroes them again all the same
    assert torch.equal(pruner.masks()[""], keep)
    with torch.inference_mode():  # a validation pass sees the same weight
        assert torch.equal(layer.weight != 0, keep)


def test_a_write_into_a_masked_weight_lasts_where_it_is_kept():
    layer, pruner, _, _, latent = _masked_layer("magnitude")
    keep = pruner.masks()[""]
    with torch.no_grad():
        layer.weight.fill_(0.25)
    assert torch.equal(layer.weight.detach(), 0.25 * keep)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["parametrizations.weight.original"].fill_(-1.0)  # a checkpoint with values where it is cut
    layer.load_state_dict(state)
    assert torch.equal(layer.weight.detach(), -1.0 * keep)


def test_gmp_follows_the_cubic_at_every_update_and_changes_masks_only_then():
    model = ann()
    schedule = Cubic(final=0.8, start=2, end=14, every=3)
    pruner = Pruner(model, "gmp", schedule)
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


@pytest.fixture(params=["never", "always"])
def kernels(request, monkeypatch):
    """The learned soft masks' eager path, and their fused kernels (compiled) on every layer."""
    monkeypatch.setenv("SNNPRUNE_FUSED_KERNELS", request.param)
    return request.param


# -- LTP -------------------------------------------------------------------------------------
def _ltp_layer(**kwargs):
    layer = nn.Linear(32, 16)
    pruner = Pruner(layer, "ltp", method_kwargs=kwargs)
    (_, module, reparam), = pruner.layers()
    return layer, pruner, reparam, module.parametrizations.weight.original


@pytest.mark.parametrize("path", ["fused", "plain"])
def test_ltp_forward_and_both_gradients_follow_the_formula(path, kernels):
    _, _, r, w = _ltp_layer(temperature=0.3, tau_init=0.7)
    with torch.no_grad():
        r.tau.fill_(0.8)
    scale, temperature = float(r.scale), 0.3
    v = r.effective_weight(w) if path == "fused" else r.transform(w)
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


def test_ltp_l0_term_reuses_the_forward_mask_with_the_same_value_and_gradient(kernels):
    layer, pruner, r, w = _ltp_layer(tau_init=0.3)
    plain = pruner.regularization()
    (grad_plain,) = torch.autograd.grad(plain, r.tau)
    layer(torch.randn(2, 32))  # fills the mask buffer
    assert r._fused.current(w, r._token()) is not None
    fused = pruner.regularization()
    (grad_fused,) = torch.autograd.grad(fused, r.tau)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(grad_fused, grad_plain)


def test_ltp_warns_once_when_every_mask_saturates_and_the_threshold_stalls(kernels):
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


def test_ltp_does_not_warn_while_masks_are_soft(kernels):
    layer, pruner, _, _ = _ltp_layer(window=2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(6):
            opt.zero_grad()
            (layer(torch.randn(4, 32)).pow(2).mean() + pruner.regularization()).backward()
            opt.step()
            pruner.step(opt)


@pytest.mark.parametrize("method", ["ltp", "smooth_threshold"])
def test_fused_kernels_take_the_large_layers_by_default(method, monkeypatch):
    from snnprune.reparam import _kernels

    monkeypatch.delenv("SNNPRUNE_FUSED_KERNELS", raising=False)
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, _kernels.MIN_NUMEL // 8))
    pruner = Pruner(model, method)
    model(torch.randn(2, 16)).sum().backward()
    small, large = (r for _, _, r in pruner.layers())
    if method == "ltp":  # the forward kernel returned the L0 term's sums; the eager path does not
        assert small._sums is None and large._sums is not None
    else:  # the eager path's five buffers, the kernel's three (v and the two sigmoids)
        assert len(small._fused.bufs) == 5 and len(large._fused.bufs) == 3


def test_a_probe_that_cannot_run_turns_writing_over_gradients_off_and_gradients_stay_exact(monkeypatch):
    from snnprune.reparam import _cache

    probes = []

    def broken(*args):
        probes.append(args)
        raise RuntimeError("intercepted")

    monkeypatch.setattr(_cache, "_HANDED_REFS", 0)
    monkeypatch.setattr(_cache, "_calibrated", False)
    monkeypatch.setattr(_cache._Probe, "apply", broken)
    _cache.calibrate()
    assert _cache._HANDED_REFS == 0 and _cache._calibrated
    _cache.calibrate()
    assert len(probes) == 1  # not retried (it was per layer): once per process, whatever the outcome
    layer, r, latent = _grad_layer("ltp", lambda: nn.Conv2d(4, 8, 3, padding=1))
    x = torch.randn(2, 4, 6, 6)
    layer(x).pow(2).mean().backward()
    torch.testing.assert_close(latent.grad, _reference_grad(layer, r, latent, x))
    assert r._grad_buffer.storage is not None  # the recycled buffer took it


def test_the_fused_kernels_compile_one_graph_for_layers_of_every_shape(monkeypatch):
    """Dynamo compiles a function a bounded number of times (``recompile_limit``) and then, with
    ``fullgraph=True``, fails for good: a guard per layer shape would send a long-running process
    (or one model with many layer shapes) to the eager path. One graph per kernel and dtype."""
    from snnprune.reparam import _kernels

    monkeypatch.setenv("SNNPRUNE_FUSED_KERNELS", "always")
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(recompile_limit=1), warnings.catch_warnings():
            warnings.simplefilter("error")  # "could not be compiled" would fail the test
            for method in ("ltp", "smooth_threshold"):
                torch.manual_seed(0)
                # 3x3 and 1x1 convolutions and a linear layer, each > 4096 weights
                model = nn.Sequential(nn.Conv2d(8, 64, 3, padding=1), nn.Conv2d(64, 96, 1),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 64))
                pruner = Pruner(model, method)
                for _ in range(2):
                    model.zero_grad(set_to_none=True)
                    (model(torch.randn(2, 8, 6, 6)).pow(2).mean() + pruner.regularization()).backward()
        for name in ("ltp_forward", "ltp_backward", "smooth_forward", "smooth_backward"):
            assert not getattr(_kernels, name).failed, name
        assert not _kernels.ltp_backward.over_gradient.failed
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("method", ["ltp", "smooth_threshold"])
def test_a_kernel_that_does_not_compile_warns_once_and_the_formula_runs(method, monkeypatch):
    from snnprune.reparam import _kernels

    monkeypatch.setenv("SNNPRUNE_FUSED_KERNELS", "always")
    for name in ("ltp_forward", "ltp_backward", "smooth_forward", "smooth_backward"):
        monkeypatch.setattr(_kernels, name, _kernels.FusedKernel(getattr(_kernels, name).fn))

    def no_compiler(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nlong details")
        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    results = {}
    for mode in ("always", "never"):
        monkeypatch.setenv("SNNPRUNE_FUSED_KERNELS", mode)
        torch.manual_seed(0)
        layer = nn.Linear(12, 6)
        pruner = Pruner(layer, method)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                layer.zero_grad()
                (layer(torch.ones(3, 12)).pow(2).sum() + pruner.regularization()).backward()
        notes = [str(w.message) for w in caught if "could not be compiled" in str(w.message)]
        results[mode] = ([p.grad.clone() for p in layer.parameters()], notes)
    fused_grads, notes = results["always"]
    assert len(notes) == 2 and all("no C++ compiler found" in n and "\n" not in n for n in notes)  # fwd, bwd
    assert results["never"][1] == []
    for a, b in zip(fused_grads, results["never"][0]):
        torch.testing.assert_close(a, b)


def test_fused_kernels_pass_only_the_inductor_options_this_torch_knows(monkeypatch):
    from snnprune.reparam import _kernels

    seen = []

    def fake_compile(fn, **kwargs):
        seen.append(kwargs.get("options"))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    assert _kernels._known_options({"realize_reads_threshold": 1, "no_such_option_here": 3}) == {
        "realize_reads_threshold": 1}
    kernel = _kernels.FusedKernel(lambda x: x + 1, {"realize_reads_threshold": 1, "no_such_option_here": 3})
    assert float(kernel(torch.tensor(1.0))) == 2.0
    plain = _kernels.FusedKernel(lambda x: x * 2)
    assert float(plain(torch.tensor(1.0))) == 2.0
    assert seen == [{"realize_reads_threshold": 1}, None]
    # the backward kernels write a gradient and reduce over it in one loop
    assert _kernels.ltp_backward.options == _kernels.smooth_backward.options == _kernels.ONE_LOOP


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


@pytest.mark.parametrize("beta", [8.0, 200.0])  # 200: most β(±w − t) lie beyond the kernel's sigmoid clamp
def test_smooth_threshold_fused_forward_and_gradients_equal_autograd_of_the_formula(kernels, beta):
    layer = nn.Linear(64, 32)
    with torch.no_grad():
        layer.weight[0, :4] = 0.0  # sign(0): v ≡ 0 there, in t too
    pruner = Pruner(layer, "smooth_threshold", method_kwargs={"t_init": 0.6, "beta": beta})
    (_, _, r), = pruner.layers()
    w = layer.parametrizations.weight.original
    g = torch.randn(32, 64)
    grads = []
    for forward in (r.effective_weight, r.transform):
        w.grad, r.raw_threshold.grad = None, None
        v = forward(w)
        (v * g).sum().backward()
        grads.append((v.detach(), w.grad.clone(), r.raw_threshold.grad.clone()))
    for fused, plain in zip(*grads):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


def test_smooth_threshold_fused_path_has_the_true_gradient_in_float64(kernels):
    layer = nn.Linear(10, 5)
    with torch.no_grad():
        layer.weight[0, :3] = 0.0  # sign(0): v ≡ 0 there, in t too
    pruner = Pruner(layer, "smooth_threshold", method_kwargs={"t_init": 0.6, "beta": 8.0})
    layer.double()
    (_, _, r), = pruner.layers()
    w = layer.parametrizations.weight.original.detach().clone().requires_grad_()
    raw = r.raw_threshold.detach().clone().requires_grad_()

    def fused(w, raw):
        r.invalidate()
        assert r._fast(w, raw)
        return torch.func.functional_call(r, {"raw_threshold": raw}, (w,))

    def plain(w, raw):  # the formula in plain autograd: t = scale·softplus(raw), β = beta/scale
        return smooth_threshold(w, r.scale * torch.nn.functional.softplus(raw), r.beta / float(r.scale))

    assert torch.autograd.gradcheck(fused, (w, raw), eps=1e-6, atol=1e-7)
    g = torch.randn(5, 10, dtype=torch.float64)
    got = torch.autograd.grad((fused(w, raw) * g).sum(), (w, raw))
    want = torch.autograd.grad((plain(w, raw) * g).sum(), (w, raw))
    torch.testing.assert_close(fused(w, raw), plain(w, raw), rtol=1e-12, atol=1e-14)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


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


# -- fixed masks: the per-step pass spared under torch's element-wise optimizers ------------
def _train(layer, pruner, opt, steps, between=None):
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        opt.zero_grad()
        layer(torch.randn(4, 16, generator=gen)).pow(2).mean().backward()
        opt.step()
        if between is not None:
            between()
        pruner.step(opt)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fixed_masks_skip_the_zeroing_pass_and_the_cut_weights_stay_exactly_zero(optimizer):
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    pruner = Pruner(layer, "magnitude")
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
            "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
            "adamw": lambda p: torch.optim.AdamW(p, lr=0.01)}[optimizer]
    opt = make(layer.parameters())
    _train(layer, pruner, opt, 3)  # state everywhere, then the cut
    pruner.prune_to(0.5)
    (_, _, r), = pruner.layers()
    latent, keep = layer.parametrizations.weight.original, pruner.masks()[""]
    _train(layer, pruner, opt, 2)  # the first step after the cut zeroes the state where it cuts
    assert all(torch.count_nonzero(v[~keep]) == 0 for v in opt.state[latent].values()
               if torch.is_tensor(v) and v.shape == latent.shape)
    for _ in range(4):
        version = latent._version
        layer(torch.randn(4, 16)).pow(2).mean().backward()
        assert latent._version == version  # the forward made no zeroing pass over θ
        opt.step()
        pruner.step(opt)
        opt.zero_grad()
    assert torch.count_nonzero(latent.detach()[~keep]) == 0  # and the cut weights are exactly 0
    assert torch.equal(layer.weight.detach() != 0, keep)


def test_a_write_into_the_latent_weight_between_steps_keeps_the_zeroing_pass():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    pruner = Pruner(layer, "magnitude")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    pruner.prune_to(0.5)
    _train(layer, pruner, opt, 2)
    keep = pruner.masks()[""]
    latent = layer.parametrizations.weight.original
    _train(layer, pruner, opt, 1, between=lambda: latent.detach().add_(0.5))  # weight noise
    assert torch.count_nonzero(latent.detach()[~keep]) > 0  # the write is there ...
    assert torch.equal(layer.weight.detach() != 0, keep)  # ... and the next forward zeroes it again


def test_an_optimizer_of_unknown_kind_keeps_the_zeroing_pass():
    class Signed(torch.optim.SGD):  # a subclass may step in any way: never trusted
        pass

    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    pruner = Pruner(layer, "magnitude")
    opt = Signed(layer.parameters(), lr=0.1)
    pruner.prune_to(0.5)
    _train(layer, pruner, opt, 2)
    (_, _, r), = pruner.layers()
    assert r._masked.key is None  # not spared: the next forward zeroes θ again


# -- the recycled gradient buffer --------------------------------------------------------------
def _grad_layer(kind, make=lambda: nn.Linear(16, 8)):
    torch.manual_seed(0)
    layer = make()
    pruner = Pruner(layer, kind, method_kwargs=OPTIONS.get(kind, {}))
    if kind == "magnitude":
        pruner.prune_to(0.5)
    (_, _, r), = pruner.layers()
    return layer, r, layer.parametrizations.weight.original


def _reference_grad(layer, r, latent, x, both=False):
    """θ's gradient through the method's plain formula (no buffers, no kernels); ``both``: and the
    gradient of the effective weight itself."""
    theta = latent.detach().clone().requires_grad_(True)
    mask = r.fixed_mask()
    weight = theta * mask if mask is not None else r.transform(theta)
    weight.retain_grad()
    if isinstance(layer, nn.Conv2d):
        out = torch.nn.functional.conv2d(x, weight, layer.bias.detach(), padding=layer.padding)
    else:
        out = torch.nn.functional.linear(x, weight, layer.bias.detach())
    out.pow(2).mean().backward()
    return (theta.grad, weight.grad) if both else theta.grad


@pytest.mark.parametrize("kind", ["magnitude", "ltp", "smooth_threshold"])
def test_the_gradient_of_theta_is_written_into_one_recycled_buffer_and_stays_exact(kind, kernels):
    layer, r, latent = _grad_layer(kind)
    x = torch.randn(4, 16)
    pointers = []
    for _ in range(3):  # zero_grad(set_to_none=True): θ.grad is the buffer itself, again and again
        layer.zero_grad(set_to_none=True)
        want = _reference_grad(layer, r, latent, x)
        layer(x).pow(2).mean().backward()
        torch.testing.assert_close(latent.grad, want)
        pointers.append(latent.grad.data_ptr())
    assert len(set(pointers)) == 1
    # gradient accumulation over two backwards (θ.grad holds the buffer: the second gets a new one)
    layer.zero_grad(set_to_none=True)
    want = _reference_grad(layer, r, latent, x)
    layer(x).pow(2).mean().backward()
    layer(x).pow(2).mean().backward()
    torch.testing.assert_close(latent.grad, 2 * want)
    # zero_grad(set_to_none=False): the buffer is added into θ.grad, which keeps its own memory
    kept = latent.grad
    layer.zero_grad(set_to_none=False)
    layer(x).pow(2).mean().backward()
    assert latent.grad is kept
    torch.testing.assert_close(latent.grad, want)
    # a gradient the user holds is never overwritten by a later backward
    layer.zero_grad(set_to_none=True)
    (held,) = torch.autograd.grad(layer(x).pow(2).mean(), latent)
    snapshot = held.clone()
    layer(x * 2).pow(2).mean().backward()
    assert torch.equal(held, snapshot)
    # a differentiable backward (create_graph) gets its own tensors
    layer.zero_grad(set_to_none=True)
    (g,) = torch.autograd.grad(layer(x).pow(2).mean(), latent, create_graph=True)
    torch.testing.assert_close(g, want)


# -- θ's gradient written over the incoming one ---------------------------------------------------
@pytest.mark.parametrize("kind", ["magnitude", "ltp", "smooth_threshold"])
def test_a_convolutions_weight_gradient_is_overwritten_in_place_only_where_nothing_else_sees_it(kind, kernels):
    layer, r, latent = _grad_layer(kind, lambda: nn.Conv2d(4, 8, 3, padding=1))
    x = torch.randn(2, 4, 6, 6)
    want, want_v = _reference_grad(layer, r, latent, x, both=True)
    # a convolution's weight gradient is the backward's alone: θ's gradient is written over it
    # (θ.grad is the memory the convolution's backward made, as in dense training), or, for the
    # smooth threshold's fused kernel (which cannot write over its input at speed), written into
    # the recycled buffer, which then keeps the incoming gradient's memory for the next backward
    adopted = kind == "smooth_threshold" and kernels == "always"
    incoming = []
    for _ in range(3):
        layer.zero_grad(set_to_none=True)
        weight = layer.weight
        weight.register_hook(lambda g: incoming.append(g.data_ptr()))  # keeps no reference
        torch.nn.functional.conv2d(x, weight, layer.bias, padding=1).pow(2).mean().backward()
        torch.testing.assert_close(latent.grad, want)
        if adopted:
            assert r._grad_buffer.storage.data_ptr() == incoming[-1]
            assert len(incoming) == 1 or latent.grad.data_ptr() == incoming[-2]
        else:
            assert latent.grad.data_ptr() == incoming[-1]
            assert r._grad_buffer.storage is None
    # the effective weight used twice: autograd's sum is the backward's alone as well
    layer.zero_grad(set_to_none=True)
    (layer(x).pow(2).mean() + layer(x).pow(2).mean()).backward()
    torch.testing.assert_close(latent.grad, 2 * want)
    assert (r._grad_buffer.storage is None) is not adopted

    def loss_of(weight):
        return torch.nn.functional.conv2d(x, weight, layer.bias, padding=1).pow(2).mean()

    # a hook that keeps the effective weight's gradient: it keeps it unmasked
    layer.zero_grad(set_to_none=True)
    weight, kept = layer.weight, []
    weight.register_hook(kept.append)
    loss_of(weight).backward()
    torch.testing.assert_close(kept[0], want_v)
    torch.testing.assert_close(latent.grad, want)
    # torch.autograd.grad for the effective weight and θ at once: each its own gradient
    layer.zero_grad(set_to_none=True)
    weight = layer.weight
    got_v, got = torch.autograd.grad(loss_of(weight), [weight, latent])
    torch.testing.assert_close(got_v, want_v)
    torch.testing.assert_close(got, want)
    # a gradient the user hands in is never written over
    layer.zero_grad(set_to_none=True)
    handed = want_v.clone()
    layer.weight.backward(handed)
    assert torch.equal(handed, want_v)
    torch.testing.assert_close(latent.grad, want)
    # the same gradient handed to two inputs (an addition): neither is written over
    layer.zero_grad(set_to_none=True)
    weight = layer.weight
    other = torch.zeros_like(weight, requires_grad=True)
    loss_of(weight + other).backward()
    torch.testing.assert_close(other.grad, want_v)
    torch.testing.assert_close(latent.grad, want)
