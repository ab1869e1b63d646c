"""The contract between the :class:`~snnprune.pruner.Pruner` and a control regime.

A regime moves what a method's ``control`` says is moved from outside: a threshold
(:class:`~snnprune.control.threshold.ThresholdControl`), masks at a sparsity
(:class:`~snnprune.control.sparsity.SparsityControl`), or the strength of a learned method's
regulariser (:class:`~snnprune.control.learned.LearnedControl`). The Pruner attaches the method to
the layers, counts optimizer steps and reads their learning rates; the regime does the rest:

* ``Control(method_name, schedule, target, total_steps, scope)`` checks its arguments without
  touching the model (a failing Pruner leaves the model as it was);
* :meth:`Control.attach` receives the attached :class:`Layers` and applies the control of step 0;
* :meth:`Control.on_step` runs after every counted optimizer step with the learning rate of each
  layer;
* :meth:`Control.state_dict` / :meth:`Control.load_state_dict` hold what a resumed run needs.
"""

from __future__ import annotations

import math
import warnings
import weakref

import torch
from torch import nn

from ..allocation import effective_allocation, layer_sparsities, with_floors
from ..reparam import Reparameterization, zero_optimizer_state
from ..schedules import Constant
from ..selection import floored_masks, layer_masks

__all__ = ["Control", "Layers", "schedule_from_state", "BOTH_GIVEN"]

BOTH_GIVEN = ("give either a schedule or target_sparsity= (the target picks the schedule: LATS with a λ controller, "
              "or GMP's cubic); to give the controller the LR scheduler pass schedule=TargetSparsity(S, lr=scheduler)")


