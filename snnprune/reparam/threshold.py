"""Soft thresholding: LATS/STDS (:class:`SoftThreshold`, threshold set by a schedule) and STR
(:class:`STR`, threshold learned).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from torch.nn.utils import parametrize
    >>> from snnprune.reparam import SoftThreshold
    >>> layer = nn.Linear(4, 2)
    >>> st = SoftThreshold(threshold=0.1)
    >>> parametrize.register_parametrization(layer, "weight", st)
    ParametrizedLinear(...)
    >>> bool(((layer.weight == 0) == (layer.parametrizations.weight.original.abs() <= 0.1)).all())
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._ops import soft_threshold_ste, str_threshold
from .._validation import check_nonnegative
from ..recipe.methods import ThresholdConfig
from .base import Reparameterization, threshold_projection

__all__ = ["SoftThreshold", "STR", "soft_threshold", "check_nonnegative"]


def soft_threshold(latent: Tensor, threshold: float, straight_through: bool = True) -> Tensor:
    """Soft-threshold operator ``S_d(θ) = sign(θ)·max(|θ| − d, 0)``.

    With ``straight_through=True`` (LATS/STDS) the gradient is 1 everywhere, a latent weight of
    exactly 0 included, so pruned weights keep learning and can regrow. With
    ``straight_through=False`` it is the true derivative (1 where ``|θ| > d``, else 0), as in STR.

    Example::

        >>> import torch
        >>> soft_threshold(torch.tensor([-0.3, 0.05, 0.2]), 0.1)
        tensor([-0.2000,  0.0000,  0.1000])
    """
    d = latent.new_tensor(check_nonnegative("threshold", threshold))
    return soft_threshold_ste(latent, d) if straight_through else str_threshold(latent, d)


class SoftThreshold(Reparameterization):
    """Soft-threshold reparameterization of LATS/STDS: ``w = sign(θ)·max(|θ| − d, 0)``.

    The gradient is straight-through (``∂w/∂θ = 1`` everywhere, a latent weight of exactly 0
    included): pruned weights keep receiving the loss gradient and can regrow. The threshold ``d``
    is not learned; a :mod:`snnprune.schedules` schedule sets it through the
    :class:`~snnprune.pruner.Pruner` after every optimizer step. Read as ISTA (Chen et al., ICLR
    2023, eq. 5), one SGD step on ``θ`` followed by raising ``d`` by ``λ·η`` is one
    proximal-gradient step on ``L(w) + λ‖w‖₁``.

    Computed as ``θ − clamp(θ, −d, d)`` with the clamp of a detached ``θ``
    (:func:`snnprune._ops.soft_threshold_ste`): the values of ``F.softshrink`` bit for bit, the
    incoming gradient handed on unchanged. The ``threshold`` buffer is the one source of truth
    (``state_dict``, EMA copies with ``use_buffers=True``, ``functional_call`` and
    ``threshold.fill_`` all act through it) and is read as a tensor inside the kernel, never as a
    Python number: the forward does not wait for the device.

    Args:
        threshold: the initial threshold ``d ≥ 0`` (the Pruner's schedule sets it from then on).

    Returns:
        Called on ``θ`` (as torch's parametrize does), the effective weight ``S_d(θ)``.

    Example::

        >>> import torch
        >>> st = SoftThreshold(threshold=0.1)
        >>> theta = torch.tensor([-0.3, 0.0, 0.05, 0.2], requires_grad=True)
        >>> w = st(theta)
        >>> w.detach()
        tensor([-0.2000,  0.0000,  0.0000,  0.1000])
        >>> w.sum().backward(); theta.grad
        tensor([1., 1., 1., 1.])
    """

    name = "soft_threshold"
    control = "threshold"
    description = "w = sign(θ)·max(|θ| − d, 0) with a scheduled threshold d (LATS, S-LATS, PGH, ...)"
    paper = "Chen et al., A Unified Framework for Soft Threshold Pruning, ICLR 2023"
    Config = ThresholdConfig  # the schedule's keys only: the schedule, not a recipe key, sets d

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        # float64: the number the schedule set, exactly (it is one scalar per layer)
        self.register_buffer("threshold", torch.tensor(0.0, dtype=torch.float64))
        self.set_threshold(threshold)

    def set_threshold(self, value: float) -> None:
        self.threshold.fill_(check_nonnegative("threshold", value))

    def current_threshold(self) -> float:
        return float(self.threshold)

    def transform(self, latent: Tensor) -> Tensor:
        return soft_threshold_ste(latent, self.threshold)

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.abs() > self.threshold.to(latent.dtype)

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.transform(latent)

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight + torch.sign(weight) * self.threshold.to(weight.dtype)

    def extra_repr(self) -> str:
        return f"threshold={float(self.threshold):.4g}"


class STR(Reparameterization):
    """Soft Threshold Reparameterization (Kusupati et al., ICML 2020, eq. 3).

    ``w = sign(θ)·ReLU(|θ| − d)`` with a learnable per-layer threshold ``d = sigmoid(s)``. Unlike
    :class:`SoftThreshold` the gradient is the true ReLU gradient: a pruned coordinate receives no
    loss gradient. ``s`` starts very negative (``s_init``; STR used −3200 for ResNet-50 and −12800
    for MobileNet-V1) and sparsity is steered only indirectly, through ``s_init`` and the weight
    decay applied to ``s`` (which pulls ``s`` towards 0, i.e. raises ``d``).

    ``s`` is a parameter of the model (``...parametrizations.weight.0.s``): build the optimizer
    after attaching the pruner, or add ``pruner.parameters()`` to it.

    The formula is :func:`snnprune._ops.str_threshold`, differentiated by autograd
    (``∂w/∂θ = 1[|θ| > d]``, ``∂w/∂d = −sign(θ)·1[|θ| > d]``).

    Args:
        s_init: initial ``s`` (finite); ``d = sigmoid(s)``.

    Returns:
        Called on ``θ``, the effective weight.

    Example::

        >>> import torch
        >>> str_ = STR(s_init=-2.0)          # d = sigmoid(-2) ≈ 0.119
        >>> theta = torch.tensor([-0.3, 0.05, 0.2], requires_grad=True)
        >>> str_(theta).sum().backward(); theta.grad
        tensor([1., 0., 1.])
    """

    name = "str"
    control = "learned"
    description = "a learned per-layer threshold d = sigmoid(s), with the true ReLU gradient"
    paper = "Kusupati et al., Soft Threshold Weight Reparameterization for Learnable Sparsity, ICML 2020"

    def __init__(self, s_init: float = -3200.0) -> None:
        super().__init__()
        s_init = float(s_init)
        if s_init != s_init or abs(s_init) == float("inf"):
            raise ValueError(f"STR s_init must be a finite number, got {s_init}")
        self.s = nn.Parameter(torch.tensor(s_init))

    def current_threshold(self) -> float:
        return float(torch.sigmoid(self.s.detach()))

    def transform(self, latent: Tensor) -> Tensor:
        return str_threshold(latent, torch.sigmoid(self.s).to(latent.dtype))

    def hard_mask(self, latent: Tensor) -> Tensor:
        return latent.abs() > torch.sigmoid(self.s.detach()).to(latent.dtype)

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight + torch.sign(weight) * torch.sigmoid(self.s.detach()).to(weight.dtype)

    def projection(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """The kept weights as they are; a pruned weight brought back starts from (almost) 0, the
        value it had in the forward (:func:`~snnprune.reparam.base.threshold_projection`)."""
        with torch.no_grad():
            weight = self.final_weight(latent)
            return threshold_projection(latent, self.hard_mask(latent), weight, self.current_threshold())

    def extra_repr(self) -> str:
        return f"s={float(self.s):.4g}"
