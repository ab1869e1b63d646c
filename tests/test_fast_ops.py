"""The fast forms of snnprune._ops compute what the reference forms (the papers' formulas under
autograd) compute: the same values and the same gradients in the weights and the threshold,
at the edges too, and the one switch between them changes nothing a training run can see."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnprune import Pruner, _ops
from snnprune.reparam import SmoothThreshold, SoftThreshold

DTYPES = (torch.float32, torch.float64)


@pytest.fixture
def forms():
    """Run a callable under each form and restore the switch."""
    def run(fn):
        out = {}
        for fast in (False, True):
            previous = _ops.use_fast(fast)
            try:
                out[fast] = fn()
            finally:
                _ops.use_fast(previous)
        return out[False], out[True]
    return run


def edge_weights(d: float, dtype) -> torch.Tensor:
    """Random weights plus the edges: exactly ±d, zeros of both signs, just inside and outside."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor([d, -d, 0.0, -0.0, d * 0.5, -d * 1.5, 2 * d + 1.0], dtype=dtype)
    if d > 0:
        edges = torch.cat([edges, torch.tensor([d, -d], dtype=dtype).nextafter(torch.zeros(2, dtype=dtype))])
    return torch.cat([torch.randn(300, generator=gen, dtype=dtype) * max(d, 0.1), edges])


def value_and_grads(op, x0, t0, upstream):
    x = x0.clone().requires_grad_(True)
    t = t0.clone().requires_grad_(True)
    v = op(x, t)
    (v * upstream).sum().backward()
    return v.detach(), x.grad, t.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [0.0, 0.1, 0.7])
def test_str_values_and_gradients_are_the_formulas_at_the_edges(dtype, d):
    theta = edge_weights(d, dtype)
    upstream = torch.randn(theta.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    w, grad_theta, grad_d = value_and_grads(_ops.str_threshold, theta, torch.tensor(d, dtype=dtype), upstream)
    kept = theta.abs() > d
    assert torch.equal(w, torch.where(kept, theta - d * torch.sign(theta), 0.0))
    assert torch.equal(grad_theta, torch.where(kept, upstream, 0.0))  # θ exactly at ±d: pruned, no gradient
    torch.testing.assert_close(grad_d, -(upstream * torch.sign(theta) * kept).sum(),
                               rtol=10 * torch.finfo(dtype).eps * len(theta), atol=0)  # one sum, any order


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0.0, 0.05, 0.5])
def test_smooth_threshold_fast_form_equals_the_formula_values_and_gradients(forms, dtype, t):
    x0 = edge_weights(t, dtype)
    upstream = torch.randn(x0.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    beta = 40.0
    ref, fast = forms(lambda: value_and_grads(lambda x, th: _ops.smooth_threshold(x, th, beta), x0,
                                              torch.tensor(t, dtype=dtype), upstream))
    # the fast form groups the same terms differently (r + t·(a − b), tβ factored out of the
    # sigmoids' slopes): equal to rounding, a few ulps of the largest term per element, and the
    # threshold's gradient one sum of such terms
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(fast[0], ref[0], rtol=8 * eps, atol=8 * eps * (1 + t))
    torch.testing.assert_close(fast[1], ref[1], rtol=8 * eps, atol=8 * eps * (1 + beta * t))
    torch.testing.assert_close(fast[2], ref[2], rtol=1e3 * eps, atol=8 * eps * len(x0) * (1 + beta * t))


def test_smooth_threshold_fast_form_is_exactly_odd_and_zero_at_zero():
    x = torch.randn(200, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    previous = _ops.use_fast(True)
    try:
        assert torch.equal(_ops.smooth_threshold(-x, t, 7.0), -_ops.smooth_threshold(x, t, 7.0))
        assert float(_ops.smooth_threshold(torch.zeros(1, dtype=torch.float64), t, 7.0)) == 0.0
    finally:
        _ops.use_fast(previous)


def test_the_operators_pass_gradcheck_and_str_passes_gradgradcheck():
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(40, generator=gen, dtype=torch.float64) + 0.1) * torch.tensor([1.0, -1.0]).repeat(20)
    x = x.requires_grad_(True)  # |x| in [0.1, 1.1], away from d = 0.5 by more than gradcheck's step
    x = torch.where((x.detach().abs() - 0.5).abs() < 1e-3, x * 1.1, x).detach().requires_grad_(True)
    d = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    previous = _ops.use_fast(True)
    try:
        assert torch.autograd.gradcheck(_ops.str_threshold, (x, d))
        assert torch.autograd.gradgradcheck(_ops.str_threshold, (x, d))
        assert torch.autograd.gradcheck(lambda a, b: _ops.smooth_threshold(a, b, 6.0), (x, d))
    finally:
        _ops.use_fast(previous)


def test_a_double_backward_through_the_fast_forms_is_the_formulas(forms):
    x0 = torch.randn(30, dtype=torch.float64)

    def second_derivatives():
        x = x0.clone().requires_grad_(True)
        t = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
        v = _ops.smooth_threshold(x, t, 5.0) + _ops.str_threshold(x, t)
        (g,) = torch.autograd.grad(v.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), (x, t))

    ref, fast = forms(second_derivatives)
    for r, f in zip(ref, fast):
        torch.testing.assert_close(f, r, rtol=1e-12, atol=1e-12)


