"""Learned Threshold Pruning (Azarian, Bhalgat, Lee, Blankevoort, "Learned Threshold Pruning",
arXiv 2003.00075, 2020): a learned per-layer threshold on the squared weights, a sigmoid soft
mask while training, a differentiable L0 penalty that moves the thresholds.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from snnprune import Pruner
    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> pruner = Pruner(model, "ltp", method_kwargs={"l0": 1.0})
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> loss = model(torch.randn(4, 8)).pow(2).mean() + pruner.regularization()
    >>> loss.backward(); opt.step(); pruner.step(opt)
    >>> all(float(r.tau.detach()) > 0 for _, _, r in pruner.layers())   # the L0 term raised every τ
    True
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from .._validation import check_nonnegative, check_positive_int
from . import _kernels
from ._cache import grad_times, owned_gradient
from ._fused import LearnedSoftMask

__all__ = ["LTP"]

#: |z| above this counts as saturated (sigmoid within 4.5e-5 of 0 or 1)
_SATURATED = 10.0


class _SoftMaskedWeight(torch.autograd.Function):
    """``v = w ⊙ m`` from buffers filled in the forward; backward: ``∂v/∂w = m`` (the mask is a
    constant in ``w``), ``∂v/∂τ = −w·m(1 − m)/T`` in full."""

    @staticmethod
    def forward(ctx, latent: Tensor, tau: Tensor, v: Tensor, m: Tensor, inv_temperature: float, pool) -> Tensor:
        # detached aliases: a graph that has not run backward yet keeps the buffers from reuse
        ctx.w, ctx.v, ctx.m = latent.detach(), v.detach(), m.detach()
        ctx.inv_temperature, ctx.tau_dtype, ctx.pool = inv_temperature, tau.dtype, pool
        return v.view_as(v)

    @staticmethod
    def backward(ctx, grad: Tensor):
        owned = owned_gradient(grad, ctx.w)  # a statement of its own: no reference on the stack
        grad_w = grad_times(grad, ctx.m, ctx.pool, ctx.w, owned)
        grad_tau = None
        if ctx.needs_input_grad[1]:
            # Σ g·w·m(1−m) = Σ (g·m)·w − Σ (g·m)·(w·m): two reductions, no extra tensor
            gm = grad_w.reshape(-1)
            dot = torch.dot(gm, ctx.v.reshape(-1)) - torch.dot(gm, ctx.w.reshape(-1))
            grad_tau = (dot * ctx.inv_temperature).to(ctx.tau_dtype)
        return grad_w, grad_tau, None, None, None, None


class _MaskCount(torch.autograd.Function):
    """``Σ_k m_k`` with ``m = σ((w² − τ)/T)``, from ``total = Σ m`` and ``slope = Σ m(1 − m)``
    computed with this step's mask (by the fused forward, or from the eager path's mask buffer);
    gradient to τ only: ``−Σ m(1 − m)/T``."""

    @staticmethod
    def forward(ctx, tau: Tensor, total: Tensor, slope: Tensor, inv_temperature: float) -> Tensor:
        ctx.dgrad = slope * -inv_temperature
        ctx.tau_dtype = tau.dtype
        return total.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return (grad * ctx.dgrad).to(ctx.tau_dtype), None, None, None


class LTP(LearnedSoftMask):
    """Learned Threshold Pruning (Azarian et al. 2020, eqs. 3-9).

    Training: ``v = w ⊙ m``, ``m = σ((w² − τ_l)/T_l)`` with a learnable per-layer threshold
    ``τ_l`` on the squared weights; the backward treats the mask as a constant in ``w``
    (``∂v/∂w = m``, the paper's rule that keeps pruning from stalling) and gives ``τ_l`` its full
    gradient ``∂v/∂τ = −w·m(1 − m)/T_l``. Pruned: ``w² ≤ τ_l`` (the hard mask; sparsity, masks,
    freeze and finalize use it, and finalize writes ``w ⊙ 1[w² > τ_l]``).

    :meth:`regularization` is the differentiable L0 term
    ``l0 · Σ_l Σ_k σ((w_k² − τ_l)/T_l) / N``, ``N`` the number of weights of all pruned layers: the
    soft count of kept weights as a fraction, so the term lies in ``[0, l0]`` (``l0 = 1`` is a
    strong push). Its gradient goes to the thresholds only (the weights are moved by the task loss
    through the soft mask). The paper divides by a "pruning preference" instead; a fraction keeps
    one ``l0`` meaningful across models. Add ``pruner.regularization()`` to the loss (the
    engine does).

    Where the paper leaves the choice open (documented readings):

    * scale-free units: at attach, ``scale_l = mean(w_l²)`` (the layer's mean squared weight) and
      ``T_l = temperature · scale_l``; the learnable ``tau`` is stored in the same unit,
      ``τ_l = tau · scale_l``, so a learning rate moves every layer's threshold by the same
      fraction of its weight scale and the gradient of the L0 term with respect to ``tau`` does
      not depend on the layer's scale (``−Σ m(1−m)/temperature``);
    * ``tau_init = 0``: nothing pruned at the start (``m ≥ 1/2``, and ``m ≈ 1`` for weights with
      ``w² ≫ T``);
    * the "premature termination" mode the paper warns of (every mask saturated, so ``τ`` gets
      no gradient and stops): every ``window`` steps the fraction of saturated masks
      (``|(w² − τ)/T| > 10``) and the movement of ``tau`` are checked, and a warning is issued
      once per layer when more than 99% are saturated and ``tau`` moved less than
      ``10⁻³·temperature`` over the window: raise ``temperature``.

    ``tau`` is a parameter of the model: build the optimizer after the Pruner (or add
    ``pruner.parameters()``). Weight decay on it pulls ``τ`` towards 0 (less pruning): put it in
    a group without weight decay, as for STR's ``s``.

    Args:
        l0: coefficient of the L0 term (the term lies in ``[0, l0]``).
        temperature: ``T_l`` in units of the layer's mean squared weight at attach.
        tau_init: initial ``τ_l`` in the same unit.
        window: steps between two saturation checks.
    """

    name = "ltp"
    control = "learned"

    def __init__(self, l0: float = 0.1, temperature: float = 0.1, tau_init: float = 0.0, window: int = 100) -> None:
        super().__init__()
        self.l0 = check_nonnegative("l0", l0)
        self.temperature = check_nonnegative("temperature", temperature)
        if self.temperature == 0:
            raise ValueError("LTP temperature must be > 0")
        self.window = check_positive_int("window", window)
        tau_init = float(tau_init)
        if not math.isfinite(tau_init):
            raise ValueError(f"LTP tau_init must be a finite number, got {tau_init}")
        self.tau = nn.Parameter(torch.tensor(tau_init))
        self._tau_at_check: float | None = None
        self._warned_saturated = False
        self._k = _kernels.ScalarCache()
        self._sums: tuple | None = None  # (key, Σ m, Σ m(1 − m)) of the last fused fill

    # -- the method ------------------------------------------------------------------------
    def layer_scale(self, latent: Tensor) -> Tensor:
        return latent.pow(2).mean()

    def _logits(self, latent: Tensor) -> Tensor:
        """``(w² − τ)/T`` in plain ops, with ``w`` detached (the mask is a constant in ``w``)."""
        w = latent.detach()
        scale = self.scale.to(latent.dtype)
        return (w * w / scale - self.tau.to(latent.dtype)) / self.temperature

    def transform(self, latent: Tensor) -> Tensor:
        # the detach trick: m depends on τ only in the graph, so ∂v/∂w = m, ∂v/∂τ = w·∂m/∂τ
        return latent * torch.sigmoid(self._logits(latent))

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.detach().square() > self.tau.detach().to(latent.dtype) * self.scale.to(latent.dtype)

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return latent * self.hard_mask(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:
        return latent.detach().clone()

    def regularization(self, latent: Tensor) -> Tensor:
        token = self._token()
        bufs = self._fused.current(latent, token) if self._fast(latent, self.tau) else None
        sums = self._sums
        if bufs is not None and sums is not None and sums[0] == (latent.data_ptr(), latent._version, token):
            # the sums the fused forward of this step returned: no pass at all
            count = _MaskCount.apply(self.tau, sums[1], sums[2], 1.0 / self.temperature)
        elif bufs is not None:  # the mask of this step's forward: two reductions
            with torch.no_grad():
                m = bufs[1].reshape(-1)
                total = m.sum()
                slope = total - torch.dot(m, m)
            count = _MaskCount.apply(self.tau, total, slope, 1.0 / self.temperature)
        else:
            count = torch.sigmoid(self._logits(latent)).sum()
        return count * (self.l0 / self._group.numel)

    # -- the eager fast path -----------------------------------------------------------------
    def _token(self) -> tuple:
        return (self.tau.data_ptr(), self.tau._version, self._scale(), self.temperature)

    def _fill(self, latent: Tensor, v: Tensor, m: Tensor) -> None:
        # m = σ(w²/(scale·temperature) − tau/temperature): three passes in all, v = w·m
        shift = self.tau.detach().to(latent.dtype) * (-1.0 / self.temperature)
        torch.addcmul(shift, latent, latent, value=1.0 / (self._scale() * self.temperature), out=m)
        m.sigmoid_()
        torch.mul(latent, m, out=v)

    def _kernel_scalars(self, w: Tensor) -> tuple[Tensor, Tensor]:
        shift = self.tau.detach().to(w.dtype) * (-1.0 / self.temperature)
        return self._k.get(1.0 / (self._scale() * self.temperature), w), shift

    def _fill_fused(self, latent: Tensor, v: Tensor, m: Tensor) -> None:
        k, shift = self._kernel_scalars(latent)
        total, slope = _kernels.ltp_forward(*map(_kernels.flat, (latent, v, m)), k, shift)
        self._sums = ((latent.data_ptr(), latent._version, self._token()), total, slope)

    def effective_weight(self, latent: Tensor) -> Tensor:
        if not self._fast(latent, self.tau):
            return self.transform(latent)
        if _kernels.ltp_forward.usable(latent):
            v, m = self._fused.get(latent, self._token(), 2, self._fill_fused, self.right_inverse)
            # ∂v/∂τ = −w·m(1 − m)/T: the kernel's Σ g·w·m(1 − m) times −1/T
            coef = -1.0 / self.temperature
            return _kernels.KernelWeight.apply(latent, self.tau, v, (m,), _kernels.ltp_backward, coef,
                                               self._grad_buffer)
        v, m = self._fused.get(latent, self._token(), 2, self._fill, self.right_inverse)
        return _SoftMaskedWeight.apply(latent, self.tau, v, m, 1.0 / self.temperature, self._grad_buffer)

    # -- reporting and the stall check -------------------------------------------------------
    def current_threshold(self) -> float:
        """The threshold on ``|w|``: ``√τ_l`` (0 while ``τ_l ≤ 0``)."""
        return math.sqrt(max(float(self.tau.detach()) * self._scale(), 0.0))

    def on_step(self, step: int, lr: float) -> None:
        if self._warned_saturated or self.frozen or step % self.window:
            return
        bufs = self._fused.bufs
        tau = float(self.tau.detach())
        previous, self._tau_at_check = self._tau_at_check, tau
        if bufs is None or previous is None:
            return
        m = bufs[1]
        lo = 1.0 / (1.0 + math.exp(_SATURATED))
        with torch.no_grad():
            saturated = float(((m < lo) | (m > 1.0 - lo)).sum()) / max(m.numel(), 1)
        if saturated > 0.99 and abs(tau - previous) < 1e-3 * self.temperature:
            self._warned_saturated = True
            warnings.warn(
                f"LTP layer of shape {tuple(m.shape)}: {100 * saturated:.1f}% of the soft masks are saturated and "
                f"its threshold moved by {abs(tau - previous):.3g} over the last {self.window} steps, so pruning has "
                "stalled (premature termination): raise temperature",
                stacklevel=2,
            )

    def __getstate__(self):  # derived state: never pickled or deep-copied
        state = super().__getstate__()
        state["_sums"] = None
        return state

    def extra_repr(self) -> str:
        return f"tau={float(self.tau.detach()):.4g}, temperature={self.temperature:g}, l0={self.l0:g}"
