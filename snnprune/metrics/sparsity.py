"""Sparsity and regrowth of any model, pruned or not.

A weight counts as zero when the pruning method says it is pruned (its
:meth:`~snnprune.reparam.Reparameterization.hard_mask`, through the weight finalize would write),
or, for a plain layer, when it is exactly 0. So a soft mask that is never exactly 0 (LTP's
sigmoid) is counted the way finalize will remove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..reparam.base import Reparameterization
from ..selection import prunable_tensors

__all__ = ["SparsityReport", "sparsity", "kept_mask", "regrowth"]


@dataclass
class SparsityReport:
    """Sparsity of the effective weights.

    ``total`` is the fraction of zero weights over *every* conv and linear weight of the model,
    layers kept dense included (the convention of the LATS code); ``pruned`` the same over the
    layers a pruning method is attached to (``None`` when there is none: what a target sparsity
    refers to); ``layers`` maps each layer name to its own zero fraction; ``zeros``/``numel`` are
    the raw counts.
    """

    total: float
    layers: dict[str, float] = field(default_factory=dict)
    zeros: int = 0
    numel: int = 0
    pruned: float | None = None

    def __str__(self) -> str:
        return f"sparsity {100 * self.total:.2f}% ({self.zeros}/{self.numel} weights are zero)"


def _reparam(module: nn.Module, tensor: str) -> Reparameterization | None:
    if not parametrize.is_parametrized(module, tensor):
        return None
    for p in module.parametrizations[tensor]:
        if isinstance(p, Reparameterization):
            return p
    return None


@torch.no_grad()
def kept_mask(module: nn.Module, tensor: str = "weight") -> torch.Tensor:
    """Boolean mask of the weights of ``module.<tensor>`` that are not pruned."""
    reparam = _reparam(module, tensor)
    if reparam is None:
        return getattr(module, tensor) != 0
    return reparam.kept(module.parametrizations[tensor].original)


@torch.no_grad()
def sparsity(model: nn.Module) -> SparsityReport:
    """Zero fraction of the effective weights of every conv/linear layer of ``model`` (pruned or
    not, parametrized or plain), as a :class:`SparsityReport`.

    Example::

        >>> from torch import nn
        >>> layer = nn.Linear(4, 4)
        >>> _ = nn.init.zeros_(layer.weight[:2])
        >>> sparsity(layer).total
        0.5
    """
    layers, zeros, numel, pruned_zeros, pruned_numel = {}, 0, 0, 0, 0
    seen: set[int] = set()
    for name, module, tensor in prunable_tensors(model):
        kept = kept_mask(module, tensor)
        key = id(module.parametrizations[tensor].original) if _reparam(module, tensor) else id(getattr(module, tensor))
        if key in seen:  # a tied weight counts once
            continue
        seen.add(key)
        z = int(kept.numel() - kept.sum())
        layers[name] = z / max(kept.numel(), 1)
        zeros += z
        numel += kept.numel()
        if _reparam(module, tensor) is not None:
            pruned_zeros += z
            pruned_numel += kept.numel()
    return SparsityReport(
        total=zeros / max(numel, 1),
        layers=layers,
        zeros=zeros,
        numel=numel,
        pruned=pruned_zeros / pruned_numel if pruned_numel else None,
    )


def regrowth(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Fraction of the weights (of the layers in ``after``) that were pruned in ``before`` and
    are kept in ``after`` (keep-masks as given by ``Pruner.masks()``): the straight-through
    gradient of soft thresholding lets pruned weights come back.

    Example::

        >>> import torch
        >>> regrowth({"a": torch.tensor([True, False])}, {"a": torch.tensor([True, True])})
        0.5
    """
    if not before:
        return 0.0
    regrown = sum(int((~before[k].to(after[k].device) & after[k]).sum()) for k in after if k in before)
    return regrown / max(sum(v.numel() for v in after.values()), 1)
