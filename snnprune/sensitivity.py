"""Sensitivity analysis: how much each layer can be pruned on its own, and per-layer sparsities
from it.

:func:`sensitivity` prunes **one layer at a time** over a grid of sparsities by one-shot magnitude
(the smallest ``|w|`` of that layer set to 0, nothing trained), measures the accuracy on a
held-out split after each probe and puts the layer's weight back exactly (a copy of the tensor,
restored bit for bit). The result is a plain dict;
:func:`snnprune.report.sensitivity.write_sensitivity` writes it as ``sensitivity.json`` with a
picture ``sensitivity.png`` of accuracy against sparsity per layer (``snnprune sensitivity`` does
both from a run folder or a recipe).

:func:`allocation_from_file` turns the curves into one sparsity per layer that meets a global
target over the pruned weights (``Pruner(..., allocation="sensitivity:PATH")``). **The rule**: let
``drop_l(s)`` be layer l's accuracy drop at sparsity s (baseline minus accuracy), made
non-decreasing in s (the running maximum over the grid, negative drops counted as 0) and linear
between grid points. For a tolerated drop ``δ`` every layer gets the largest sparsity whose drop
is at most ``δ``, ``s_l(δ)``, clipped to its grid (never beyond the largest sparsity probed). The
weighted sparsity ``S(δ) = Σ n_l s_l(δ) / Σ n_l`` grows with ``δ``; bisection finds the smallest
``δ`` with ``S(δ) >= target``, and the sparsities are then scaled by ``target / S(δ)`` so that
they meet the target exactly. Layers that lose nothing are pruned first and furthest; a layer
whose accuracy falls at once keeps its weights. (Each curve is measured with the other layers
dense, so the joint loss at the allocation is larger than ``δ``: the rule ranks layers, it does
not predict the pruned net's accuracy.)

How this relates to the usual tools: NNI's ``SensitivityAnalysis`` (``nni.compression.
pytorch.utils.sensitivity_analysis``) does the same per-layer probe (one-shot L1 filter pruning by
default, a grid of sparsities, an ``evaluator`` callable, an early stop at a given accuracy
drop) and leaves the allocation to the user; SparseML's analysis-driven recipes
(``sparseml.pytorch.optim.pruning_loss_sens_*``) measure a loss sensitivity per layer the same
way and write recipes whose per-layer sparsities follow it. Here the probe is unstructured
magnitude pruning of each weight tensor (the tensors the :class:`~snnprune.Pruner` prunes),
the measure is accuracy on a validation split carved from the training data
(:func:`snnprune.data.validation_split`, never the test set), and the allocation is the
equal-drop rule above.

Example::

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
    >>> result = sensitivity(model, [(x, y)], sparsities=(0.5, 0.9))
    >>> sorted(result["layers"]), len(result["layers"]["0"]["accuracy"])
    (['0', '2'], 2)
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .metrics.firing import call_model, measuring_forward
from .selection import prunable_tensors

__all__ = ["DEFAULT_SPARSITIES", "SENSITIVITY_JSON", "SENSITIVITY_PNG", "sensitivity", "read_sensitivity",
           "allocation_from_file", "allocation_from_curves"]

#: the grid of sparsities each layer is probed at
DEFAULT_SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
#: the file names ``snnprune sensitivity`` writes
SENSITIVITY_JSON, SENSITIVITY_PNG = "sensitivity.json", "sensitivity.png"
_FORMAT = "snnprune.sensitivity/1"


def _check_grid(sparsities: Iterable[float]) -> list[float]:
    grid = sorted({float(s) for s in sparsities})
    if not grid or any(not 0.0 < s < 1.0 for s in grid):
        raise ValueError(f"sensitivity: the sparsities must be numbers in (0, 1), got {list(sparsities)!r}")
    return grid


def _accuracy_of(data: Iterable | Callable[[nn.Module], float], batches: int | None,
                 device: torch.device | None) -> Callable[[nn.Module], float]:
    """The measure: the caller's function, or top-1 accuracy over (the first ``batches`` of) a
    loader, each batch a measuring forward (eval mode, no gradients, neuron states reset)."""
    if callable(data) and not isinstance(data, (list, tuple, torch.utils.data.DataLoader)):
        return data

    def accuracy(model: nn.Module) -> float:
        correct = seen = 0
        for i, (x, y) in enumerate(data):
            if batches is not None and i >= batches:
                break
            if device is not None:
                x, y = x.to(device), y.to(device)
            with measuring_forward(model):
                out = call_model(model, x)
            correct += int((out.argmax(-1) == y).sum())
            seen += len(y)
        if not seen:
            raise ValueError("sensitivity: the held-out data gave no sample")
        return correct / seen

    return accuracy


@torch.no_grad()
def _prune_smallest(weight: torch.Tensor, sparsity: float) -> None:
    """Zero the ``round(sparsity · numel)`` smallest-magnitude entries of ``weight`` in place."""
    k = round(sparsity * weight.numel())
    if k <= 0:
        return
    order = weight.abs().flatten().argsort(stable=True)
    weight.view(-1)[order[:k]] = 0


def sensitivity(model: nn.Module, data: Iterable | Callable[[nn.Module], float],
                layers: str | Sequence[str] | None = None, sparsities: Sequence[float] = DEFAULT_SPARSITIES, *,
                batches: int | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Prune one layer at a time over a grid of sparsities (one-shot magnitude, no training) and
    measure the accuracy after each probe; the model is restored exactly after each.

    Args:
        model: a plain model (a model under a :class:`~snnprune.Pruner` is baked first:
            ``snnprune.bake(copy.deepcopy(model))``); its prunable tensors are the Pruner's.
        data: the held-out data: an iterable of ``(inputs, labels)`` batches (top-1 accuracy), or a
            function ``evaluate(model) -> float`` (higher is better).
        layers: name globs of the layers to probe (None: every prunable tensor).
        sparsities: the grid, each in (0, 1).
        batches: with a loader, measure on its first ``batches`` batches only (None: all).
        progress: called as ``progress(layer, done, total)`` after each probe.

    Returns:
        ``{"format", "metric", "baseline", "sparsities", "layers": {name: {"numel", "sparsity"
        (its own zeros before probing), "accuracy": [one per grid sparsity]}}}``.

    Raises:
        ValueError: a grid value outside (0, 1), a parametrized (pruned, not baked) model, a glob
            that matches no layer, data with no sample.

    Example::

        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> sensitivity(model, lambda m: float((m[0].weight != 0).float().mean()), sparsities=[0.5])["layers"]
        {'0': {'numel': 4, 'sparsity': 0.0, 'accuracy': [0.5]}}
    """
    grid = _check_grid(sparsities)
    tensors = prunable_tensors(model)
    if any(parametrize.is_parametrized(m, t) for _, m, t in tensors):
        raise ValueError("sensitivity: the model is under a Pruner (parametrized); probe a baked copy: "
                         "snnprune.bake(copy.deepcopy(model))")
    globs = [layers] if isinstance(layers, str) else layers
    if globs is not None:
        unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n, _, _ in tensors)]
        if unmatched:
            raise ValueError(f"sensitivity: no prunable layer matches {unmatched[0]!r}")
        tensors = [(n, m, t) for n, m, t in tensors if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    device = next((p.device for p in model.parameters()), None)
    measure = _accuracy_of(data, batches, device)
    baseline = float(measure(model))
    result: dict[str, Any] = {"format": _FORMAT, "metric": "accuracy", "baseline": baseline, "sparsities": grid,
                              "layers": {}}
    total, done = len(tensors) * len(grid), 0
    for name, module, tensor in tensors:
        weight = getattr(module, tensor)
        saved = weight.detach().clone()
        accuracy = []
        try:
            for s in grid:
                _prune_smallest(weight.data, s)
                accuracy.append(float(measure(model)))
                with torch.no_grad():
                    weight.copy_(saved)
                done += 1
                if progress is not None:
                    progress(name, done, total)
        finally:  # also when a probe fails: the model is left as it was
            with torch.no_grad():
                weight.copy_(saved)
        result["layers"][name] = {"numel": saved.numel(), "sparsity": float((saved == 0).float().mean()),
                                  "accuracy": accuracy}
    return result


def read_sensitivity(path: str | Path) -> dict[str, Any]:
    """A ``sensitivity.json`` (or the folder holding one), checked.

    Args:
        path: the file or its folder.

    Returns:
        The :func:`sensitivity` result.

    Raises:
        ValueError: no such file, or not a sensitivity result, in one line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SENSITIVITY_JSON
    try:
        result = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the sensitivity file {path}: {exc.strerror or type(exc).__name__}: "
                         "write one with `snnprune sensitivity RUN_OR_RECIPE`") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON: write a sensitivity file with `snnprune sensitivity`") from None
    if not isinstance(result, dict) or result.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a sensitivity result of snnprune ({_FORMAT})")
    return result


def _drop_curve(baseline: float, grid: list[float], accuracy: list[float]) -> tuple[list[float], list[float]]:
    """The layer's drop as a non-decreasing piecewise-linear function: points (0, 0) and the grid."""
    xs, ys, worst = [0.0], [0.0], 0.0
    for s, acc in zip(grid, accuracy):
        worst = max(worst, baseline - acc)
        xs.append(s)
        ys.append(worst)
    return xs, ys


def _largest_within(xs: list[float], ys: list[float], drop: float) -> float:
    """The largest sparsity whose (interpolated) drop is at most ``drop``."""
    if ys[-1] <= drop:
        return xs[-1]
    for i in range(1, len(xs)):
        if ys[i] > drop:  # ys[i - 1] <= drop < ys[i]
            return xs[i - 1] + (xs[i] - xs[i - 1]) * (drop - ys[i - 1]) / (ys[i] - ys[i - 1])
    return xs[-1]


def allocation_from_curves(result: Mapping[str, Any], target: float,
                           layer_sizes: Mapping[str, int]) -> dict[str, float]:
    """Per-layer sparsities from a :func:`sensitivity` result that meet ``target`` over the
    layers of ``layer_sizes`` (the rule in the module docstring).

    Args:
        result: a :func:`sensitivity` result.
        target: the sparsity over all of ``layer_sizes``' weights, in [0, 1).
        layer_sizes: ``{layer name: number of weights}`` of the pruned layers; each must have a
            curve in ``result``.

    Returns:
        ``{layer name: sparsity}`` with ``Σ n_l s_l = target · Σ n_l`` (to float precision), each
        within [0, the largest sparsity probed].

    Raises:
        ValueError: a layer without a curve, or a target above what the grid allows.

    Example::

        >>> curves = {"baseline": 1.0, "sparsities": [0.5, 0.9], "layers": {
        ...     "a": {"accuracy": [1.0, 1.0]}, "b": {"accuracy": [0.9, 0.5]}}}
        >>> {k: round(v, 4) for k, v in allocation_from_curves(curves, 0.5, {"a": 100, "b": 100}).items()}
        {'a': 0.9, 'b': 0.1}
    """
    target = float(target)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"allocation: the target sparsity must be in [0, 1), got {target}")
    missing = [n for n in layer_sizes if n not in result["layers"]]
    if missing:
        raise ValueError(f"allocation: the sensitivity file has no curve for layer {missing[0]!r} (it has "
                         f"{', '.join(repr(n) for n in list(result['layers'])[:4])}...): run `snnprune sensitivity` "
                         "on this model")
    grid = [float(s) for s in result["sparsities"]]
    curves = {n: _drop_curve(float(result["baseline"]), grid, result["layers"][n]["accuracy"]) for n in layer_sizes}
    total = sum(int(v) for v in layer_sizes.values())
    if total <= 0 or target == 0.0:
        return dict.fromkeys(layer_sizes, 0.0)

    def at(drop: float) -> dict[str, float]:
        return {n: _largest_within(*curves[n], drop) for n in layer_sizes}

    def weighted(alloc: dict[str, float]) -> float:
        return sum(layer_sizes[n] * s for n, s in alloc.items()) / total

    most = max(ys[-1] for _, ys in curves.values())
    if weighted(at(most)) < target:
        raise ValueError(f"allocation: the sensitivity grid reaches at most {weighted(at(most)):.2%} over these layers "
                         f"(each at most {grid[-1]:.0%}), below the target {target:.2%}: probe larger sparsities "
                         "(--sparsities)")
    lo, hi = 0.0, most
    if weighted(at(lo)) < target:
        for _ in range(100):  # S(δ) is continuous and non-decreasing: bisect to float precision
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if weighted(at(mid)) < target else (lo, mid)
    else:
        hi = lo
    alloc = at(hi)
    scale = target / weighted(alloc)  # <= 1: S(hi) >= target
    return {n: s * scale for n, s in alloc.items()}


def allocation_from_file(path: str | Path, target: float, layer_sizes: Mapping[str, int]) -> dict[str, float]:
    """Per-layer sparsities meeting ``target`` from a ``sensitivity.json``
    (``Pruner(..., allocation="sensitivity:PATH")``); :func:`allocation_from_curves` says how.

    Args:
        path: a ``sensitivity.json`` written by :func:`sensitivity` / ``snnprune sensitivity``, or
            its folder.
        target: the global sparsity over the pruned weights, in [0, 1).
        layer_sizes: ``{layer name: number of weights}`` of the pruned layers.

    Returns:
        ``{layer name: sparsity}`` whose weighted mean is ``target``.

    Example::

        >>> allocation_from_file("runs/x/sensitivity.json", 0.9, {"fc1": 1000, "fc2": 100})  # doctest: +SKIP
        {'fc1': 0.95, 'fc2': 0.4}
    """
    return allocation_from_curves(read_sensitivity(path), target, layer_sizes)

