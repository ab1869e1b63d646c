"""Pruning families: *when* a run prunes, apart from *how* (the method, in the recipe's ``pruning``).

A family is a small class with hooks the training loop calls; each hook may return a new model
(a shrunk one, after channel surgery), and the loop then rebuilds optimizer, LR schedule, DDP
wrapper and compiled model around it (:meth:`snnprune.engine.run.Run.set_model`; the model may
be the same object changed in place, as channel surgery does):

* :meth:`Family.schedule_steps` — how many steps the pruning schedule spans;
* :meth:`Family.on_start` — once, on a fresh run, after the pruner is attached;
* :meth:`Family.on_resume` — on ``--resume``, after :meth:`load_state_dict` and before the weights
  are loaded (rebuild a shrunk model here);
* :meth:`Family.on_epoch_start` / :meth:`Family.on_epoch_end` — around every epoch;
* :meth:`Family.regularization` — a term added to every step's loss (None: nothing);
* :meth:`Family.on_optimizer_step` — after every optimizer step (not one that AMP skipped);
* :meth:`Family.lr_phase` — the epochs the LR schedule spans and the step it starts at (when the
  loop builds it: at the start, and after a hook returned a model);
* :meth:`Family.state_dict` / :meth:`Family.load_state_dict` — saved in every checkpoint.

A family declares its ``name``, its recipe keys (a pydantic ``Config``) and its rules
(``check(recipe)``) in its class (:class:`~snnprune.recipe.FamilyRecord`, which :class:`Family`
extends): a subclass with a ``name`` is registered in :data:`FAMILIES` and a recipe names it in
``family``. The shipped families declare themselves in :mod:`snnprune.recipe.families` (so that
recipes validate without the training side) and add their hooks here.

Example::

    >>> sorted(FAMILIES)
    ['channel_pruning', 'dense', 'early_pruning', 'pruning_at_initialization', 'sparsify_during_training']
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import first_samples
from ..recipe import Recipe
from ..recipe import families as declared
from ..recipe.families import FAMILIES, FamilyRecord
from .run import Run

__all__ = ["Family", "FAMILIES", "get_family", "Dense", "SparsifyDuringTraining", "EarlyPruning",
           "PruningAtInitialization", "ChannelPruning"]


class Family(FamilyRecord):
    """Base class: no-op hooks. ``self.recipe`` is the run's recipe; ``name``, ``Config``,
    ``section`` and ``check`` are the family's declaration (:class:`~snnprune.recipe.FamilyRecord`)."""

    #: the :class:`~snnprune.channels.ChannelSpec` state of a model whose channels were cut (None:
    #: the model has its builder's shapes); ``final_model.pt`` stores it
    channel_spec: dict | None = None

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

    def regularization(self, run: Run) -> torch.Tensor | None:
        return None

    def lr_phase(self, run: Run) -> tuple[int, int]:
        """``(epochs, first step)`` of the LR schedule: by default the whole run."""
        return self.recipe.epochs, 0

    def on_optimizer_step(self, run: Run) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def get_family(recipe: Recipe) -> Family:
    """The family object of ``recipe``."""
    return FAMILIES[recipe.family](recipe)


class Dense(declared.Dense, Family):
    """The reference row: no pruner."""


class SparsifyDuringTraining(declared.SparsifyDuringTraining, Family):
    """The method prunes over the whole run (its schedule spans every step)."""


class EarlyPruning(declared.EarlyPruning, Family):
    """The schedule reaches D at ``pruning.freeze_epoch``; the mask is frozen there and the rest
    is sparse fine-tuning."""

    def schedule_steps(self, steps_per_epoch: int) -> int:
        return self.recipe.pruning.freeze_epoch * steps_per_epoch

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        if epoch >= self.recipe.pruning.freeze_epoch and not run.pruner.frozen:
            run.pruner.freeze()
            run.emit("freeze", epoch=epoch, sparsity=run.pruner.sparsity().total)


class PruningAtInitialization(declared.PruningAtInitialization, Family):
    """The mask giving ``pruning.target_sparsity`` is set before the first step (surviving weights
    unchanged); with ``fixed_mask`` it is frozen there."""

    def on_start(self, run: Run) -> None:
        p = self.recipe.pruning
        run.pruner.prune_to(p.target_sparsity)
        if p.fixed_mask:
            run.pruner.freeze()


