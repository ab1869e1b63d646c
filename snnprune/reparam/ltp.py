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
import weakref

import torch
from torch import Tensor, nn

from .._validation import check_nonnegative, check_positive_int
from .base import LearnedThreshold

__all__ = ["LTP"]

#: |z| above this counts as saturated (sigmoid within 4.5e-5 of 0 or 1)
_SATURATED = 10.0


class LTP(LearnedThreshold):
    """Learned Threshold Pruning (Azarian et al. 2020, eqs. 3-9).

    Training: ``v = w ⊙ m``, ``m = σ((w² − τ_l)/T_l)`` with a learnable per-layer threshold
    ``τ_l`` on the squared weights; the backward treats the mask as a constant in ``w``
    (``∂v/∂w = m``, the paper's rule that keeps pruning from stalling) and gives ``τ_l`` its full
    gradient ``∂v/∂τ = −w·m(1 − m)/T_l``. Both come from plain autograd: the mask is computed
    from a detached ``w``. Pruned: ``w² ≤ τ_l`` (the hard mask; sparsity, masks,
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

    Returns:
        Called on ``θ``, the effective weight ``w ⊙ m``.

    Example::

        >>> import torch
        >>> r = LTP(temperature=0.1); r.setup(torch.tensor([1.0, -1.0]))   # scale = mean(w²) = 1
        >>> w = torch.tensor([2.0, 0.1], requires_grad=True)
        >>> v = r(w); v.sum().backward()
        >>> torch.equal(w.grad, torch.sigmoid((w.detach() ** 2 - 0.0) / 0.1))   # ∂v/∂w = m
        True
    """

    name = "ltp"
    control = "learned"
    description = "a sigmoid soft mask of θ² against a learned per-layer threshold, with a soft-L0 penalty"
    paper = "Azarian et al., Learned Threshold Pruning, arXiv:2003.00075, 2020"
    trail = True  # LTP yields a trail of ever sparser models (Azarian et al. 2020): keep it

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
        self._latent = None  # a weak reference to θ, for the stall check in on_step

    # -- the method ------------------------------------------------------------------------
    def layer_scale(self, latent: Tensor) -> Tensor:
        return latent.pow(2).mean()

    def setup(self, latent: Tensor) -> None:
        super().setup(latent)
        self._latent = weakref.ref(latent)

    def logits(self, latent: Tensor) -> Tensor:
        """``z = (w² − τ_l)/T_l = w²/(T·scale) − tau/T``, with ``w`` detached (the mask is a
        constant in ``w``; ``z`` is differentiable in ``tau``)."""
        w = latent.detach()
        k = 1.0 / (self.temperature * self.scale.to(w.dtype))
        return torch.addcmul(self.tau.to(w.dtype) / -self.temperature, w, w * k)

    def transform(self, latent: Tensor) -> Tensor:
        return latent * torch.sigmoid(self.logits(latent))

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.detach().square() > self.tau.detach().to(latent.dtype) * self.scale.to(latent.dtype)

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return latent * self.hard_mask(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:
        return latent.detach().clone()

    def regularization(self, latent: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(latent)).sum() * (self.l0 / self.group.numel)

    # -- reporting and the stall check -------------------------------------------------------
    def current_threshold(self) -> float:
        """The threshold on ``|w|``: ``√τ_l`` (0 while ``τ_l ≤ 0``)."""
        return math.sqrt(max(float(self.tau.detach()) * float(self.scale), 0.0))

    def on_step(self, step: int, lr: float) -> None:
        latent = self._latent() if self._latent is not None else None
        if self._warned_saturated or self.frozen or step % self.window or latent is None:
            return
        tau = float(self.tau.detach())
        previous, self._tau_at_check = self._tau_at_check, tau
        if previous is None:
            return
        with torch.no_grad():
            saturated = float((self.logits(latent).abs() > _SATURATED).sum()) / max(latent.numel(), 1)
        if saturated > 0.99 and abs(tau - previous) < 1e-3 * self.temperature:
            self._warned_saturated = True
            warnings.warn(
                f"LTP layer of shape {tuple(latent.shape)}: {100 * saturated:.1f}% of the soft masks are saturated and "
                f"its threshold moved by {abs(tau - previous):.3g} over the last {self.window} steps, so pruning has "
                "stalled (premature termination): raise temperature",
                stacklevel=2,
            )

    def __getstate__(self):  # the weak reference to θ is not pickled (a copy is not attached)
        state = super().__getstate__()
        return {**state, "_latent": None}

    def extra_repr(self) -> str:
        return f"tau={float(self.tau.detach()):.4g}, temperature={self.temperature:g}, l0={self.l0:g}"
