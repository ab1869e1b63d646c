"""Which tensors can be pruned, how a user selects them, and magnitude selection shared by every
sparsity-controlled method.

A prunable tensor is the ``weight`` of an ``nn.Conv*``/``nn.Linear`` (SpikingJelly's
``layer.Conv2d``/``layer.Linear`` and layers inside ``SeqToANNContainer`` subclass these), and the
input projection of an ``nn.MultiheadAttention`` (``in_proj_weight``, or ``q/k/v_proj_weight``;
its ``out_proj`` is an ``nn.Linear`` already). Each has a name: the module path for a ``weight``
(``""`` for a bare layer), ``path.tensor`` otherwise (``"attn.in_proj_weight"``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    >>> [name for name, _, _ in prunable_tensors(model)]
    ['0', '2']
    >>> magnitude_threshold([torch.tensor([1., 2., 3., 4.])], 0.5, "global")
    [2.0]
    >>> magnitude_masks([torch.tensor([1., 2., 3., 4.])], 0.5, "layer")
    [tensor([False, False,  True,  True])]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "PRUNABLE_TYPES",
    "prunable_layers",
    "prunable_tensors",
    "matches",
    "magnitude_threshold",
    "magnitude_masks",
    "floored_threshold",
    "with_floor",
    "kth_magnitude",
    "Selector",
]

#: Layer types whose ``weight`` can be pruned.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

Selector = None | str | type | tuple | Callable[[str, nn.Module], bool] | Iterable


def _tensor_names(module: nn.Module) -> list[str]:
    if isinstance(module, PRUNABLE_TYPES):
        return ["weight"] if getattr(module, "weight", None) is not None else []
    if isinstance(module, nn.MultiheadAttention):
        if module._qkv_same_embed_dim:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return []


def prunable_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, tensor_name)`` of every prunable tensor of ``model``, in registration
    order of the modules."""
    out = []
    for path, module in model.named_modules():
        for tensor in _tensor_names(module):
            out.append((path if tensor == "weight" else f"{path}.{tensor}".lstrip("."), module, tensor))
    return out


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every prunable tensor (kept for code written against ``weight`` only)."""
    return [(name, module) for name, module, _ in prunable_tensors(model)]


def matches(selector: Selector, name: str, module: nn.Module) -> bool:
    """A selector is a glob on the name, a layer type, a predicate ``(name, module) -> bool``, or
    a list of these."""
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(name, selector)
    if isinstance(selector, type):
        return isinstance(module, selector)
    if callable(selector):
        return bool(selector(name, module))
    if isinstance(selector, Iterable):
        return any(matches(s, name, module) for s in selector)
    raise TypeError(f"cannot select layers with {selector!r}: use a name glob, a layer type or a predicate")


def kth_magnitude(magnitudes: torch.Tensor, sparsity: float) -> float:
    """The value ``t`` such that a ``sparsity`` fraction of ``magnitudes`` is ``<= t`` (``-inf``
    when nothing is to be pruned)."""
    k = int(round(sparsity * magnitudes.numel()))
    if k == 0:
        return float("-inf")
    return float(torch.kthvalue(magnitudes.flatten().float().cpu(), k).values)


def magnitude_threshold(tensors: Sequence[torch.Tensor], sparsity: float, scope: str = "global") -> list[float]:
    """Per tensor, the score threshold ``t`` that prunes a ``sparsity`` fraction: entries with
    score ``<= t`` go. ``scope="global"``: one threshold over all tensors together (like
    ``torch.nn.utils.prune.global_unstructured``); ``"layer"``: each tensor on its own (like
    ``l1_unstructured``). The scores are whatever the method ranks by (``|w|`` for magnitude
    pruning, random numbers for random pruning)."""
    if not tensors:
        return []
    if scope == "global":
        t = kth_magnitude(torch.cat([x.detach().flatten().float().cpu() for x in tensors]), sparsity)
        return [t] * len(tensors)
    if scope == "layer":
        return [kth_magnitude(x.detach().flatten(), sparsity) for x in tensors]
    raise ValueError(f"unknown scope {scope!r}: use 'global' or 'layer'")


def magnitude_masks(scores: Sequence[torch.Tensor], sparsity: float, scope: str = "global") -> list[torch.Tensor]:
    """Boolean keep-masks pruning exactly ``round(sparsity·n)`` lowest-score entries (of all
    tensors together with ``scope="global"``, of each with ``"layer"``), ties broken as
    ``torch.nn.utils.prune`` breaks them (``topk(largest=False)``), so that the masks equal
    ``l1_unstructured`` / ``global_unstructured`` ones."""
    if scope not in ("global", "layer"):
        raise ValueError(f"unknown scope {scope!r}: use 'global' or 'layer'")
    groups = [list(scores)] if scope == "global" else [[s] for s in scores]
    masks = []
    for group in groups:
        flat = torch.cat([s.detach().flatten() for s in group])
        keep = torch.ones_like(flat, dtype=torch.bool)
        k = int(round(sparsity * flat.numel()))
        if k > 0:
            keep[torch.topk(flat, k=k, largest=False).indices] = False
        start = 0
        for s in group:
            masks.append(keep[start : start + s.numel()].view_as(s))
            start += s.numel()
    return masks


def floored_threshold(values: Sequence[torch.Tensor], sparsity: float, min_kept: int) -> float:
    """One threshold over several tensors that prunes a ``sparsity`` fraction of all entries
    (``<= t`` go) while every tensor keeps at least ``min_kept`` entries, the kept ones counted
    in the budget: the others prune a little more. ``-inf`` when nothing is to be pruned.

    Example::

        >>> import torch
        >>> floored_threshold([torch.tensor([1., 2., 3., 4.]), torch.tensor([0.1, 0.2])], 0.5, 1)
        2.0
    """
    sorted_values = [v.detach().flatten().float().cpu().sort().values for v in values]
    caps = [max(v.numel() - min_kept, 0) for v in sorted_values]
    k = min(int(round(sparsity * sum(v.numel() for v in sorted_values))), sum(caps))
    if k == 0:
        return float("-inf")
    candidates = torch.cat(sorted_values).sort().values

    def pruned(t: torch.Tensor) -> int:
        return sum(min(int(torch.searchsorted(v, t, right=True)), c) for v, c in zip(sorted_values, caps))

    lo, hi = 0, candidates.numel() - 1  # the smallest candidate that prunes k
    while lo < hi:
        mid = (lo + hi) // 2
        if pruned(candidates[mid]) >= k:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def with_floor(masks: Sequence[torch.Tensor], scores: Sequence[torch.Tensor], min_kept: int) -> list[torch.Tensor]:
    """Keep-masks in which every tensor keeps at least ``min_kept`` entries (its best scores)."""
    out = []
    for keep, score in zip(masks, scores):
        k = min(min_kept, score.numel())
        if int(keep.sum()) < k:
            keep = keep.clone()
            keep.view(-1)[torch.topk(score.detach().flatten(), k).indices] = True
        out.append(keep)
    return out
