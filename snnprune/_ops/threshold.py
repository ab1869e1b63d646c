"""Threshold operators: the soft threshold with a straight-through gradient (LATS/STDS), with the
true gradient and a differentiable threshold (STR), and the smooth hard threshold of Manessi et
al. An operator with two forms picks one through :func:`~snnprune._ops.select.fast_enabled`.

Example::

    >>> import torch
    >>> from snnprune._ops import soft_threshold_ste
    >>> soft_threshold_ste(torch.tensor([-0.3, 0.05, 0.2]), torch.tensor(0.1))
    tensor([-0.2000,  0.0000,  0.1000])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .select import fast_enabled

__all__ = ["smooth_threshold", "smooth_threshold_reference", "soft_threshold_ste", "str_threshold"]


# -- LATS/STDS: the soft threshold with a straight-through gradient -------------------------------
def soft_threshold_ste(latent: Tensor, d: Tensor) -> Tensor:
    """``S_d(θ) = sign(θ)·max(|θ| − d, 0)`` with the straight-through gradient ``∂w/∂θ = 1``.

    Written ``θ − clamp(θ, −d, d)`` with the clamp taken of a detached ``θ``: the subtraction
    hands the incoming gradient on unchanged and nothing else is differentiated. ``d`` stays a
    tensor (read in the kernel, never as a Python number: no device sync). The values equal
    ``F.softshrink(θ, d)`` bit for bit (both compute ``θ ∓ d`` in ``θ``'s dtype, and 0 where
    ``|θ| ≤ d``). The clamp is two one-sided clamps: ``clamp`` with two tensor bounds takes a
    slower, unvectorized path on CPU.

    Args:
        latent: the latent weights ``θ``.
        d: the threshold, a tensor ``≥ 0`` (not differentiated), cast to ``θ``'s dtype.

    Returns:
        ``S_d(θ)``, differentiable in ``θ`` with gradient 1.

    Example::

        >>> import torch
        >>> theta = torch.tensor([-0.3, 0.0, 0.2], requires_grad=True)
        >>> soft_threshold_ste(theta, torch.tensor(0.1)).sum().backward(); theta.grad
        tensor([1., 1., 1.])
    """
    d = d.detach().to(latent.dtype)
    return latent - _clamp(latent.detach(), d)


def _clamp(x: Tensor, d: Tensor) -> Tensor:
    """``clamp(x, −d, d)`` as two one-sided clamps (vectorized with a tensor bound), not
    differentiated."""
    return x.clamp_min(-d).clamp_max_(d)


# -- STR: the soft threshold with the true gradient and a learned threshold -------------------------
def str_threshold(latent: Tensor, d: Tensor) -> Tensor:
    """STR's soft threshold (Kusupati et al. 2020, eq. 3), ``sign(θ)·ReLU(|θ| − d)``, with the true
    gradient in ``θ`` (``1[|θ| > d]``) and ``d`` (``−sign(θ)·1[|θ| > d]``), from autograd.

    One form only: a hand-written backward (one pass for ``θ``, one reduction for ``d``) saved
    less than 5% of a training step against autograd's backward of this formula
    (``bench/overhead.py``).

    Args:
        latent: the latent weights ``θ``.
        d: the threshold, a tensor ``≥ 0`` in ``θ``'s dtype (differentiable).

    Returns:
        ``w``, shaped like ``θ``.

    Example::

        >>> import torch
        >>> theta = torch.tensor([0.3, 0.05, 0.2], requires_grad=True)
        >>> d = torch.tensor(0.1, requires_grad=True)
        >>> str_threshold(theta, d).sum().backward()
        >>> theta.grad, d.grad
        (tensor([1., 0., 1.]), tensor(-2.))
    """
    return torch.sign(latent) * F.relu(latent.abs() - d)


# -- Manessi et al.: the smooth hard threshold ----------------------------------------------------
def smooth_threshold_reference(x: Tensor, t: Tensor, beta) -> Tensor:
    """Manessi et al.'s (2018) formula,
    ``ReLU(x − t) + t·σ(β(x − t)) − ReLU(−x − t) − t·σ(β(−x − t))``, under autograd."""
    return F.relu(x - t) + t * torch.sigmoid(beta * (x - t)) - F.relu(-x - t) - t * torch.sigmoid(beta * (-x - t))


class _SmoothThreshold(torch.autograd.Function):
    """The smooth threshold with its gradient written out. With ``a = σ(β(x − t))``,
    ``b = σ(β(−x − t))``, ``r = ReLU(x − t) − ReLU(−x − t) = x − clamp(x, −t, t)``:

    * ``v = r + t·(a − b)``;
    * ``∂v/∂x = |sign(r)| + tβ·(a(1 − a) + b(1 − b))`` (``|sign(r)| = 1[|x| > t]``);
    * ``∂v/∂t = −sign(r) + (a − b) − tβ·(a(1 − a) − b(1 − b))``.

    ``a``, ``b`` and ``r`` are saved by the forward (three tensors shaped like ``x``), the gradient
    of ``t`` is one dot product. ``β`` is not differentiated. The written-out backward reads the
    saved sigmoids as constants, so it cannot be differentiated again: under a double backward
    (``create_graph=True``) the backward differentiates the formula itself instead."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, t: Tensor, beta: Tensor) -> Tensor:
        neg_c = -(t * beta)
        a = torch.addcmul(neg_c, x, beta).sigmoid_()  # σ(βx − βt)
        b = torch.addcmul(neg_c, x, -beta).sigmoid_()  # σ(−βx − βt): a's expression at −x, so v is exactly odd
        r = _clamp(x, t)
        torch.sub(x, r, out=r)  # x − clamp(x, −t, t)
        v = torch.sub(a, b)
        return torch.addcmul(r, v, t, out=v), a, b, r  # r + t·(a − b)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, t, beta = inputs
        _, a, b, r = output
        ctx.mark_non_differentiable(a, b, r)
        ctx.save_for_backward(x, t, a, b, r)
        ctx.beta = beta

    @staticmethod
    def backward(ctx, grad: Tensor, *_):
        x, t, a, b, r = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that is itself differentiable
            return (*_formula_grads(ctx, x, t, grad), None)
        tb = t * ctx.beta
        # temporaries are written in place where they can be: a fresh tensor shaped like the
        # weights is one more allocation per layer and step
        p = torch.addcmul(a, a, a, value=-1.0)  # a(1 − a), the slope of the first sigmoid
        q = torch.addcmul(b, b, b, value=-1.0)
        s = r.sign()
        grad_x = grad_t = None
        if ctx.needs_input_grad[1]:
            slope_t = torch.sub(a, b).sub_(s).addcmul_(torch.sub(p, q), tb, value=-1.0)
            grad_t = torch.dot(grad.reshape(-1), slope_t.reshape(-1))
        if ctx.needs_input_grad[0]:
            slope_x = p.add_(q)
            grad_x = torch.addcmul(s.abs_(), slope_x, tb, out=slope_x).mul_(grad)
        return grad_x, grad_t, None


