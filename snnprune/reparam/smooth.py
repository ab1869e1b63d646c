"""Differentiable pruning functions (Manessi, Rozza, Bianco, Napoletano, Nobile, "Automated
Pruning for Deep Neural Network Compression", ICPR 2018): a smooth hard threshold with a
learnable per-layer threshold, trained jointly with the weights.

Example::

    >>> import torch
    >>> from snnprune.reparam import SmoothThreshold, smooth_threshold
    >>> x = torch.tensor([-1.0, -0.05, 0.0, 0.05, 1.0])
    >>> smooth_threshold(x, torch.tensor(0.1), beta=1000.0).abs() > 1e-6   # ≈ hard threshold at 0.1
    tensor([ True, False, False, False,  True])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_nonnegative
from . import _kernels
from ._cache import grad_times, owned_gradient
from ._fused import LearnedSoftMask

__all__ = ["SmoothThreshold", "smooth_threshold"]


def smooth_threshold(x: Tensor, t: Tensor, beta: float) -> Tensor:
    """The differentiable pruning function of Manessi et al. (2018):
    ``v(x) = ReLU(x − t) + t·σ(β(x − t)) − ReLU(−x − t) − t·σ(β(−x − t))``.

    Odd and non-decreasing in ``x``; ``≈ x`` for ``|x| ≫ t``, ``≈ 0`` for ``|x| < t`` when
    ``β·t`` is large; ``v(0) = 0``. Differentiable in ``x`` and ``t`` (plain autograd)."""
    return F.relu(x - t) + t * torch.sigmoid(beta * (x - t)) - F.relu(-x - t) - t * torch.sigmoid(beta * (-x - t))


class _SmoothWeight(torch.autograd.Function):
    """``v`` and its two derivatives from buffers filled in the forward: ``∂v/∂x`` elementwise,
    ``∂v/∂raw = (∂v/∂t)·(dt/draw)`` summed."""

    @staticmethod
    def forward(ctx, latent: Tensor, raw: Tensor, v: Tensor, dvdx: Tensor, dvdt: Tensor, dt_draw: float,
                pool) -> Tensor:
        ctx.dvdx, ctx.dvdt = dvdx.detach(), dvdt.detach()  # aliases keep the buffers from reuse
        ctx.dt_draw, ctx.raw_dtype, ctx.pool, ctx.like = dt_draw, raw.dtype, pool, latent.detach()
        return v.view_as(v)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_raw = None
        if ctx.needs_input_grad[1]:
            grad_raw = (torch.dot(grad.reshape(-1), ctx.dvdt.reshape(-1)) * ctx.dt_draw).to(ctx.raw_dtype)
        owned = owned_gradient(grad, ctx.like)  # a statement of its own: no reference on the stack
        return grad_times(grad, ctx.dvdx, ctx.pool, ctx.like, owned), grad_raw, None, None, None, None, None


class SmoothThreshold(LearnedSoftMask):
    """Smooth hard threshold of Manessi et al. (ICPR 2018) with a learnable per-layer threshold.

    ``v = ReLU(w − t) + t·σ(β(w − t)) − ReLU(−w − t) − t·σ(β(−w − t))`` (:func:`smooth_threshold`)
    with the true gradient in ``w`` and in ``t``: weights and thresholds are optimised jointly.
    Pruned: ``|w| ≤ t`` (the hard mask). Finalize writes ``v(w)`` where ``|w| > t`` (the function
    the network was trained with) and 0 elsewhere.

    Where the paper leaves the choice open (documented readings):

    * scale-free units: at attach, ``scale_l`` is the RMS of the layer's weights;
      ``t_l = scale_l · softplus(raw_l)`` (``t ≥ 0`` always, smooth in ``raw``; ``raw`` starts at
      the value that gives ``t_init``) and ``β_l = beta / scale_l`` (the transition is
      ``scale_l/beta`` wide, whatever the layer's scale);
    * the regulariser that raises the thresholds: the paper does not publish its form; we use
      ``threshold_reg · Σ_l (n_l/N) · exp(−t_l/scale_l)`` (``n_l`` the layer's weights, ``N``
      those of all pruned layers). We chose it because it is bounded (in ``[0, threshold_reg]``,
      read like LTP's L0 term) while ``−Σ t_l`` is unbounded below and pushes with the same force
      however far a threshold has gone; its push fades as a threshold grows, so the task loss
      decides where the thresholds stop; and weighting by ``n_l/N`` makes a layer's push
      proportional to the weights it holds, as a count of pruned weights would be;
    * defaults ``beta = 50``, ``t_init = 0.05``: the threshold starts at 5% of the weight RMS
      with a transition 2% of it wide.

    ``raw_threshold`` is a parameter of the model: build the optimizer after the Pruner (or add
    ``pruner.parameters()``), without weight decay on it (decay pulls ``raw`` to 0, ``t`` to
    ``0.69·scale``).

    Args:
        threshold_reg: coefficient of the regulariser (the term lies in ``[0, threshold_reg]``).
        beta: sharpness, in units of ``1/scale_l``.
        t_init: initial threshold, in units of ``scale_l``.
    """

    name = "smooth_threshold"
    control = "learned"

    def __init__(self, threshold_reg: float = 0.1, beta: float = 50.0, t_init: float = 0.05) -> None:
        super().__init__()
        self.threshold_reg = check_nonnegative("threshold_reg", threshold_reg)
        self.beta = check_nonnegative("beta", beta)
        t_init = check_nonnegative("t_init", t_init)
        if self.beta == 0 or t_init == 0:
            raise ValueError("SmoothThreshold beta and t_init must be > 0")
        # softplus⁻¹(t_init), stable for large t_init
        self.raw_threshold = nn.Parameter(torch.tensor(t_init + math.log(-math.expm1(-t_init))))
        self._beta_t = _kernels.ScalarCache()

    def layer_scale(self, latent: Tensor) -> Tensor:
        return latent.pow(2).mean().sqrt()

    def threshold(self) -> Tensor:
        """``t_l = scale_l · softplus(raw_l)`` (differentiable in ``raw_threshold``)."""
        return self.scale * F.softplus(self.raw_threshold)

    # -- the method ------------------------------------------------------------------------
    def transform(self, latent: Tensor) -> Tensor:
        return smooth_threshold(latent, self.threshold().to(latent.dtype), self.beta / self._scale())

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.detach().abs() > self.threshold().detach().to(latent.dtype)

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.unmasked_weight(latent) * self.hard_mask(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.effective_weight(latent).clone()

    def regularization(self, latent: Tensor) -> Tensor:
        share = latent.numel() / self._group.numel
        return self.threshold_reg * share * torch.exp(-F.softplus(self.raw_threshold))

    def current_threshold(self) -> float:
        return float(self.threshold().detach())

    # -- the eager fast path -----------------------------------------------------------------
    def _fill(self, x: Tensor, v: Tensor, dvdx: Tensor, dvdt: Tensor, a: Tensor, b: Tensor) -> None:
        # v is odd, so it is written on signed x, without |x|, sign(x) or copysign passes: with
        # a = σ(βx − tβ), b = σ(−βx − tβ), A = a(1−a), B = b(1−b), S = softshrink(x, t), H = sign(S):
        #   v = S + t(a − b),  ∂v/∂x = H² + tβ(A + B),  ∂v/∂t = (a − b) − tβ(A − B) − H.
        # 16 elementwise passes in five reused buffers (21 before; each pass over ResNet-18's
        # 11.7 M weights costs about 3 ms of CPU here: bench/results/overhead.md)
        t = float(self.threshold().detach())
        beta = self.beta / self._scale()
        tb = t * beta
        shift = x.new_full((), -tb)
        torch.ops.aten.softshrink.out(x, t, out=v)          # S
        torch.add(shift, x, alpha=beta, out=a).sigmoid_()   # a
        torch.add(shift, x, alpha=-beta, out=b).sigmoid_()  # b
        torch.addcmul(a, a, a, value=-1.0, out=dvdx)        # A
        torch.addcmul(b, b, b, value=-1.0, out=dvdt)        # B
        a.sub_(b)                                            # a − b
        torch.sign(v, out=b)                                 # H
        v.add_(a, alpha=t)                                   # v
        dvdt.sub_(dvdx)                                      # B − A
        torch.add(dvdt, dvdx, alpha=2.0, out=dvdx)           # A + B
        torch.add(a, dvdt, alpha=tb, out=dvdt).sub_(b)       # ∂v/∂t
        dvdx.mul_(tb).addcmul_(b, b)                         # ∂v/∂x

    def _kernel_scalars(self, x: Tensor) -> tuple[Tensor, Tensor]:
        t = self.threshold().detach().to(x.dtype)
        return t, self._beta_t.get(self.beta / self._scale(), x)

    def effective_weight(self, latent: Tensor) -> Tensor:
        if not self._fast(latent, self.raw_threshold):
            return self.transform(latent)
        dt_draw = self._scale() * float(torch.sigmoid(self.raw_threshold.detach()))
        if _kernels.smooth_forward.usable(latent):
            t, beta = self._kernel_scalars(latent)  # once for the fill and the backward

            def fill(x: Tensor, *bufs: Tensor) -> None:
                _kernels.smooth_forward(*map(_kernels.flat, (x, *bufs)), t, beta)

            v, a, b = self._fused.get(latent, self._token(), 3, fill, self.right_inverse)
            backward = _kernels.smooth_backward
            return _kernels.KernelWeight.apply(latent, self.raw_threshold, v, (a, b, t, beta), backward, dt_draw,
                                               self._grad_buffer)
        v, dvdx, dvdt, _, _ = self._fused.get(latent, self._token(), 5, self._fill, self.right_inverse)
        return _SmoothWeight.apply(latent, self.raw_threshold, v, dvdx, dvdt, dt_draw, self._grad_buffer)

    def _token(self) -> tuple:
        raw = self.raw_threshold
        return (raw.data_ptr(), raw._version, self._scale(), self.beta)

    def extra_repr(self) -> str:
        return f"t={self.current_threshold():.4g}, beta={self.beta:g}/scale, threshold_reg={self.threshold_reg:g}"
