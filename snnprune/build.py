"""Recipe -> the objects of a run: data sets, model, optimizer, LR schedule, pruner.

Nothing here branches on the pruning method: the recipe's method config says which registered
method, with which constructor arguments and which schedule (:meth:`PruningMethodConfig.spec`), and
the name is looked up in :data:`snnprune.reparam.METHODS`. The model's geometry (input channels,
input size, classes) comes from the data set's :func:`~snnprune.data.dataset_info` and ``T`` from
``data.T``; ``model.kwargs`` overrides any of them.

Example::

    >>> from snnprune.recipe import load_recipe
    >>> from snnprune.data import dataset_info
    >>> r = load_recipe("digits_snn_lats")
    >>> sorted(model_kwargs(r, dataset_info(r.data.name)).items())
    [('T', 4), ('in_channels', 2), ('input_size', 24), ('num_classes', 10)]
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from . import data as snn_data
from . import models as snn_models
from . import schedules
from .pruner import Pruner
from .recipe import Recipe, RecipeError
from .recipe.families import get_family_record

__all__ = ["build_datasets", "build_validation_set", "model_kwargs", "build_model", "build_optimizer",
           "build_scheduler", "build_pruner",
           "call_with_kwargs"]


def call_with_kwargs(section: str, build, *args, **kwargs):
    """Call a registry builder: a keyword it does not take, an unknown name or a value it rejects
    is the recipe's fault and becomes a one-line :class:`RecipeError`."""
    try:
        return build(*args, **kwargs)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise RecipeError(f"bad recipe: {section}: {exc}") from None
    except snn_data.DatasetNotFoundError:
        raise
    except ValueError as exc:
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(f"bad recipe: {section}: {str(exc).splitlines()[0]}") from None


# -- data ------------------------------------------------------------------------------------
def build_datasets(recipe: Recipe):
    """Train and test data sets of the recipe (``data.limit`` keeps a fixed random subset), and the
    data set's :class:`~snnprune.data.DatasetInfo`."""
    d = recipe.data
    info = call_with_kwargs("data.name", snn_data.dataset_info, d.name)
    kwargs = dict(d.kwargs)
    if info.events:
        if d.framing == "bins":
            kwargs.setdefault("n_time_bins", d.T)
        else:
            if d.time_window_us is None:
                raise RecipeError("bad recipe: data.framing = 'time_window' needs data.time_window_us")
            kwargs.setdefault("time_window", d.time_window_us)
    sets = []
    for split in ("train", "test"):
        ds = call_with_kwargs("data.kwargs", snn_data.create_dataset, d.name, d.root, split, **kwargs)
        time_major = getattr(ds, "time_major", False)
        if d.limit is not None and d.limit < len(ds):
            keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(recipe.seed))[: d.limit]
            ds = Subset(ds, sorted(keep.tolist()))
        if info.events and d.framing == "time_window":
            ds = _FixedSteps(ds, d.T)
        ds.time_major = time_major  # a wrapper hides the flag the loader reads
        sets.append(ds)
    return sets[0], sets[1], info


def build_validation_set(recipe: Recipe, fraction: float | None = None):
    """The recipe's held-out split for choices made on it (tuning, sensitivity): a share of its
    training set (:func:`snnprune.data.validation_split`, seeded by ``recipe.seed``), never the test
    set.

    Args:
        recipe: a validated recipe.
        fraction: the share held out (default :data:`snnprune.data.VALIDATION_FRACTION`).

    Returns:
        The validation set (a ``Subset`` of the training set).
    """
    train_set, _, _ = build_datasets(recipe)
    fraction = snn_data.VALIDATION_FRACTION if fraction is None else fraction
    return snn_data.validation_split(train_set, fraction, recipe.seed)[1]


class _FixedSteps(torch.utils.data.Dataset):
    """Cut or zero-pad every frame sequence to ``T`` steps, so that with time-window framing a
    sample's output does not depend on which recordings share its batch."""

    def __init__(self, dataset, steps: int) -> None:
        self.dataset, self.steps = dataset, steps

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        frames, label = self.dataset[index]
        frames = torch.as_tensor(frames)[: self.steps]
        if frames.shape[0] < self.steps:
            pad = frames.new_zeros((self.steps - frames.shape[0], *frames.shape[1:]))
            frames = torch.cat([frames, pad])
        return frames, label


# -- model -----------------------------------------------------------------------------------
def _accepted(entry) -> set[str] | None:
    """Keyword names the model's builder takes (a twin: its SNN's); None if it takes ``**kwargs``."""
    builder = snn_models.model_entry(entry.twin_of).builder if entry.twin_of else entry.builder
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _input_size(recipe: Recipe, info) -> int | None:
    """The side of a square input: the data's resize keyword if the recipe sets one, else the data
    set's default sample shape (None for a non-square one: the builder's default applies)."""
    size = recipe.data.kwargs.get("image_size", recipe.data.kwargs.get("size"))
    if isinstance(size, int):
        return size
    _, h, w = info.sample_shape
    return h if h == w else None