class ChannelPruning(declared.ChannelPruning, Family):
    """Structured pruning that shrinks the network (the recipe's ``channels`` section): L1 sparsity
    training on the batch-norm scales (:class:`~snnprune.channels.BNSparsity`) until
    ``channels.prune_epoch``; at the start of that epoch the channels the criterion marks go
    (:func:`~snnprune.channels.prune_channels`, with the coupled groups of residuals and depthwise
    convs), the loop rebuilds optimizer (fresh: no momentum carried over), LR schedule (replayed to
    the current step; with ``channels.restart_lr`` each phase runs the schedule afresh over its own
    epochs), DDP wrapper and compiled model around the smaller network, and the rest of the run
    fine-tunes it without the penalty. The best accuracy restarts at the cut, so
    ``best.pt`` holds the best *pruned* model.

    The cut is logged as a ``channel_prune`` event (``metrics.jsonl``): parameters and dense MACs
    per sample before and after, and ``layers``: ``name -> [kept, original]`` output channels of
    every layer that lost some. Every checkpoint after the cut holds the
    :class:`~snnprune.channels.ChannelSpec` (in the family state), and ``final_model.pt`` too, so
    ``--resume``, ``snnprune report`` and ``snnprune export`` rebuild the smaller model from
    ``create_model(...)`` and the spec. The cut reads only the weights and draws no random number,
    so a run killed before it and resumed makes the same cut.
    """

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.channel_spec = None
        self.bn = None

    def _start_sparsity(self, run: Run) -> None:
        from ..channels import BNSparsity

        c = self.recipe.channels
        self.bn = BNSparsity(run.model, l1=c.l1, proximal=c.proximal)

    def on_start(self, run: Run) -> None:
        self._start_sparsity(run)

    def on_resume(self, run: Run) -> nn.Module | None:
        if self.channel_spec is None:
            self._start_sparsity(run)
            return None
        from ..channels import ChannelSpec

        return ChannelSpec.from_state(self.channel_spec).apply(run.model)

    def lr_phase(self, run: Run) -> tuple[int, int]:
        c = self.recipe.channels
        if not c.restart_lr:
            return super().lr_phase(run)
        if self.channel_spec is None:
            return c.prune_epoch, 0
        return self.recipe.epochs - c.prune_epoch, c.prune_epoch * run.steps_per_epoch

    def regularization(self, run: Run) -> torch.Tensor | None:
        if self.bn is None or self.bn.proximal:
            return None
        return self.bn.regularization()

    def on_optimizer_step(self, run: Run) -> None:
        if self.bn is not None and self.bn.proximal:
            self.bn.step(run.optimizer)

    def on_epoch_start(self, run: Run, epoch: int) -> nn.Module | None:
        if self.channel_spec is not None or epoch < self.recipe.channels.prune_epoch:
            return None
        from ..channels import prune_channels

        c, model = self.recipe.channels, run.model
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            x = first_samples(run.test_set, 1).to(device)  # one test sample
            before = _size(model, x)
            model, spec = prune_channels(model, x, c.criterion, delta=c.delta, percent=c.percent,
                                         round_to=c.round_to)
            after = _size(model, x)
        self.channel_spec = spec.to_state()
        self.bn = None
        run.state.best_acc = 0.0  # best.pt: the best of the pruned model from here on
        run.emit("channel_prune", epoch=epoch, step=run.state.global_step, criterion=c.criterion,
                 parameters_before=before[0], parameters_after=after[0],
                 dense_macs_per_sample_before=before[1], dense_macs_per_sample_after=after[1],
                 layers={name: list(w) for name, w in spec.widths().items() if w[0] < w[1]})
        return model

    def state_dict(self) -> dict:
        return {"channel_spec": self.channel_spec}

    def load_state_dict(self, state: dict) -> None:
        self.channel_spec = state.get("channel_spec")


def _size(model: nn.Module, x: torch.Tensor) -> tuple[int, float]:
    """Parameters and dense MACs per sample of ``model`` on ``x``."""
    from ..metrics import count_ops

    ops = count_ops(model, x)
    return sum(p.numel() for p in model.parameters()), ops.dense_macs / max(ops.batch_size or 1, 1)
