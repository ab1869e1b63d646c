"""The method contract: what a pruned weight is.

Every pruning method of snnprune is a :class:`Reparameterization`: a small ``nn.Module``
registered with :func:`torch.nn.utils.parametrize.register_parametrization`, so that
``module.weight`` *is* the effective weight ``w = f(θ)`` while the optimizer, ``state_dict``, DDP
and ``torch.compile`` keep seeing an ordinary parameter (``module.parametrizations.weight.original``
is ``θ``, the very tensor object that used to be ``module.weight``).

A method says:

* :meth:`~Reparameterization.transform` — the effective weight used in the forward pass, in plain
  PyTorch (autograd differentiates it);
* :meth:`~Reparameterization.hard_mask` — what is pruned (``True`` = kept). Sparsity, masks,
  freezing and finalize all go through it, so a soft mask that is never exactly 0 (LTP's
  sigmoid, a smooth threshold) still prunes;
* :meth:`~Reparameterization.final_weight` — what finalize writes (``transform ⊙ hard_mask`` by
  default);
* :meth:`~Reparameterization.regularization` — a differentiable penalty the loss adds;
* :meth:`~Reparameterization.projection` — how a target sparsity's last projection ranks the
  weights and what it writes for those it keeps;
* :meth:`~Reparameterization.setup` — called once after attaching, to initialise from the layer
  (an override calls ``super().setup(latent)``);
* :meth:`~Reparameterization.on_step` — called after every pruner step;
* ``control`` — who moves the method: ``"threshold"`` (a threshold schedule, through
  :meth:`set_threshold`), ``"sparsity"`` (a sparsity schedule, through ``set_mask``) or
  ``"learned"`` (the optimizer, through the method's own parameters).

A frozen method (and every fixed mask) computes ``w = θ ⊙ m`` as ``torch.nn.utils.prune`` does.
Its buffers (``mask``, ``is_frozen`` and the method's own) exist from :meth:`setup` on, so the
list of a model's buffers never changes length or shape while it is pruned: an
``AveragedModel(model, use_buffers=True)`` keeps pairing them through freezing and projections.

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

from .registry import register_method

__all__ = [
    "CONTROLS", "LayerGroup", "LearnedThreshold", "Reparameterization", "threshold_projection",
    "zero_optimizer_state",
]

#: Who moves a method's pruning: a threshold schedule, a sparsity schedule, or the optimizer.
CONTROLS = ("threshold", "sparsity", "learned")


@torch.no_grad()
def threshold_projection(latent: Tensor, kept: Tensor, weight: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """:meth:`Reparameterization.projection` for a method that prunes ``|θ| ≤ threshold`` with a
    learned threshold: scores that keep the learned mask as far as the target allows.

    A kept weight scores ``1 + |w|`` (its final weight: short of the target, the smallest of them
    go, as by magnitude); a pruned one ``|θ|/threshold ≤ 1``, its closeness to its layer's
    threshold (past the target, the closest come back first: the same as lowering every layer's
    threshold by one common factor). Float64, so that the offset loses no order. A weight that
    would come back as exactly 0 comes back as the smallest normal number of its sign, so that
    the frozen mask keeps it and fine-tuning can grow it. A threshold of 0 (or one that
    underflowed) is read as the smallest positive float64, so only exact zeros are pruned.

    Args:
        latent: the latent weight ``θ``.
        kept: the method's hard mask of ``θ``.
        weight: what each weight is if kept.
        threshold: the layer's threshold on ``|θ|``.

    Returns:
        ``(scores, weight)``: float64 scores and the weight with exact zeros replaced.

    Example::

        >>> import torch
        >>> theta = torch.tensor([0.0, 0.125, 0.5])
        >>> scores, w = threshold_projection(theta, theta.abs() > 0.25, theta * (theta.abs() > 0.25), 0.25)
        >>> scores.tolist()
        [0.0, 0.5, 1.5]
    """
    tiny = torch.full_like(weight, torch.finfo(weight.dtype).tiny).copysign(latent.detach())
    weight = torch.where(weight == 0, tiny, weight)
    threshold = max(float(threshold), torch.finfo(torch.float64).tiny)
    ratio = (latent.detach().double().abs() / threshold).clamp(max=1.0)
    return torch.where(kept, 1.0 + weight.double().abs(), ratio), weight


@torch.no_grad()
def zero_optimizer_state(optimizer: torch.optim.Optimizer, param: Tensor, mask: Tensor) -> None:
    """Zero ``optimizer``'s per-weight state of ``param`` where ``mask`` is 0 (momentum, Adam's
    moments), through the public ``optimizer.state``.

    Call it when a mask cuts weights (``prune_to``, a new GMP mask, ``freeze``) to start a cut
    weight from rest: without it, the momentum gathered before the cut keeps moving the latent
    weight, which the mask hides (``w = θ ⊙ m``) but which a later mask that keeps the weight again
    would bring back. Tensors of another shape (Adam's step count) are left alone.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        param: the parameter whose state is edited (the latent weight ``θ``).
        mask: 0/1 or boolean, shaped like ``param``.

    Example::

        >>> import torch
        >>> p = torch.nn.Parameter(torch.ones(3))
        >>> opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        >>> p.grad = torch.ones(3); opt.step()
        >>> zero_optimizer_state(opt, p, torch.tensor([1.0, 0.0, 1.0]))
        >>> opt.state[p]["momentum_buffer"]
        tensor([1., 0., 1.])
    """
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape and value.is_floating_point():
            value.mul_(mask.to(value.dtype))


class Reparameterization(nn.Module):
    """Base class of all pruning reparameterizations (a ``torch.nn.utils.parametrize`` module).

    Subclasses override :meth:`transform` (and usually :meth:`hard_mask`); the rest has defaults.
    After :meth:`freeze` the mask is fixed: ``w = θ ⊙ m`` with the masked gradient (sparse
    fine-tuning), as in ``torch.nn.utils.prune``. ``mask`` and ``is_frozen`` are buffers, saved
    with the model's ``state_dict``.

    Example::

        >>> import torch
        >>> from snnprune.reparam import SoftThreshold
        >>> r = SoftThreshold(0.5)
        >>> theta = torch.tensor([0.2, -1.0])
        >>> r.setup(theta); r.freeze(theta)
        >>> r(torch.tensor([3.0, -1.0]))           # θ ⊙ m once frozen
        tensor([ 0., -1.])
    """

    name: ClassVar[str] = ""
    control: ClassVar[str] = "threshold"
    #: the method's record: one line, and the paper it implements (tables, docs, ``snnprune recipes``)
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: its recipe keys, when its constructor's parameters are not (a pydantic model; see
    #: :func:`snnprune.recipe.method_config`)
    Config: ClassVar[type | None] = None
    #: whether a recipe writes the trail of ever sparser finalized models by default
    trail: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.control not in CONTROLS:
            raise TypeError(f"{cls.__name__}.control must be one of {CONTROLS}, got {cls.control!r}")
        if "name" in cls.__dict__ and cls.__dict__["name"]:
            register_method(cls.__dict__["name"])(cls)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", None)  # the fixed 0/1 mask, shaped like θ from setup on
        self.register_buffer("is_frozen", torch.tensor(False))
        # a Python mirror of is_frozen, so that the forward does not read a tensor (a device sync);
        # written together with the buffer by freeze() and load_state_dict
        self._frozen = False
        self.register_load_state_dict_pre_hook(_load_pre_hook)
        self.register_load_state_dict_post_hook(_load_post_hook)

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
        The learned thresholds also rank their pruned weights by closeness to the layer's
        threshold (:func:`threshold_projection`)."""
        with torch.no_grad():
            weight = self.finished_weight(latent)
            return weight.abs(), weight

    def setup(self, latent: Tensor) -> None:
        """Called once after the method is attached to a layer whose weight is ``latent``: makes
        the buffers. An override calls ``super().setup(latent)`` first."""
        if self.mask is None:
            self.mask = torch.ones_like(latent, requires_grad=False)

    def on_step(self, step: int, lr: float) -> None:
        """Called after every pruner step with the step count and the learning rate it used."""

    def right_inverse(self, weight: Tensor) -> Tensor:
        """A latent weight whose effective weight is ``weight`` (identity by default). torch's
        parametrize calls it for ``module.weight = value``."""
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
        if self._frozen:
            return latent * self.mask
        return self.transform(latent)

    def kept(self, latent: Tensor) -> Tensor:
        """Boolean mask of the non-zero weights finalize would write (frozen masks included)."""
        with torch.no_grad():
            return self.finished_weight(latent) != 0

    def finished_weight(self, latent: Tensor) -> Tensor:
        """:meth:`final_weight`, or ``θ ⊙ m`` once frozen."""
        with torch.no_grad():
            if self._frozen:
                return latent * self.mask
            return self.final_weight(latent)

    @property
    def frozen(self) -> bool:
        """Whether the mask is fixed (:meth:`freeze`)."""
        return self._frozen

    @torch.no_grad()
    def freeze(self, latent: Tensor, keep: Tensor | None = None, weight: Tensor | None = None) -> None:
        """Fix the current mask (or ``keep``, which can only prune more); ``latent`` is
        overwritten in place with the final weight so that the kept weights do not jump and the
        pruned ones are exactly 0. ``weight`` (with ``keep``) replaces the final weight: what
        :meth:`projection` says a kept entry is, so that ``keep`` may also bring entries back."""
        weight = self.finished_weight(latent) if weight is None else weight
        if keep is not None:
            weight = weight * keep.to(weight.dtype)
        if self.mask is None:
            self.setup(latent)
        self.mask.copy_(weight != 0)
        latent.copy_(weight)
        self.is_frozen.fill_(True)
        self._frozen = True


def _load_pre_hook(module, state_dict, prefix, *args) -> None:
    """Load checkpoints written before ``is_frozen`` existed (a ``mask`` entry meant frozen, a
    hard mask's mask was ``keep``) and give the ``mask`` buffer the checkpoint's shape when it was never set up."""
    mask_key, flag_key = prefix + "mask", prefix + "is_frozen"
    keep = state_dict.pop(prefix + "keep", None)  # the hard masks' mask, under its former name
    if flag_key not in state_dict:
        state_dict[flag_key] = torch.tensor(mask_key in state_dict)
    if keep is not None and mask_key not in state_dict:
        state_dict[mask_key] = keep
    if mask_key in state_dict and module.mask is None:
        module.mask = torch.empty_like(state_dict[mask_key])
    elif mask_key not in state_dict and module.mask is not None:
        state_dict[mask_key] = torch.ones_like(module.mask)


def _load_post_hook(module, incompatible_keys) -> None:
    module._frozen = bool(module.is_frozen)


class LayerGroup:
    """The number of weights of the layers one method prototype was copied into.

    The Pruner deep-copies the prototype once per pruned layer; a deep copy shares the group (it
    is the same object), so each layer's :meth:`add` in ``setup`` adds to one count, and a penalty
    divided by :attr:`numel` is normalised over all pruned layers. A prototype *instance* reused
    for a second Pruner puts both models into one group: build the Pruner from the method's name
    or class (a fresh prototype each time) to keep them apart.

    Example::

        >>> import copy, torch
        >>> group = LayerGroup(); twin = copy.deepcopy(group)
        >>> a, b = torch.zeros(3), torch.zeros(5)
        >>> group.add(a); twin.add(b); group.numel
        8
    """

    def __init__(self) -> None:
        self._numel: dict[int, int] = {}

    def add(self, latent: Tensor) -> None:
        """Count ``latent``'s weights (once per tensor)."""
        self._numel[id(latent)] = latent.numel()

    @property
    def numel(self) -> int:
        """The weights of all layers added (at least 1)."""
        return max(sum(self._numel.values()), 1)

    def __deepcopy__(self, memo) -> LayerGroup:
        return self


class LearnedThreshold(Reparameterization):
    """Base of the methods that learn a per-layer threshold in units of the layer's weight scale
    (LTP, the smooth threshold): ``scale`` (a buffer) is :meth:`layer_scale` of the weights at
    attach; ``group`` (:class:`LayerGroup`) counts the weights of all layers the method prunes,
    to normalise a penalty. Subclasses say what a weight brought back by the last projection is
    (:meth:`unmasked_weight`).

    Example::

        >>> import torch
        >>> from snnprune.reparam import LTP
        >>> r = LTP(); r.setup(torch.tensor([1.0, -3.0]))
        >>> float(r.scale)                        # LTP's unit: mean(w²)
        5.0
    """

    control = "learned"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.group = LayerGroup()

    def layer_scale(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The layer's weight scale (a 0-dim tensor), the unit of the threshold."""
        raise NotImplementedError

    def setup(self, latent: Tensor) -> None:
        super().setup(latent)
        with torch.no_grad():
            self.scale.fill_(float(self.layer_scale(latent.detach())) or 1.0)
        self.group.add(latent)

    def unmasked_weight(self, latent: Tensor) -> Tensor:  # pragma: no cover - abstract
        """What finalize would write for an entry if it were kept."""
        raise NotImplementedError

    def projection(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`threshold_projection` with :meth:`unmasked_weight` as what a weight brought
        back is."""
        with torch.no_grad():
            weight = self.unmasked_weight(latent)
            return threshold_projection(latent, self.hard_mask(latent), weight, self.current_threshold())
