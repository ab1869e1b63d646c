"""The method contract: what a pruned weight is.

Every pruning method of snnprune is a :class:`Reparameterization`: a small ``nn.Module``
registered with :func:`torch.nn.utils.parametrize.register_parametrization`, so that
``module.weight`` *is* the effective weight ``w = f(θ)`` while the optimizer, ``state_dict``, DDP
and ``torch.compile`` keep seeing an ordinary parameter (``module.parametrizations.weight.original``
is ``θ``, the very tensor object that used to be ``module.weight``).

A method says:

* :meth:`~Reparameterization.transform` — the effective weight used in the forward pass;
* :meth:`~Reparameterization.hard_mask` — what is pruned (``True`` = kept). Sparsity, masks,
  freezing, regrowth and finalize all go through it, so a soft mask that is never exactly 0 (LTP's
  sigmoid, a smooth threshold) still prunes;
* :meth:`~Reparameterization.final_weight` — what finalize writes (``transform ⊙ hard_mask`` by
  default);
* :meth:`~Reparameterization.regularization` — a differentiable penalty the loss adds;
* :meth:`~Reparameterization.projection` — how a target sparsity's last projection ranks the
  weights and what it writes for those it keeps (the final weight, ranked by magnitude, by
  default);
* :meth:`~Reparameterization.setup` — called once after attaching, to initialise from the layer;
* :meth:`~Reparameterization.on_step` — called after every pruner step;
* ``control`` — who moves the method: ``"threshold"`` (a threshold schedule, through
  :meth:`set_threshold`), ``"sparsity"`` (a sparsity schedule, through :meth:`set_mask`) or
  ``"learned"`` (the optimizer, through the method's own parameters).

A subclass that sets ``name = "..."`` in its class body is registered under that name
(:data:`snnprune.reparam.METHODS`), and ``Pruner(model, "<name>")`` and recipes find it.

Example: a method in a few lines (a fixed hard threshold with a straight-through gradient; add
``name = "hard_threshold"`` to the class body to register it)::

    >>> import torch
    >>> from snnprune.reparam import Reparameterization
    >>> class HardThreshold(Reparameterization):
    ...     def __init__(self, t: float = 0.5):
    ...         super().__init__(); self.t = t
    ...     def transform(self, latent):
    ...         return latent + (latent * (latent.abs() > self.t) - latent).detach()
    >>> m = HardThreshold()
    >>> m.final_weight(torch.tensor([0.2, -0.7]))
    tensor([ 0.0000, -0.7000])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ._cache import GradBuffer, InPlaceMask, WeightCache, is_plain_tensor
from .registry import register_method

__all__ = ["Reparameterization", "CONTROLS", "threshold_projection"]

#: Who moves a method's pruning: a threshold schedule, a sparsity schedule, or the optimizer.
CONTROLS = ("threshold", "sparsity", "learned")


@torch.no_grad()
def threshold_projection(latent: Tensor, kept: Tensor, weight: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """:meth:`Reparameterization.projection` for a method that prunes ``|θ| ≤ threshold`` with a
    learned threshold: scores that keep the learned mask as far as the target allows. A kept
    weight scores ``1 + |w|`` (its final weight: short of the target, the smallest of them go, as
    by magnitude); a pruned one ``|θ|/threshold ≤ 1``, its closeness to its layer's threshold (past
    the target, the closest come back first: the same as lowering every layer's threshold by one
    common factor). Float64, so that the offset loses no order. ``weight`` is what a weight brought
    back is; one that would come back as exactly 0 (STR's pruned weights; the smooth threshold's
    ``v(θ)`` underflowing far below a large threshold) comes back as the smallest normal number of
    its sign, the value the network was trained with in all but name, so that the frozen mask
    keeps it and fine-tuning can grow it. A threshold of 0 (or one that underflowed) is read as the
    smallest positive float64, so only exact zeros are pruned and they score 0."""
    tiny = torch.full_like(weight, torch.finfo(weight.dtype).tiny).copysign(latent.detach())
    weight = torch.where(weight == 0, tiny, weight)
    threshold = max(float(threshold), torch.finfo(torch.float64).tiny)
    ratio = (latent.detach().double().abs() / threshold).clamp(max=1.0)
    return torch.where(kept, 1.0 + weight.double().abs(), ratio), weight


class Reparameterization(nn.Module):
    """Base class of all pruning reparameterizations (a ``torch.nn.utils.parametrize`` module).

    After :meth:`freeze` the mask is fixed: ``w = θ ⊙ m`` with the masked gradient (sparse
    fine-tuning). The mask is a buffer, so it is saved with the model's ``state_dict`` and restored
    by ``load_state_dict`` even into a reparameterization that was not frozen yet.
    """

    name: ClassVar[str] = ""
    control: ClassVar[str] = "threshold"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.control not in CONTROLS:
            raise TypeError(f"{cls.__name__}.control must be one of {CONTROLS}, got {cls.control!r}")
        if "name" in cls.__dict__ and cls.__dict__["name"]:
            register_method(cls.__dict__["name"])(cls)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", None)
        self._cache = WeightCache()
        self._grad_buffer = GradBuffer()  # the output of the backwards that write θ's gradient
        self._masked = InPlaceMask(self._grad_buffer)

    # -- the method (override these) --------------------------------------------------------
    def transform(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The effective weight used in the forward pass (differentiable in ``latent``)."""
        raise NotImplementedError

    def hard_mask(self, latent: Tensor) -> Tensor:
        """Boolean mask of the kept weights. Default: where the effective weight is non-zero."""
        return self.transform(latent) != 0

    def final_weight(self, latent: Tensor) -> Tensor:
        """The weight finalize writes: the effective weight with the pruned entries set to 0."""
        with torch.no_grad():
            return self.transform(latent) * self.hard_mask(latent)

    def regularization(self, latent: Tensor) -> Tensor:
        """Differentiable penalty this method adds to the loss (0 by default)."""
        return latent.new_zeros(())

    def projection(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """``(score, weight)`` for the last projection onto a target sparsity: the entries with the
        highest scores are kept (ranked over all layers in global scope) and frozen at ``weight``.
        Default: ``|final weight|`` and the final weight, so the projection can only prune more.
        The learned thresholds (LTP, smooth threshold, STR) also rank their pruned weights, by
        closeness to the layer's threshold, and say what a weight brought back is
        (:func:`threshold_projection`), so the projection lands on the target when the method
        overshot it."""
        with torch.no_grad():
            weight = self.finished_weight(latent)
            return weight.abs(), weight

    def setup(self, latent: Tensor) -> None:
        """Called once after the method is attached to a layer whose weight is ``latent``."""

    def on_step(self, step: int, lr: float) -> None:
        """Called after every pruner step with the step count and the learning rate it used."""

    def right_inverse(self, weight: Tensor) -> Tensor:
        """A latent weight whose effective weight is ``weight`` (identity by default). torch's
        parametrize calls it for ``module.weight = value``; the cache for in-place writes."""
        return weight

    # -- control hooks ---------------------------------------------------------------------
    def set_threshold(self, value: float) -> None:
        """Set the threshold of this layer (``control = "threshold"``)."""
        raise TypeError(f"{type(self).__name__} is not driven by a threshold schedule")

    def current_threshold(self) -> float | None:
        """The threshold in force for this layer, as a float (``None`` when it has none)."""
        return None

    # -- shared mechanics -----------------------------------------------------------------
    def forward(self, latent: Tensor) -> Tensor:
        if self.mask is None:
            return self.effective_weight(latent)
        if torch.compiler.is_compiling() or not is_plain_tensor(latent):
            return latent * self.mask
        if self.mask.device != latent.device or self.mask.dtype != latent.dtype:
            self.mask = self.mask.to(latent)  # loaded from a CPU checkpoint into a GPU model
        return self._masked.get(latent, self.mask)

    def effective_weight(self, latent: Tensor) -> Tensor:
        """The eager forward of an unfrozen method (:class:`CachedForward` overrides it)."""
        return self.transform(latent)

    def fixed_mask(self) -> Tensor | None:
        """The 0/1 mask the forward multiplies ``θ`` by in place, if there is one (frozen)."""
        return self.mask

    def kept(self, latent: Tensor) -> Tensor:
        """Boolean mask of the non-zero weights finalize would write (frozen masks included)."""
        with torch.no_grad():
            return self.finished_weight(latent) != 0

    def finished_weight(self, latent: Tensor) -> Tensor:
        """:meth:`final_weight`, or ``θ ⊙ m`` once frozen."""
        with torch.no_grad():
            if self.mask is not None:
                return latent * self.mask
            return self.final_weight(latent)

    def invalidate(self) -> None:
        """Forget the cached effective weight (after writing ``θ`` through ``.data``)."""
        self._cache.invalidate()
        self._masked.invalidate()

    @property
    def frozen(self) -> bool:
        return self.mask is not None

    @torch.no_grad()
    def freeze(self, latent: Tensor, keep: Tensor | None = None, weight: Tensor | None = None) -> None:
        """Fix the current mask (or ``keep``, which can only prune more); ``latent`` is
        overwritten in place with the final weight so that the kept weights do not jump and the
        pruned ones are exactly 0. ``weight`` (with ``keep``) replaces the final weight: what
        :meth:`projection` says a kept entry is, so that ``keep`` may also bring entries back."""
        weight = self.final_weight(latent) if weight is None else weight
        if keep is not None:
            weight = weight * keep.to(weight.dtype)
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
        state["_cache"] = WeightCache()
        state["_grad_buffer"] = GradBuffer()
        state["_masked"] = InPlaceMask(state["_grad_buffer"])
        return state
