"""Shared mechanics of the learned soft-mask methods (LTP, smooth threshold).

* :class:`~snnprune.reparam._cache.BufferCache` (from ``_cache``) — the effective weight and the
  per-weight factors its backward needs, computed together into reused buffers once per change of
  ``θ`` or of the learned threshold (once per training step), instead of in every forward;
* :class:`LearnedSoftMask` — the base of both: a per-layer weight scale set at attach (the unit
  of the learned threshold), the layer group, the buffers;
* :class:`LayerGroup` — the layers one method prototype was copied into, so that a penalty can
  be normalised by the number of pruned weights over *all* of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._cache import BufferCache, is_plain_tensor
from .base import Reparameterization

__all__ = ["LayerGroup", "LearnedSoftMask"]


class LayerGroup:
    """The number of weights of the layers one method prototype was copied into.

    The Pruner deep-copies the prototype once per pruned layer; a deep copy shares the group (it
    is the same object), so each layer's :meth:`add` in ``setup`` adds to one count, and a penalty
    divided by :attr:`numel` is normalised over all pruned layers. A prototype *instance* reused
    for a second Pruner puts both models into one group: build the Pruner from the method's name
    or class (a fresh prototype each time) to keep them apart.
    """

    def __init__(self) -> None:
        self._numel: dict[int, int] = {}

    def add(self, latent: Tensor) -> None:
        self._numel[id(latent)] = latent.numel()

    @property
    def numel(self) -> int:
        return max(sum(self._numel.values()), 1)

    def __deepcopy__(self, memo) -> LayerGroup:
        return self


class LearnedSoftMask(Reparameterization):
    """Base of the learned soft-mask methods: ``scale`` (a buffer, saved with the model) is the
    layer's weight scale at attach, in :meth:`layer_scale`'s reading; the learned threshold is
    stored in its unit. Subclasses fill their buffers through ``self._fused``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self._group = LayerGroup()
        self._fused = BufferCache()
        self._scale_f, self._scale_key = 1.0, ()

    def layer_scale(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The layer's weight scale (a 0-dim tensor), the unit of the threshold."""
        raise NotImplementedError

    def setup(self, latent: Tensor) -> None:
        with torch.no_grad():
            self.scale.fill_(float(self.layer_scale(latent.detach())) or 1.0)
        self._group.add(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        """What finalize would write for an entry if it were kept."""
        raise NotImplementedError

    def projection(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """Scores that keep the learned mask as far as the target allows, and
        :meth:`unmasked_weight`. A kept weight scores ``1 + |w|`` (its final weight: under the
        target, the smallest of them go, as by magnitude); a pruned one ``|θ|/t_l ≤ 1``, its
        distance to its layer's learned threshold (over the target, those closest to it come back
        first, the same as lowering every layer's threshold by one common factor). Float64, so
        that the offset loses no order. A weight that would come back as exactly 0 (the smooth
        threshold's ``v(θ)`` underflows far below a large threshold) comes back as the smallest
        normal number of its sign, so that it is kept and fine-tuning can grow it."""
        with torch.no_grad():
            weight = self.unmasked_weight(latent)
            tiny = torch.full_like(weight, torch.finfo(weight.dtype).tiny).copysign(latent.detach())
            weight = torch.where(weight == 0, tiny, weight)
            t = max(self.current_threshold(), 1e-12 * self._scale())
            ratio = latent.detach().double().abs() / t
            score = torch.where(self.hard_mask(latent), 1.0 + weight.double().abs(), ratio.clamp(max=1.0))
            return score, weight

    def _scale(self) -> float:
        # a float mirror of the buffer, re-read only when the buffer changed (load_state_dict)
        key = (self.scale.data_ptr(), self.scale._version)
        if key != self._scale_key:
            self._scale_f, self._scale_key = float(self.scale), key
        return self._scale_f

    def _fast(self, latent: Tensor, threshold: Tensor) -> bool:
        """Whether the eager forward may use the buffers (not under torch.compile/torch.func)."""
        return not torch.compiler.is_compiling() and is_plain_tensor(latent) and is_plain_tensor(threshold)

    def invalidate(self) -> None:
        super().invalidate()
        self._fused.invalidate()

    def __getstate__(self):  # derived state: never pickled or deep-copied
        state = super().__getstate__()
        state["_fused"] = BufferCache()
        return state
