"""Sparsity-controlled hard masks: the baselines every comparison needs.

``w = θ ⊙ m`` with ``m`` a fixed 0/1 mask between updates and the masked gradient (pruned weights
get none), exactly as ``torch.nn.utils.prune`` computes it: ``θ`` itself is left as it is (the
mask hides a cut weight; :func:`~snnprune.reparam.zero_optimizer_state` stops the optimizer's
momentum from moving it). The
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

from ..recipe.methods import CubicConfig
from .base import Reparameterization

__all__ = ["HardMask", "Magnitude", "GMP", "Random"]


class HardMask(Reparameterization):
    """Base of the sparsity-controlled methods: ``w = θ ⊙ mask`` with the 0/1 ``mask`` buffer set
    by :meth:`set_mask`; subclasses say how weights are ranked (:meth:`score`).

    Example::

        >>> import torch
        >>> r = Magnitude(); theta = torch.tensor([0.5, -2.0, 0.1])
        >>> r.setup(theta); r.set_mask(torch.tensor([False, True, True]))
        >>> r(theta)
        tensor([ 0.0000, -2.0000,  0.1000])
    """

    control = "sparsity"

    def score(self, latent: Tensor) -> Tensor:
        """Ranking of the weights: the lowest go first. Default ``|w|`` (pruned weights score 0,
        so they stay pruned)."""
        return self.finished_weight(latent).abs()

    @torch.no_grad()
    def set_mask(self, keep: Tensor) -> None:
        """Keep the weights where ``keep`` is true (boolean or 0/1, shaped like ``θ``)."""
        if self.mask is None:
            self.mask = torch.ones_like(keep, dtype=torch.get_default_dtype())
        self.mask.copy_(keep)

    def transform(self, latent: Tensor) -> Tensor:
        if self.mask is None:  # registered by hand, without the Pruner's setup: nothing cut yet
            self.setup(latent)
        return latent * self.mask

    def hard_mask(self, latent: Tensor) -> Tensor:
        if self.mask is None:
            self.setup(latent)
        return self.mask != 0

    def final_weight(self, latent: Tensor) -> Tensor:
        with torch.no_grad():
            return self.transform(latent)


class Magnitude(HardMask):
    """One-shot magnitude pruning (Han et al. 2015): ``pruner.prune_to(s)`` keeps the largest
    ``|w|`` (per layer with ``scope="layer"``, over all pruned layers with ``scope="global"``),
    then the mask stays for fine-tuning. The masks are ``torch.nn.utils.prune``'s
    ``l1_unstructured`` / ``global_unstructured`` ones.

    Args:
        (none): the target comes from ``prune_to`` or ``target_sparsity=``.

    Returns:
        Called on ``θ``, the effective weight ``θ ⊙ mask``.

    Example::

        >>> import torch
        >>> from snnprune import Pruner
        >>> layer = torch.nn.Linear(4, 2)
        >>> pruner = Pruner(layer, "magnitude"); pruner.prune_to(0.5)
        >>> int((layer.weight == 0).sum())
        4
    """

    name = "magnitude"
    description = "one-shot magnitude pruning to a target sparsity, then fine-tuning with the mask fixed"
    paper = "Han et al., Learning both Weights and Connections for Efficient Neural Networks, NeurIPS 2015"


class GMP(HardMask):
    """Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017): masks by
    ``|w|`` recomputed every ``every`` steps along the cubic schedule
    ``s_t = s_f + (s_i − s_f)(1 − x)³`` (:class:`~snnprune.schedules.Cubic`), pass it as the
    Pruner's schedule: ``Pruner(model, "gmp", Cubic(final=0.9, start=..., end=..., every=100))``.

    Args:
        (none): the schedule (or ``target_sparsity=`` with ``total_steps=``) goes to the Pruner.

    Returns:
        Called on ``θ``, the effective weight ``θ ⊙ mask``.

    Example::

        >>> import torch
        >>> from snnprune import Pruner
        >>> from snnprune.schedules import Cubic
        >>> layer = torch.nn.Linear(8, 8)
        >>> pruner = Pruner(layer, "gmp", Cubic(final=0.5, start=0, end=2, every=1))
        >>> opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        >>> for _ in range(2):
        ...     opt.zero_grad(); layer(torch.randn(2, 8)).sum().backward(); opt.step(); pruner.step(opt)
        >>> pruner.sparsity().pruned
        0.5
    """

    name = "gmp"
    description = "gradual magnitude pruning along the cubic sparsity schedule"
    paper = "Zhu & Gupta, To prune, or not to prune, arXiv:1710.01878, 2017"
    Config = CubicConfig  # the cubic schedule's keys
    #: Zhu & Gupta prune every layer to the same sparsity; ``Pruner(..., scope="global")`` ranks all
    #: layers together instead
    default_scope = "layer"


class Random(HardMask):
    """Random pruning: a score drawn once per layer (uniform on [0, 1), from torch's global
    generator at attach time, so ``torch.manual_seed`` makes it reproducible; saved with the
    model), so that masks are nested as the target sparsity grows. The control every pruning
    method should beat.

    Args:
        (none): the target comes from ``prune_to`` or ``target_sparsity=``.

    Returns:
        Called on ``θ``, the effective weight ``θ ⊙ mask``.

    Example::

        >>> import torch
        >>> from snnprune import Pruner
        >>> _ = torch.manual_seed(0); layer = torch.nn.Linear(10, 10)
        >>> pruner = Pruner(layer, "random"); pruner.prune_to(0.3)
        >>> pruner.sparsity().pruned
        0.3
    """

    name = "random"
    description = "a random mask at the target sparsity: the control every method should beat"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rank", None)
        self.register_load_state_dict_pre_hook(Random._rank_pre_hook)

    def setup(self, latent: Tensor) -> None:
        super().setup(latent)
        if self.rank is None:
            self.rank = torch.rand(latent.shape, device=latent.device)

    def score(self, latent: Tensor) -> Tensor:
        return self.rank * self.hard_mask(latent)  # pruned stay pruned (score 0)

    def _rank_pre_hook(self, state_dict, prefix, *args) -> None:
        key = prefix + "rank"
        if key in state_dict and self.rank is None:
            self.rank = torch.empty_like(state_dict[key])
