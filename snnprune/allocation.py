"""Per-layer allocation: how a global target sparsity is shared among the pruned layers.

``Pruner(..., allocation=...)`` takes one of:

* ``"global"`` -- one ranking (one threshold) over every pruned layer: each layer ends wherever the
  ranking puts it;
* ``"uniform"`` -- every layer pruned to the target itself;
* ``"erk"`` -- RigL's Erdős–Rényi-Kernel (Evci et al. 2020): layer ``l`` keeps a density
  ``ε·(Σ dims)/(Π dims)`` of its weights, ``ε`` chosen so that the layers together keep what the
  target leaves; a layer whose density would exceed 1 is kept dense and ``ε`` is found again for
  the others (as RigL's ``sparse_utils.get_sparsities_erdos_renyi`` does);
* ``{glob: sparsity}`` -- the layers whose name matches a glob (the first that matches) get that
  sparsity, the others one common sparsity that makes up the global target;
* ``"sensitivity:PATH"`` -- per-layer sparsities from a sensitivity analysis
  (:func:`snnprune.sensitivity.allocation_from_file`).

Example::

    >>> [round(s, 4) for s in layer_sparsities("erk", 0.8, [(16, 1, 3, 3), (64, 1024)], ["conv", "fc"])]
    [0.0, 0.8017]
    >>> layer_sparsities("uniform", 0.5, [(4, 4), (8, 8)], ["a", "b"])
    [0.5, 0.5]
    >>> [round(s, 4) for s in layer_sparsities({"fc": 0.5}, 0.6, [(10, 10), (10, 10)], ["conv", "fc"])]
    [0.7, 0.5]
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

from ._validation import check_fraction, did_you_mean

__all__ = ["ALLOCATIONS", "SENSITIVITY_PREFIX", "check_allocation", "effective_allocation", "layer_sparsities",
           "erk_sparsities"]

#: the named allocations (a dict of globs and ``"sensitivity:PATH"`` are the other forms)
ALLOCATIONS = ("global", "uniform", "erk")
#: the prefix of an allocation read from a sensitivity analysis's JSON
SENSITIVITY_PREFIX = "sensitivity:"

Allocation = str | dict


def check_allocation(allocation) -> Allocation:
    """``allocation`` if it is one of the forms above, else a ValueError in one line.

    Example::

        >>> check_allocation("erk"), check_allocation({"fc*": 0.5})
        ('erk', {'fc*': 0.5})
    """
    if isinstance(allocation, str):
        if allocation in ALLOCATIONS or (allocation.startswith(SENSITIVITY_PREFIX)
                                         and len(allocation) > len(SENSITIVITY_PREFIX)):
            return allocation
        raise ValueError(f"unknown allocation {allocation!r}{did_you_mean(allocation, ALLOCATIONS)}: use "
                         f"{', '.join(map(repr, ALLOCATIONS))}, 'sensitivity:PATH' or a dict {{name glob: sparsity}}")
    if isinstance(allocation, dict) and allocation:
        out = {}
        for glob, value in allocation.items():
            if not isinstance(glob, str):
                raise ValueError(f"allocation keys are layer name globs (str), got {glob!r}")
            out[glob] = check_fraction(f"allocation[{glob!r}]", value)
        return out
    raise ValueError(f"allocation must be {', '.join(map(repr, ALLOCATIONS))}, 'sensitivity:PATH' or a non-empty "
                     f"dict {{name glob: sparsity}}, got {allocation!r}")


def effective_allocation(allocation: Allocation | None, scope: str) -> Allocation:
    """The allocation in force: ``allocation``, or without one what ``scope`` means for a sparsity
    (``"global"``: one ranking, ``"layer"``: every layer the same sparsity).

    Example::

        >>> effective_allocation(None, "layer"), effective_allocation("erk", "global")
        ('uniform', 'erk')
    """
    if allocation is not None:
        return allocation
    return "uniform" if scope == "layer" else "global"


def erk_sparsities(target: float, shapes: Sequence[Sequence[int]]) -> list[float]:
    """RigL's Erdős–Rényi-Kernel sparsities (``erk_power_scale=1``) meeting ``target`` over ``shapes``.

    Density of layer ``l``: ``ε·(Σ dims)/(Π dims)``; layers whose density would exceed 1 are kept
    dense (the one with the largest raw density first, as RigL does) and ``ε`` is found again so
    that the layers keep ``Σ (n_l − floor(n_l·target))`` weights in all.

    Args:
        target: the global sparsity, in ``[0, 1)``.
        shapes: the shape of each layer's weight.

    Returns:
        The sparsity of each layer.

    Example::

        >>> [round(s, 4) for s in erk_sparsities(0.99, [(16, 1, 3, 3), (10, 128)])]
        [0.9851, 0.99]
    """
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, sizes)]
    dense: set[int] = set()
    while True:
        rhs, divisor = 0.0, 0.0
        for i, n in enumerate(sizes):
            zeros = math.floor(n * target)
            if i in dense:
                rhs -= zeros
            else:
                rhs += n - zeros
                divisor += raw[i] * n
        if divisor <= 0:  # every layer dense: nothing can be pruned
            return [0.0] * len(sizes)
        eps = rhs / divisor
        free = [raw[i] for i in range(len(sizes)) if i not in dense]
        top = max(free)
        if top * eps <= 1.0:
            break
        dense |= {i for i in range(len(sizes)) if i not in dense and raw[i] == top}
    return [0.0 if i in dense else max(0.0, 1.0 - eps * raw[i]) for i in range(len(sizes))]


def _fill(target: float, sizes: list[int], fixed: dict[int, float]) -> list[float]:
    """The fixed layers at their sparsity, the others at one sparsity making up ``target``."""
    total = sum(sizes)
    rest = [i for i in range(len(sizes)) if i not in fixed]
    pruned_fixed = sum(fixed[i] * sizes[i] for i in fixed)
    if not rest:
        return [fixed[i] for i in range(len(sizes))]
    n_rest = sum(sizes[i] for i in rest)
    common = (target * total - pruned_fixed) / n_rest
    if not 0.0 <= common < 1.0:
        kept = 1 - pruned_fixed / max(sum(sizes[i] for i in fixed), 1)
        raise ValueError(f"allocation: the layers given keep {kept:.2%} of their weights, so the other layers "
                         f"would need sparsity {common:.2%} to make up the target {target:.2%}: change the dict's "
                         "sparsities or the target")
    return [fixed.get(i, common) for i in range(len(sizes))]


def with_floors(sparsities: Sequence[float], sizes: Sequence[int], floor: int, target: float) -> list[float]:
    """Per-layer sparsities that keep at least ``floor`` weights in every layer, counted in the
    budget: a layer whose share falls below its floor keeps the floor, and the other layers give up
    the difference in proportion to what they keep, so the layers together stay at ``target``
    (where the floors alone keep less than the target leaves).

    Example::

        >>> [round(s, 6) for s in with_floors([0.9, 0.9], [10, 1000], 4, 0.9)]   # the small layer keeps 4, not 1
        [0.6, 0.903]
    """
    sizes, sparsities = list(sizes), list(sparsities)
    floors = [min(floor, n) for n in sizes]
    kept = [(1.0 - s) * n for s, n in zip(sparsities, sizes)]
    budget = (1.0 - target) * sum(sizes)
    at_floor: set[int] = set()
    while True:
        low = {i for i in range(len(sizes)) if i not in at_floor and kept[i] < floors[i]}
        if not low:
            if not at_floor:  # no floor binds: the allocation as it was, exactly
                return sparsities
            break
        at_floor |= low
        free = [i for i in range(len(sizes)) if i not in at_floor]
        left = budget - sum(floors[i] for i in at_floor)
        have = sum(kept[i] for i in free)
        for i in at_floor:
            kept[i] = floors[i]
        if have <= 0 or left <= 0:  # the floors take the whole budget (the Pruner warns at attach)
            for i in free:
                kept[i] = max(floors[i], 0)
            break
        for i in free:
            kept[i] *= left / have
    return [1.0 - k / n if n else 0.0 for k, n in zip(kept, sizes)]


def layer_sparsities(allocation: Allocation, target: float, shapes: Sequence[Sequence[int]],
                     names: Sequence[str]) -> list[float] | None:
    """The sparsity each layer is pruned to under ``allocation`` for the global ``target``.

    Args:
        allocation: a form of the module docstring (checked by :func:`check_allocation`).
        target: the sparsity over all the layers together.
        shapes: the weight shape of each layer.
        names: the layer names (for a dict's globs and the sensitivity file).

    Returns:
        One sparsity per layer, or ``None`` for ``"global"`` (one ranking decides).
    """
    allocation = check_allocation(allocation)
    target = check_fraction("target sparsity", target)
    sizes = [math.prod(s) for s in shapes]
    if allocation == "global":
        return None
    if allocation == "uniform":
        return [target] * len(sizes)
    if allocation == "erk":
        return erk_sparsities(target, shapes)
    if isinstance(allocation, dict):
        fixed = {}
        for i, name in enumerate(names):
            glob = next((g for g in allocation if fnmatch.fnmatchcase(name, g)), None)
            if glob is not None:
                fixed[i] = allocation[glob]
        unused = [g for g in allocation if not any(fnmatch.fnmatchcase(n, g) for n in names)]
        if unused:
            raise ValueError(f"allocation glob {unused[0]!r} matches no pruned layer{did_you_mean(unused[0], names)}; "
                             f"the pruned layers: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
        return _fill(target, sizes, fixed)
    path = allocation[len(SENSITIVITY_PREFIX):]
    # imported here: recipes validate allocations through this module, which must not import torch
    from .sensitivity import allocation_from_file
    found = allocation_from_file(path, target, dict(zip(names, sizes)))
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"the sensitivity file {path} has no sparsity for layer {missing[0]!r}: analyse this model")
    return [check_fraction(f"sensitivity sparsity of {n!r}", found[n]) for n in names]