def test_torch_func_grad_sees_the_same_gradients_through_the_fast_forms(forms):
    x = torch.randn(50, dtype=torch.float64)
    d = torch.tensor(0.3, dtype=torch.float64)

    def grads():
        loss = lambda a, b: (_ops.str_threshold(a, b) + _ops.smooth_threshold(a, b, 9.0)).pow(2).sum()  # noqa: E731
        return torch.func.grad(loss, argnums=(0, 1))(x, d)

    ref, fast = forms(grads)
    for r, f in zip(ref, fast):
        torch.testing.assert_close(f, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_threshold_is_softshrink_bit_for_bit_with_a_tensor_threshold(dtype):
    theta = edge_weights(0.1, dtype).requires_grad_(True)
    for d in (0.0, 0.1, 0.25):
        out = _ops.soft_threshold_ste(theta, torch.tensor(d, dtype=torch.float64))
        assert torch.equal(out.detach(), F.softshrink(theta.detach(), d))
        upstream = torch.randn_like(theta)
        (g,) = torch.autograd.grad(out, theta, upstream)
        assert torch.equal(g, upstream)  # straight-through, zeros and ±d included


@pytest.mark.parametrize("method, kwargs", [("smooth_threshold", {"t_init": 0.3})])
def test_switching_the_form_changes_nothing_a_training_run_sees(forms, method, kwargs):
    def train():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
        pruner = Pruner(model, method, method_kwargs=kwargs)
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
        for _ in range(5):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y) + pruner.regularization()
            loss.backward()
            opt.step()
            pruner.step(opt)
        return [p.detach().clone() for p in model.parameters()], [m.clone() for m in pruner.masks().values()]

    (ref_params, ref_masks), (fast_params, fast_masks) = forms(train)
    for r, f in zip(ref_params, fast_params):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-6)  # float32, five steps of rounding apart
    for r, f in zip(ref_masks, fast_masks):
        assert torch.equal(f, r)


def test_soft_threshold_reads_its_threshold_buffer_as_a_tensor_in_every_forward():
    st = SoftThreshold(0.1)
    theta = torch.tensor([0.05, 0.3, -0.5])
    st.threshold.fill_(0.4)  # the buffer is the one source of truth
    assert torch.equal(st(theta), F.softshrink(theta, 0.4))
    traced = torch.func.functional_call(st, {"threshold": torch.tensor(0.0, dtype=torch.float64)}, (theta,))
    assert torch.equal(traced, theta)


def test_methods_take_their_operators_from_the_one_switch(forms):
    theta = torch.linspace(-1, 1, 41)
    grads = []
    for reparam in (SmoothThreshold(t_init=0.2), SmoothThreshold(t_init=0.6, beta=5.0)):
        reparam.setup(theta)

        def grad_of_threshold(reparam=reparam):
            reparam.zero_grad()
            reparam(theta).sum().backward()
            return next(reparam.parameters()).grad.clone()

        grads.append(forms(grad_of_threshold))
    for ref, fast in grads:
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)


def test_use_fast_takes_a_bool_and_returns_the_previous_setting():
    previous = _ops.use_fast(False)
    try:
        assert _ops.use_fast(True) is False
        assert _ops.fast_enabled() is True
        with pytest.raises(TypeError, match="True or False"):
            _ops.use_fast("no")
    finally:
        _ops.use_fast(previous)


@pytest.mark.slow
def test_the_environment_variable_chooses_the_form_and_a_wrong_value_says_what_to_set():
    code = "import snnprune._ops as o; print(o.fast_enabled())"
    run = lambda value: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, _ops.ENV_VAR: value})
    ok = run("reference")
    assert ok.returncode == 0 and ok.stdout.strip() == "False", ok.stderr[-500:]
    bad = run("quick")
    assert bad.returncode != 0
    assert "SNNPRUNE_OPS='quick' is not a choice: set it to 'fast' (the default) or 'reference'" in bad.stderr