def _formula_grads(ctx, x: Tensor, t: Tensor, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """The reference form's gradients in ``x`` and ``t``, differentiable (for a double backward)."""
    wanted = [v for v, needed in zip((x, t), ctx.needs_input_grad[:2]) if needed]
    found = iter(torch.autograd.grad(smooth_threshold_reference(x, t, ctx.beta), wanted, grad, create_graph=True))
    return tuple(next(found) if needed else None for needed in ctx.needs_input_grad[:2])


def smooth_threshold(x: Tensor, t: Tensor, beta) -> Tensor:
    """The differentiable pruning function of Manessi et al. (2018):
    ``v(x) = ReLU(x − t) + t·σ(β(x − t)) − ReLU(−x − t) − t·σ(β(−x − t))``, with the true
    gradient in ``x`` and ``t``.

    Args:
        x: the latent weights.
        t: the threshold, a 0-dim tensor in ``x``'s dtype (differentiable) or a number.
        beta: the sharpness, a number or a tensor (differentiated only by the reference form).

    Returns:
        ``v(x)``, shaped like ``x``.

    Example::

        >>> import torch
        >>> smooth_threshold(torch.tensor([-2.0, 0.0, 2.0]), torch.tensor(0.5), beta=100.0)
        tensor([-2.,  0.,  2.])
    """
    if not torch.is_tensor(t):
        t = x.new_tensor(t)
    beta_learned = torch.is_tensor(beta) and beta.requires_grad
    if fast_enabled() and t.dim() == 0 and not beta_learned:
        return _SmoothThreshold.apply(x, t, torch.as_tensor(beta, dtype=x.dtype, device=x.device))[0]
    return smooth_threshold_reference(x, t, beta)
