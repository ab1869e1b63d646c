"""Reparameterizations: the effective weight ``w`` as a function of a latent, stored weight ``θ``.

Every pruning method of snnprune is a :class:`Reparameterization`: a small ``nn.Module`` that is
registered with :func:`torch.nn.utils.parametrize.register_parametrization`, so that
``module.weight`` *is* ``w = f(θ)`` while the optimizer, ``state_dict``, DDP and ``torch.compile``
keep seeing an ordinary parameter (``module.parametrizations.weight.original`` is ``θ``, the very
tensor object that used to be ``module.weight``, so an optimizer built before pruning keeps
working).

Subclasses implement :meth:`Reparameterization.transform`; the base class owns the mechanics
every method shares: freezing the mask for sparse fine-tuning (:meth:`~Reparameterization.freeze`)
and an optional differentiable regulariser (:meth:`~Reparameterization.regularization`).

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

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Reparameterization", "SoftThreshold", "STR", "soft_threshold"]


class _SoftThresholdSTE(torch.autograd.Function):
    """Soft threshold forward, identity backward (straight-through). A float threshold runs one
    fused ``softshrink`` kernel; a tensor threshold (the path ``torch.compile`` traces, so that a
    changing threshold does not recompile) uses ``θ − clamp(θ, −d, d)``."""

    # (classic ctx-first style: the setup_context style binds arguments with inspect on every
    # call, which costs ~50 µs per layer and forward)
    @staticmethod
    def forward(ctx, latent: Tensor, threshold: float | Tensor) -> Tensor:
        if isinstance(threshold, Tensor):
            return latent - latent.clamp(-threshold, threshold)
        return F.softshrink(latent, threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class _CachedWeight(torch.autograd.Function):
    """Hand out the effective weight held in ``cache``; the gradient goes to the latent weight,
    untouched (straight-through) or multiplied by a fixed mask."""

    @staticmethod
    def forward(ctx, latent: Tensor, cache: Tensor, grad_mask: Tensor | None) -> Tensor:
        ctx.grad_mask = grad_mask
        return cache.view_as(cache)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return (grad if ctx.grad_mask is None else grad * ctx.grad_mask), None, None


def check_nonnegative(name: str, value: float) -> float:
    """``float(value)`` if it is a finite number >= 0, else a ValueError naming ``name``."""
    value = float(value)
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


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
    threshold = check_nonnegative("threshold", threshold)
    if straight_through:
        return _SoftThresholdSTE.apply(latent, threshold)
    return torch.sign(latent) * F.relu(latent.abs() - threshold)


class Reparameterization(nn.Module):
    """Base class of all pruning reparameterizations (a ``torch.nn.utils.parametrize`` module).

    ``forward(θ)`` returns the effective weight. Subclasses implement :meth:`transform` and, when
    their threshold is driven by a schedule, :meth:`set_threshold`; a method whose threshold is a
    trainable parameter sets ``learnable = True``.

    After :meth:`freeze` the mask is fixed: ``w = θ ⊙ m`` with the true (masked) gradient, i.e.
    sparse fine-tuning. The mask is a buffer, so it is saved with the model's ``state_dict`` and
    restored by ``load_state_dict`` even into a reparameterization that was not frozen yet.

    Cached forward: a method whose effective weight depends only on ``θ`` and its threshold, and
    whose gradient with respect to ``θ`` does not depend on ``θ`` (straight-through, or a frozen
    mask), sets ``straight_through = True`` and implements :meth:`fill`. The base class then
    computes ``w`` into one reused buffer, only when ``θ`` (tracked by its autograd version
    counter, which every in-place update such as ``optimizer.step()`` or ``load_state_dict``
    bumps) or the threshold changed since the last forward. This avoids allocating a fresh weight
    tensor every forward (the dominant cost on CPU) and makes repeated reads of ``module.weight``
    in one forward (single-step SNNs read it T times) free. Writing ``θ`` through ``.data``
    bypasses the version counter: call :meth:`invalidate` after such a write.
    """

    learnable: bool = False
    straight_through: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", None)
        self._cache: Tensor | None = None
        self._cache_key: tuple | None = None

    # -- the method ------------------------------------------------------------------------
    def transform(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_threshold(self, value: float) -> None:
        """Set the threshold of this layer (schedule-driven methods only)."""
        raise TypeError(f"{type(self).__name__} learns its threshold; it cannot be set by a schedule")

    def current_threshold(self) -> float:
        """The threshold in force for this layer, as a float."""
        raise NotImplementedError

    def regularization(self, latent: Tensor) -> Tensor:
        """Differentiable penalty this method adds to the loss (0 by default)."""
        return latent.new_zeros(())

    def fill(self, latent: Tensor, out: Tensor) -> None:
        """Write the effective weight of ``latent`` into ``out`` (cached-forward methods)."""
        raise NotImplementedError

    def cache_token(self) -> object:
        """Everything besides ``θ`` the effective weight depends on (e.g. the threshold)."""
        return None

    # -- shared mechanics -----------------------------------------------------------------
    def forward(self, latent: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return latent * self.mask if self.mask is not None else self.transform(latent)
        if self.mask is not None:
            if self.mask.device != latent.device or self.mask.dtype != latent.dtype:
                self.mask = self.mask.to(latent)  # loaded from a CPU checkpoint into a GPU model
            return self._cached(latent, lambda out: torch.mul(latent, self.mask, out=out), self.mask)
        if self.straight_through:
            return self._cached(latent, lambda out: self.fill(latent, out), None)
        return self.transform(latent)

    def invalidate(self) -> None:
        """Forget the cached effective weight (after writing ``θ`` through ``.data``)."""
        self._cache_key = None

    def _cached(self, latent: Tensor, fill, grad_mask: Tensor | None) -> Tensor:
        cache = self._cache
        if (
            cache is None
            or cache.shape != latent.shape
            or cache.stride() != latent.stride()
            or cache.dtype != latent.dtype
            or cache.device != latent.device
        ):
            cache = self._cache = torch.empty_like(latent, requires_grad=False)
            self._cache_key = None
        key = (latent.data_ptr(), latent._version, self.cache_token(), grad_mask is None)
        if key != self._cache_key:
            with torch.no_grad():
                fill(cache)
            self._cache_key = key
        return _CachedWeight.apply(latent, cache, grad_mask)

    @property
    def frozen(self) -> bool:
        return self.mask is not None

    @torch.no_grad()
    def freeze(self, latent: Tensor) -> None:
        """Fix the current mask; ``latent`` is overwritten in place with the current effective
        weight so that ``w`` does not jump."""
        weight = self.transform(latent)
        self.mask = (weight != 0).to(latent.dtype)
        latent.copy_(weight)
        self.invalidate()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "mask"
        if key in state_dict and self.mask is None:
            self.mask = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.invalidate()

    def __getstate__(self):  # the cache is derived state: never pickle or deep-copy it
        state = dict(super().__getstate__())
        state["_cache"], state["_cache_key"] = None, None
        return state


class SoftThreshold(Reparameterization):
    """Soft-threshold reparameterization of LATS/STDS: ``w = sign(θ)·max(|θ| − d, 0)``.

    The gradient is straight-through (``∂w/∂θ = 1`` everywhere, a latent weight of exactly 0
    included): pruned weights keep receiving the loss gradient and can regrow. The threshold ``d``
    is not learned; a :mod:`snnprune.schedules` schedule sets it through the
    :class:`~snnprune.pruner.Pruner` after every optimizer step. Read as ISTA (Chen et al., ICLR 2023), one
    SGD step on ``θ`` followed by raising ``d`` by ``λ·η`` is one proximal-gradient step on
    ``L(w) + λ‖w‖₁``.

    The eager forward writes one fused ``softshrink`` kernel into a reused buffer, once per change
    of ``θ`` or ``d`` (see :class:`Reparameterization`), and the backward passes the gradient
    through untouched, so the method costs no more than a fixed mask. Under ``torch.compile`` the
    threshold is read from the ``threshold`` buffer instead of a Python float, so that a changing
    threshold does not trigger recompilation.

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

    straight_through = True

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(0.0))
        self._d = 0.0
        self.set_threshold(threshold)
        self.register_load_state_dict_post_hook(_sync_threshold_mirror)

    def set_threshold(self, value: float) -> None:
        value = check_nonnegative("threshold", value)
        self._d = value
        self.threshold.fill_(value)

    def current_threshold(self) -> float:
        return self._d

    def cache_token(self) -> object:
        return self._d

    def fill(self, latent: Tensor, out: Tensor) -> None:
        torch.ops.aten.softshrink.out(latent, self._d, out=out)

    def transform(self, latent: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return _SoftThresholdSTE.apply(latent, self.threshold.to(latent.dtype))
        return _SoftThresholdSTE.apply(latent, self._d)

    def extra_repr(self) -> str:
        return f"threshold={self._d:.4g}"


def _sync_threshold_mirror(module: SoftThreshold, incompatible_keys) -> None:
    module._d = float(module.threshold)


class STR(Reparameterization):
    """Soft Threshold Reparameterization (Kusupati et al., ICML 2020).

    ``w = sign(θ)·ReLU(|θ| − d)`` with a learnable per-layer threshold ``d = sigmoid(s)``. Unlike
    :class:`SoftThreshold` the gradient is the true ReLU gradient: a pruned coordinate receives no
    loss gradient. ``s`` starts very negative (``s_init``; STR used −3200 for ResNet-50 and −12800
    for MobileNet-V1) and sparsity is steered only indirectly, through ``s_init`` and the weight
    decay applied to ``s`` (which pulls ``s`` towards 0, i.e. raises ``d``).

    ``s`` is a parameter of the model (``...parametrizations.weight.0.s``): build the optimizer
    after attaching the pruner, or add ``pruner.parameters()`` to it.

    Example::

        >>> import torch
        >>> str_ = STR(s_init=-2.0)          # d = sigmoid(-2) ≈ 0.119
        >>> theta = torch.tensor([-0.3, 0.05, 0.2], requires_grad=True)
        >>> str_(theta).sum().backward(); theta.grad
        tensor([1., 0., 1.])
    """

    learnable = True

    def __init__(self, s_init: float = -3200.0) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(s_init)))

    def current_threshold(self) -> float:
        return float(torch.sigmoid(self.s.detach()))

    def transform(self, latent: Tensor) -> Tensor:
        d = torch.sigmoid(self.s).to(latent.dtype)
        return torch.sign(latent) * F.relu(latent.abs() - d)

    def extra_repr(self) -> str:
        return f"s={float(self.s):.4g}"
