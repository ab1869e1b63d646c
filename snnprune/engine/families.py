"""Pruning families: *when* a run prunes, apart from *how* (the method, in the recipe's ``pruning``).

A family is a small class with hooks the training loop calls; each hook may return a new model
(a shrunk one, after channel surgery), and the loop then rebuilds optimizer, LR schedule, DDP
wrapper and compiled model around it (:meth:`snnprune.engine.trainer.Run.replace_model`):

* :meth:`Family.schedule_steps` — how many steps the pruning schedule spans;
* :meth:`Family.on_start` — once, on a fresh run, after the pruner is attached;
* :meth:`Family.on_resume` — on ``--resume``, after :meth:`load_state_dict` and before the weights
  are loaded (rebuild a shrunk model here);
* :meth:`Family.on_epoch_start` / :meth:`Family.on_epoch_end` — around every epoch;
* :meth:`Family.state_dict` / :meth:`Family.load_state_dict` — saved in every checkpoint.

A subclass that sets ``name`` is registered (:data:`FAMILIES`); the recipe names it in ``family``.

Example::

    >>> sorted(FAMILIES)
    ['dense', 'early_pruning', 'pruning_at_initialization', 'sparsify_during_training']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import nn

from ..recipe import Recipe

if TYPE_CHECKING:
    from .trainer import Run

__all__ = ["Family", "FAMILIES", "get_family", "Dense", "SparsifyDuringTraining", "EarlyPruning",
           "PruningAtInitialization"]

#: family name -> class
FAMILIES: dict[str, type[Family]] = {}


class Family:
    """Base class: no-op hooks. ``self.recipe`` is the run's recipe."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            FAMILIES[cls.name] = cls

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def schedule_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps the pruning schedule spans (its D is reached at the last one)."""
        return self.recipe.epochs * steps_per_epoch

    def on_start(self, run: Run) -> nn.Module | None:
        return None

    def on_resume(self, run: Run) -> nn.Module | None:
        return None

    def on_epoch_start(self, run: Run, epoch: int) -> nn.Module | None:
        return None

    def on_epoch_end(self, run: Run, epoch: int, metrics: dict) -> nn.Module | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def get_family(recipe: Recipe) -> Family:
    """The family object of ``recipe``."""
    return FAMILIES[recipe.family](recipe)


class Dense(Family):
    """The reference row: no pruner."""

    name = "dense"


class SparsifyDuringTraining(Family):
    """The method prunes over the whole run (its schedule spans every step)."""

    name = "sparsify_during_training"


class EarlyPruning(Family):
    """The schedule reaches D at ``pruning.freeze_epoch``; the mask is frozen there and the rest
    is sparse fine-tuning."""

    name = "early_pruning"

    def schedule_steps(self, steps_per_epoch: int) -> int:
        return self.recipe.pruning.freeze_epoch * steps_per_epoch

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        if epoch >= self.recipe.pruning.freeze_epoch and not run.pruner.frozen:
            run.pruner.freeze()
            run.emit("freeze", epoch=epoch, sparsity=run.pruner.sparsity().total)


class PruningAtInitialization(Family):
    """The mask giving ``pruning.target_sparsity`` is set before the first step (surviving weights
    unchanged); with ``fixed_mask`` it is frozen there."""

    name = "pruning_at_initialization"

    def on_start(self, run: Run) -> None:
        p = self.recipe.pruning
        run.pruner.prune_to(p.target_sparsity)
        if p.fixed_mask:
            run.pruner.freeze()