def model_kwargs(recipe: Recipe, info) -> dict:
    """The keyword arguments ``create_model`` gets for this recipe (saved with the final model):
    ``model.kwargs``, then for the keywords the builder takes: the classes, input channels and size
    of the data set (``info``) and ``data.T``."""
    m = recipe.model
    entry = call_with_kwargs("model.name", snn_models.model_entry, m.name)
    geometry = {
        "num_classes": m.num_classes or info.num_classes,
        "in_channels": info.sample_shape[0],
        "input_size": _input_size(recipe, info),
        "T": recipe.data.T,
    }
    accepted = _accepted(entry)
    if accepted is None:  # a builder taking **kwargs: what every builder took before
        accepted = {"num_classes"} | ({"T"} if entry.spiking or entry.twin_of else set())
    kwargs = dict(m.kwargs)
    for key, value in geometry.items():
        if key in accepted and value is not None:
            kwargs.setdefault(key, value)
    return kwargs


def build_model(recipe: Recipe, info) -> nn.Module:
    kwargs = model_kwargs(recipe, info)
    return call_with_kwargs("model.kwargs", snn_models.create_model, recipe.model.name, twin=recipe.model.twin,
                            **kwargs)


# -- optimization ----------------------------------------------------------------------------
def build_optimizer(recipe: Recipe, model: nn.Module, pruner: Pruner | None) -> torch.optim.Optimizer:
    """SGD or AdamW; a pruner's own parameters (learned thresholds) get their own weight decay."""
    o = recipe.optim
    own = list(pruner.parameters()) if pruner is not None else []
    thresholds = {id(p) for p in own}
    weights = [p for p in model.parameters() if id(p) not in thresholds]
    groups = [{"params": weights, "weight_decay": o.weight_decay}]
    if own:
        wd = o.weight_decay if o.threshold_weight_decay is None else o.threshold_weight_decay
        groups.append({"params": own, "weight_decay": wd})
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    return torch.optim.AdamW(groups, lr=o.lr)


def build_scheduler(recipe: Recipe, optimizer, steps_per_epoch: int, epochs: int | None = None):
    """Per-step LR schedule: optional linear warmup, then cosine / step / constant (torch's own),
    over ``epochs`` (default the recipe's; a family may run it over a phase of the run)."""
    s, sched = recipe.lr_schedule, torch.optim.lr_scheduler
    total = (recipe.epochs if epochs is None else epochs) * steps_per_epoch
    warmup = s.warmup_epochs * steps_per_epoch
    if s.name == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
    elif s.name == "step":
        milestones = [m * steps_per_epoch - warmup for m in s.milestones if m * steps_per_epoch > warmup]
        main = sched.MultiStepLR(optimizer, milestones=milestones, gamma=s.gamma)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    warm = sched.LinearLR(optimizer, start_factor=s.warmup_start_factor, total_iters=warmup)
    return sched.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def lr_probe(recipe: Recipe, steps_per_epoch: int):
    """The recipe's LR schedule on a throw-away optimizer: LATS(final=D) simulates it before the
    real optimizer (which needs the pruner's parameters) exists."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.optim.lr)
    return build_scheduler(recipe, probe, steps_per_epoch)


# -- pruning ---------------------------------------------------------------------------------
@dataclass
class _Context:
    """The torch side a method config needs to make its schedule (see ``recipe.BuildContext``)."""

    schedules: Any
    lr: Any
    steps_per_epoch: int
    total_steps: int
    family: str


def build_pruner(recipe: Recipe, model: nn.Module, *, steps_per_epoch: int, total_steps: int | None = None,
                 lr=None) -> Pruner | None:
    """The recipe's :class:`~snnprune.Pruner` on ``model`` (None for ``method = "none"``).

    ``total_steps``: the steps the pruning schedule spans (default the whole run; the early-pruning
    family ends it at the freeze); ``lr``: the LR schedule LATS's D-form simulates (default: the
    recipe's, on a probe optimizer).
    """
    p = recipe.pruning
    total = recipe.epochs * steps_per_epoch if total_steps is None else total_steps
    ctx = _Context(schedules, lr if lr is not None else lr_probe(recipe, steps_per_epoch), steps_per_epoch, total,
                   recipe.family)
    spec = call_with_kwargs("pruning", p.spec, ctx)
    if spec is None:
        return None
    from .reparam import get_method

    call_with_kwargs("pruning.method", get_method, spec.method)
    selection = p.selection()
    if spec.target_sparsity is None:  # reach goes with a target
        selection.pop("reach", None)
    elif selection.get("reach") is None:
        selection["reach"] = get_family_record(recipe.family).default_reach
    return call_with_kwargs("pruning", Pruner, model, spec.method, spec.schedule, total_steps=total,
                            method_kwargs=spec.kwargs, target_sparsity=spec.target_sparsity, activity=p.activity,
                            **selection)
