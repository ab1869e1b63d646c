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

from .._ops import smooth_threshold
from .._validation import check_nonnegative
from .base import LearnedThreshold

__all__ = ["SmoothThreshold", "smooth_threshold"]


class SmoothThreshold(LearnedThreshold):
    """Smooth hard threshold of Manessi et al. (ICPR 2018) with a learnable per-layer threshold.

    ``v = ReLU(w − t) + t·σ(β(w − t)) − ReLU(−w − t) − t·σ(β(−w − t))`` (:func:`smooth_threshold`)
    with the true gradient in ``w`` and in ``t``: weights and thresholds are optimised jointly.
    The formula and its gradient are :func:`snnprune._ops.smooth_threshold`: the formula under
    autograd (reference form), or by default the same values and gradients with a hand-written
    backward in fewer passes; ``snnprune._ops.use_fast(False)`` chooses the reference (needed
    for a double backward through the weights).
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

    Returns:
        Called on ``θ``, the effective weight ``v(θ)``.

    Example::

        >>> import torch
        >>> r = SmoothThreshold(beta=1000.0, t_init=0.5); r.setup(torch.tensor([1.0, -1.0]))   # scale = RMS = 1
        >>> r(torch.tensor([2.0, 0.1])).abs() > 1e-6                # ≈ a hard threshold at t ≈ 0.5
        tensor([ True, False])
    """

    name = "smooth_threshold"
    control = "learned"
    description = "a differentiable hard threshold, learned per layer and pushed up by a regulariser"
    paper = "Manessi et al., Automated Pruning for Deep Neural Network Compression, ICPR 2018"

    def __init__(self, threshold_reg: float = 0.1, beta: float = 50.0, t_init: float = 0.05) -> None:
        super().__init__()
        self.threshold_reg = check_nonnegative("threshold_reg", threshold_reg)
        self.beta = check_nonnegative("beta", beta)
        t_init = check_nonnegative("t_init", t_init)
        if self.beta == 0 or t_init == 0:
            raise ValueError("SmoothThreshold beta and t_init must be > 0")
        # softplus⁻¹(t_init), stable for large t_init
        self.raw_threshold = nn.Parameter(torch.tensor(t_init + math.log(-math.expm1(-t_init))))

    def layer_scale(self, latent: Tensor) -> Tensor:
        return latent.pow(2).mean().sqrt()

    def threshold(self) -> Tensor:
        """``t_l = scale_l · softplus(raw_l)`` (differentiable in ``raw_threshold``)."""
        return self.scale * F.softplus(self.raw_threshold)

    # -- the method ------------------------------------------------------------------------
    def transform(self, latent: Tensor) -> Tensor:
        return smooth_threshold(latent, self.threshold().to(latent.dtype), self.beta / self.scale.to(latent.dtype))

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.detach().abs() > self.threshold().detach().to(latent.dtype)

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.unmasked_weight(latent) * self.hard_mask(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.transform(latent)

    def regularization(self, latent: Tensor) -> Tensor:
        share = latent.numel() / self.group.numel
        return self.threshold_reg * share * torch.exp(-F.softplus(self.raw_threshold))

    def current_threshold(self) -> float:
        return float(self.threshold().detach())

    def extra_repr(self) -> str:
        return f"t={self.current_threshold():.4g}, beta={self.beta:g}/scale, threshold_reg={self.threshold_reg:g}"
