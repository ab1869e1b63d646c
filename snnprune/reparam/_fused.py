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
from .base import Reparameterization, threshold_projection

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
        """:func:`~snnprune.reparam.base.threshold_projection` with :meth:`unmasked_weight` as
        what a weight brought back is."""
        with torch.no_grad():
            weight = self.unmasked_weight(latent)
            return threshold_projection(latent, self.hard_mask(latent), weight, self.current_threshold())

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