class Layers:
    """The pruned layers as a regime sees them.

    Attributes:
        names: the layer names (as in ``Pruner.layer_names``).
        reparams: the method instance attached to each layer.
        scope: ``"global"`` (one threshold or ranking for all layers) or ``"layer"``.
        min_weights: the weights every layer keeps at least.
        allocation: how a sparsity is shared among the layers (:mod:`snnprune.allocation`), or
            ``None``: as ``scope`` says (one ranking for ``"global"``, the same sparsity per layer
            for ``"layer"``).
        groups: the optimizer's parameter group of each layer's weight (set at the first step).
        has_regularization: whether the methods add a penalty to the loss.
    """

    def __init__(self, names: list[str], targets: list[tuple[nn.Module, str]], reparams: list, scope: str,
                 min_weights: int, allocation=None) -> None:
        self.names, self.targets, self.reparams = names, targets, reparams
        self.scope, self.min_weights, self.allocation = scope, min_weights, allocation
        self.groups = [0] * len(reparams)
        self.has_regularization = any(
            type(r).regularization is not Reparameterization.regularization for r in reparams)
        self._optimizer = None

    def __len__(self) -> int:
        return len(self.reparams)

    def latent(self, i: int) -> nn.Parameter:
        module, tensor = self.targets[i]
        return module.parametrizations[tensor].original

    def latents(self) -> list[nn.Parameter]:
        return [self.latent(i) for i in range(len(self))]

    @property
    def frozen(self) -> bool:
        return bool(self.reparams) and self.reparams[0].frozen

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer the last :meth:`Pruner.step` was given (``None`` before)."""
        return None if self._optimizer is None else self._optimizer()

    def use_optimizer(self, optimizer: torch.optim.Optimizer, method_name: str) -> None:
        """Check that ``optimizer`` trains every pruned weight and the methods' own parameters,
        and read the parameter group of each layer's weight."""
        group_of = {id(p): g for g, group in enumerate(optimizer.param_groups) for p in group["params"]}
        missing = [n for n, w in zip(self.names, self.latents()) if id(w) not in group_of]
        if missing:
            raise ValueError(f"the optimizer does not update the pruned weight of {missing[0]!r}: "
                             "build it from model.parameters()")
        if any(id(p) not in group_of for r in self.reparams for p in r.parameters()):
            raise ValueError(f"the optimizer does not train the parameters of {method_name!r}: build it after "
                             "the Pruner from model.parameters(), or add pruner.parameters() to it")
        self.groups = [group_of[id(w)] for w in self.latents()]
        self._optimizer = weakref.ref(optimizer)

    def rest_optimizer_state(self, keeps: list[torch.Tensor]) -> None:
        """Where ``keeps`` cuts, zero the per-weight state of the optimizer :meth:`Pruner.step` was
        given (:func:`~snnprune.reparam.zero_optimizer_state`): a cut weight starts from rest should
        a later mask keep it again."""
        optimizer = self.optimizer
        for latent, keep in zip(self.latents(), keeps if optimizer is not None else []):
            zero_optimizer_state(optimizer, latent, keep)

    def split(self, sparsity: float) -> list[float] | None:
        """The sparsity of each layer when the layers together are to be ``sparsity`` sparse, or
        ``None`` where one ranking over all layers decides."""
        shapes = [tuple(w.shape) for w in self.latents()]
        split = layer_sparsities(effective_allocation(self.allocation, self.scope), sparsity, shapes, self.names)
        if split is None or not self.min_weights:
            return split
        return with_floors(split, [math.prod(s) for s in shapes], self.min_weights, sparsity)

    def masks_at(self, scores: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
        """Keep-masks of the highest ``scores`` at ``sparsity``, shared among the layers as
        :meth:`split` says, every layer keeping at least ``min_weights``."""
        split = self.split(sparsity)
        if split is None:
            return floored_masks(scores, sparsity, "global", self.min_weights)
        return layer_masks(scores, split, self.min_weights)

    @torch.no_grad()
    def per_layer_sparsity(self) -> dict[str, float]:
        """The pruned fraction of each layer's weight."""
        return {name: 1.0 - float(r.kept(w).float().mean()) for name, r, w in zip(self.names, self.reparams,
                                                                                 self.latents())}

    @torch.no_grad()
    def sparsity(self) -> float:
        """The pruned fraction of the weights of these layers (``Pruner.sparsity().pruned``)."""
        kept = [r.kept(latent) for r, latent in zip(self.reparams, self.latents())]
        return 1.0 - sum(int(k.sum()) for k in kept) / max(sum(k.numel() for k in kept), 1)


class Control:
    """Base of the regimes: moves nothing (a learned method without a target)."""

    #: the sparsity the run is to end at (``target_sparsity=`` or a sparsity schedule's end)
    target: float | None = None
    #: the threshold or sparsity schedule in force (``Pruner.schedule``)
    schedule = None
    #: the feedback on a learned method's regulariser (``Pruner.controller``)
    controller = None
    #: whether a threshold controller keeps up with its plan (``reach < 1``)
    follow_plan = False

    def attach(self, layers: Layers) -> None:
        """Take the attached layers and apply the control of step 0."""
        self.layers = layers
        self.apply(0)

    def apply(self, step: int, *, retarget: bool = True) -> None:
        """Set the layers' control for ``step`` (``retarget=False``: without a feedback update,
        as after loading a checkpoint)."""

    def on_step(self, step: int, lrs: list[float]) -> None:
        """After the ``step``-th optimizer step, whose learning rate for layer ``i`` was ``lrs[i]``."""
        self.apply(step)

    @property
    def gain(self) -> float:
        """The factor on the methods' regulariser (1 without a feedback)."""
        return 1.0

    def threshold(self, step: int) -> float | None:
        """The global threshold the regime sets (``None``: the methods' own)."""
        return None

    def prune_to(self, sparsity: float, shift: bool, step: int) -> float | None:
        raise TypeError(f"{self.method_name!r} learns its threshold; prune_to needs a threshold- or "
                        "sparsity-driven method")

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"controller": None if self.controller is None else self.controller.state_dict(),
                "schedule": None if self.schedule is None else
                {"type": type(self.schedule).__name__, **self.schedule.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        if self.controller is not None and state.get("controller"):
            self.controller.load_state_dict(state["controller"])
        if state.get("schedule") is not None:
            self.schedule = schedule_from_state(state["schedule"], self.schedule)


def schedule_from_state(state: dict, current):
    """The schedule a checkpoint describes, loaded into ``current`` (the checkpoint's values win,
    with a warning naming those that differ from what ``current`` was built with)."""
    kind = state["type"]
    if kind == "Constant":  # also what prune_to leaves behind, whatever the pruner began with
        return Constant(state["final"])
    if current is None or type(current).__name__ != kind:
        raise ValueError(f"saved schedule is {kind}, this pruner has {type(current).__name__}")
    new = {k: v for k, v in state.items() if k != "type"}
    old = current.state_dict()
    settings = ("final", "beta", "total_steps", "target", "every", "initial", "start", "end")  # what a user chose
    differs = [k for k in settings if k in new and old.get(k) is not None and new[k] != old[k]]
    if differs:
        warnings.warn(
            f"the checkpoint's {kind} has {', '.join(f'{k}={new[k]!r}' for k in differs)} where this Pruner was built "
            f"with {', '.join(f'{k}={old[k]!r}' for k in differs)}: the checkpoint's values are used",
            stacklevel=4,
        )
    current.load_state_dict(new)
    return current
