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
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "PRUNABLE_TYPES",
    "BATCH_NORMS",
    "prunable_layers",
    "prunable_tensors",
    "matches",
    "magnitude_threshold",
    "magnitude_masks",
    "floored_threshold",
    "with_floor",
    "kth_magnitude",
    "floored_masks",
    "layer_masks",
    "threshold_caps",
    "default_floor",
    "DEFAULT_FLOOR_CAP",
    "select_tensors",
    "check_attachable",
    "Selector",
]

#: Layer types whose ``weight`` can be pruned.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                                               nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)

#: Batch-norm layer types (SpikingJelly's subclass torch's), for channel pruning and BN folding.
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

Selector = None | str | type | tuple | Callable[[str, nn.Module], bool] | Iterable


def _tensor_names(module: nn.Module) -> list[str]:
    if isinstance(module, PRUNABLE_TYPES):
        return ["weight"] if getattr(module, "weight", None) is not None else []
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:  # one packed projection (same q/k/v embedding size)
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

    The smallest such ``t`` among the values, found by selection, not sorting: ``t`` is the k-th
    smallest value; a tensor that would lose more than its cap at ``t`` is capped (it prunes its
    cap at every larger ``t`` too) and ``t`` is raised to the value that prunes the rest among the
    others, a few passes over the values in all.

    Example::

        >>> import torch
        >>> floored_threshold([torch.tensor([1., 2., 3., 4.]), torch.tensor([0.1, 0.2])], 0.5, 1)
        2.0
    """
    flat = [v.detach().flatten().float() for v in values]
    caps = [max(v.numel() - min_kept, 0) for v in flat]
    k = min(int(round(sparsity * sum(v.numel() for v in flat))), sum(caps))
    if k == 0:
        return float("-inf")
    capped: set[int] = set()
    t = float("-inf")
    while True:
        need = k - sum(caps[i] for i in capped)
        if need <= 0:  # the capped tensors alone prune k at the last t
            return t
        # the answer is at least every t found so far (a capped tensor stays capped above it)
        t = max(t, float(torch.kthvalue(torch.cat([v for i, v in enumerate(flat) if i not in capped]), need).values))
        over = {i for i, v in enumerate(flat) if i not in capped and int((v <= t).sum()) > caps[i]}
        if not over:
            return t
        capped |= over


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


def floored_masks(scores: Sequence[torch.Tensor], sparsity: float, scope: str, min_kept: int) -> list[torch.Tensor]:
    """:func:`magnitude_masks` at ``sparsity`` with every tensor keeping at least ``min_kept``
    entries, the floors counted in the budget: in global scope each tensor's ``min_kept`` best
    scores are ranked first, so the other tensors prune a little more.

    Example::

        >>> import torch
        >>> [m.tolist() for m in floored_masks([torch.tensor([1., 2.]), torch.tensor([5., 6.])], 0.5, "global", 1)]
        [[False, True], [False, True]]
    """
    if not min_kept:
        return magnitude_masks(scores, sparsity, scope)
    ranked = list(scores)
    if scope == "global":
        ranked = []
        for score in scores:
            score = score.detach().float().clone()
            score.view(-1)[torch.topk(score.flatten(), min(min_kept, score.numel())).indices] = math.inf
            ranked.append(score)
    return with_floor(magnitude_masks(ranked, sparsity, scope), scores, min_kept)


def layer_masks(scores: Sequence[torch.Tensor], sparsities: Sequence[float], min_kept: int) -> list[torch.Tensor]:
    """Keep-masks pruning each tensor on its own to its own sparsity (``round(s·n)`` lowest scores,
    ties broken as :func:`magnitude_masks` breaks them), every tensor keeping at least ``min_kept``.

    Example::

        >>> import torch
        >>> [m.tolist() for m in layer_masks([torch.tensor([1., 2.]), torch.tensor([5., 6., 7., 8.])], [0.5, 0.75], 0)]
        [[False, True], [False, False, False, True]]
    """
    keeps = [magnitude_masks([score], s, "layer")[0] for score, s in zip(scores, sparsities)]
    return with_floor(keeps, scores, min_kept) if min_kept else keeps


@torch.no_grad()
def threshold_caps(weights: Sequence[torch.Tensor], min_kept: int) -> list[float]:
    """Per tensor, the largest threshold ``t`` that keeps ``min_kept`` magnitudes above it (``|w| > t``
    keeps ``w``); ``inf`` when ``min_kept`` is 0."""
    if not min_kept:
        return [math.inf] * len(weights)
    caps = []
    for w in weights:
        kth = torch.topk(w.detach().abs().flatten(), min(min_kept, w.numel())).values[-1]
        caps.append(max(float(torch.nextafter(kth, torch.zeros_like(kth))), 0.0))
    return caps


#: the most weights :func:`default_floor` keeps per layer
DEFAULT_FLOOR_CAP = 32


def default_floor(target: float | None, sizes: list[int], per_layer: bool = False) -> int:
    """The ``min_weights`` a Pruner takes when none is given: 0 without a target; with one, the
    weights the target leaves (the budget) shared so that floors take at most half of it, at most
    :data:`DEFAULT_FLOOR_CAP` per layer, and at least 1 where the budget allows (a layer with no
    weight left disconnects the network: the digits SNN at 99% loses its readout this way). Masks
    made per layer (``per_layer``: each layer keeps its own share of the target) take 1.

    Args:
        target: the sparsity asked for over the pruned layers, or ``None``.
        sizes: the number of weights of each pruned layer.
        per_layer: whether every layer is pruned to the target on its own.

    Returns:
        The floor, in weights per layer.

    Example::

        >>> default_floor(0.99, [144, 2304, 2304, 4608, 9216, 9216, 1280])   # 290 weights for 7 layers
        20
        >>> default_floor(0.9, [10_000] * 4), default_floor(None, [100])
        (32, 0)
    """
    if target is None or not sizes:
        return 0
    if per_layer:
        return 1
    budget = int((1.0 - float(target)) * sum(sizes))
    floor = min(DEFAULT_FLOOR_CAP, budget // (2 * len(sizes)))
    return floor if floor > 0 else int(budget >= len(sizes))


def select_tensors(model: nn.Module, include: Selector = None, exclude: Selector = None, keep_first: bool = False,
                   keep_last: bool = False) -> list[tuple[str, nn.Module, str]]:
    """The prunable tensors a Pruner takes (:func:`prunable_tensors` filtered by ``include``,
    ``exclude`` and the first/last kept dense), refusing a selection that leaves none."""
    candidates = prunable_tensors(model)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no prunable layer (nn.Conv*/nn.Linear with a weight)")
    dense = {candidates[0][0]} if keep_first else set()
    if keep_last:
        dense.add(candidates[-1][0])
    selected = [
        (name, m, t)
        for name, m, t in candidates
        if name not in dense
        and (include is None or matches(include, name, m))
        and not (exclude is not None and matches(exclude, name, m))
    ]
    if not selected:
        raise ValueError(
            "no layer selected for pruning: include/exclude/keep_first/keep_last leave none of "
            f"the {len(candidates)} conv/linear layers"
        )
    return selected


def check_attachable(model: nn.Module, selected: list[tuple[str, nn.Module, str]], method_type: type) -> None:
    """Refuse, naming the layer, what snnprune cannot prune correctly: a tensor already
    parametrized (by ``method_type``, i.e. pruned, or by anything else), computed by a legacy hook,
    lazy, or shared by several layers."""
    owners: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False, remove_duplicate=False):
            owners.setdefault(id(p), []).append(f"{path}.{pname}".lstrip("."))
    for name, module, tensor in selected:
        label = name or type(module).__name__
        if parametrize.is_parametrized(module, tensor):
            if any(isinstance(p, method_type) for p in module.parametrizations[tensor]):
                raise ValueError(f"layer {label!r} is already pruned: attach one Pruner per model (or bake it first)")
            raise ValueError(
                f"layer {label!r} already has a parametrization on {tensor} "
                f"({type(module.parametrizations[tensor][0]).__name__}, e.g. weight_norm): snnprune cannot stack on "
                "it; remove it or exclude the layer"
            )
        param = dict(module.named_parameters(recurse=False)).get(tensor)
        if param is None:
            raise ValueError(
                f"layer {label!r} computes its {tensor} from other parameters (legacy weight_norm/spectral_norm "
                "hooks): remove the hook or exclude the layer"
            )
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"layer {label!r} is lazy and not initialised yet: run one forward before attaching the Pruner"
            )
        shared = owners.get(id(param), [])
        if len(shared) > 1:
            raise ValueError(
                f"the {tensor} of {label!r} is shared by {', '.join(shared)} (tied weights): snnprune prunes one "
                "tensor per layer; exclude those layers (exclude=[...]) to keep the tied tensor dense"
            )
