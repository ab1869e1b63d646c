"""Sparsity-controlled hard masks: the baselines every comparison needs.

``w = θ ⊙ m`` with ``m`` a fixed 0/1 mask between updates and the masked gradient (pruned weights
get none, as in ``torch.nn.utils.prune``). ``θ`` itself is zeroed in place where ``m`` is 0
(:class:`~snnprune.reparam._cache.InPlaceMask`), so the forward uses ``θ`` as it is: a pruned
weight is gone for good (a later mask that keeps it again starts it from 0). The
:class:`~snnprune.pruner.Pruner` sets ``m`` from a target sparsity: once through
``pruner.prune_to(s)`` (one-shot), or at the steps of a sparsity schedule
(:class:`~snnprune.schedules.Cubic` for GMP). Which weights go is decided by the
method's :meth:`~HardMask.score`, lowest first, through the shared
:func:`snnprune.selection.magnitude_masks`:

* :class:`Magnitude` (``"magnitude"``): ``|w|`` — one-shot magnitude pruning, layer-wise or global
  (Han et al. 2015); ``prune_to(s)`` gives exactly ``l1_unstructured`` / ``global_unstructured``
  masks;
* :class:`GMP` (``"gmp"``): the same score, driven by the cubic schedule of Zhu & Gupta (2017);
* :class:`Random` (``"random"``): a random score drawn once per layer, so that masks are nested
  as the sparsity grows.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from snnprune import Pruner
    >>> model = nn.Sequential(nn.Linear(4, 4))
    >>> pruner = Pruner(model, "magnitude")
    >>> pruner.prune_to(0.5)
    >>> pruner.sparsity().total
    0.5
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._cache import CachedForward
from .base import Reparameterization

__all__ = ["HardMask", "Magnitude", "GMP", "Random"]


class HardMask(CachedForward, Reparameterization):
    """Base of the sparsity-controlled methods: a keep-mask buffer ``keep`` set by
    :meth:`set_mask`; subclasses say how weights are ranked (:meth:`score`)."""

    control = "sparsity"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("keep", None)

    def setup(self, latent: Tensor) -> None:
        if self.keep is None:
            self.keep = torch.ones_like(latent)

    def score(self, latent: Tensor) -> Tensor:
        """Ranking of the weights: the lowest go first. Default ``|w|`` (pruned weights score 0,
        so they stay pruned)."""
        return self.finished_weight(latent).abs()

    @torch.no_grad()
    def set_mask(self, keep: Tensor) -> None:
        self.keep = keep.to(self.keep) if self.keep is not None else keep.float()
        self.invalidate()

    def _keep(self, latent: Tensor) -> Tensor:
        if self.keep is None:
            self.setup(latent)
        if self.keep.device != latent.device or self.keep.dtype != latent.dtype:
            self.keep = self.keep.to(latent)
        return self.keep

    def fixed_mask(self) -> Tensor | None:
        return self.mask if self.mask is not None else self.keep

    def transform(self, latent: Tensor) -> Tensor:
        return latent * self._keep(latent)

    def hard_mask(self, latent: Tensor) -> Tensor:
        return self._keep(latent) != 0

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return latent * self._keep(latent)

    def effective_weight(self, latent: Tensor) -> Tensor:
        from ._cache import is_plain_tensor

        if torch.compiler.is_compiling() or not is_plain_tensor(latent):
            return self.transform(latent)
        return self._masked.get(latent, self._keep(latent))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "keep"
        if key in state_dict and self.keep is None:
            self.keep = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Magnitude(HardMask):
    """One-shot magnitude pruning: ``pruner.prune_to(s)`` keeps the largest ``|w|`` (per layer
    with ``scope="layer"``, over all pruned layers with ``scope="global"``), then the mask stays
    for fine-tuning."""

    name = "magnitude"


class GMP(HardMask):
    """Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017): masks by
    ``|w|`` recomputed every ``every`` steps along the cubic schedule
    ``s_t = s_f + (s_i − s_f)(1 − x)³`` (:class:`~snnprune.schedules.Cubic`), pass it as the
    Pruner's schedule: ``Pruner(model, "gmp", Cubic(final=0.9, start=..., end=..., every=100))``."""

    name = "gmp"


class Random(HardMask):
    """Random pruning: a score drawn once per layer (uniform on [0, 1), from torch's global
    generator at attach time, so ``torch.manual_seed`` makes it reproducible; saved with the
    model), so that masks are nested as the target sparsity grows. The control every pruning
    method should beat."""

    name = "random"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rank", None)

    def setup(self, latent: Tensor) -> None:
        super().setup(latent)
        if self.rank is None:
            self.rank = torch.rand(latent.shape, device=latent.device)

    def score(self, latent: Tensor) -> Tensor:
        return self.rank * self.hard_mask(latent)  # pruned stay pruned (score 0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "rank"
        if key in state_dict and self.rank is None:
            self.rank = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
