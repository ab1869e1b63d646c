"""Pruning families: *when* a run prunes, apart from *how* (the method, in the recipe's ``pruning``).

A family declares, in its own class, its ``name``, its recipe keys (a pydantic ``Config``, in the
``pruning`` section or in a table of its own, ``section``) and its rules over the whole recipe
(:meth:`FamilyRecord.check`). :data:`FAMILIES` holds every family; the recipe schema reads it when
it validates, so a family registered at any time is one a recipe may name.

The training loop's side of a family (its hooks) is :class:`snnprune.engine.Family`, which extends
:class:`FamilyRecord`: a user's family is one subclass of it. The shipped families declare
themselves here and :mod:`snnprune.engine.families` adds their hooks in subclasses that take their
place in :data:`FAMILIES`. This module imports pydantic only, so a recipe validates without the
training side.

Families (after Chen et al., "A Unified Framework for Soft Threshold Pruning", ICLR 2023):

* ``dense`` — the reference row: same recipe, no pruning (``pruning.method = "none"``);
* ``sparsify_during_training`` — the method prunes over the whole run (LATS / S-LATS, STR, GMP, ...);
* ``early_pruning`` — the pruning schedule ends at ``pruning.freeze_epoch``, where the mask is
  frozen; the rest is sparse fine-tuning;
* ``pruning_at_initialization`` — the mask giving ``pruning.target_sparsity`` is set at step 0
  (surviving weights unchanged), then kept (``pruning.fixed_mask``);
* ``channel_pruning`` — whole channels leave (the ``channels`` section); no weight pruning.

Example::

    >>> sorted(FAMILIES)
    ['channel_pruning', 'dense', 'early_pruning', 'pruning_at_initialization', 'sparsify_during_training']
    >>> list(FAMILIES["early_pruning"].Config.model_fields)
    ['freeze_epoch']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._validation import did_you_mean, key_error, normalise_name

if TYPE_CHECKING:
    from .schema import Recipe

__all__ = ["FAMILIES", "FamilyRecord", "FamilyKeys", "get_family_record", "check_family",
           "Dense", "SparsifyDuringTraining", "EarlyPruning", "PruningAtInitialization", "ChannelPruning",
           "ChannelPruningConfig"]

#: family name -> its class (the engine's, with hooks, once :mod:`snnprune.engine` is imported)
FAMILIES: dict[str, type[FamilyRecord]] = {}


class FamilyKeys(BaseModel):
    """Base of a family's ``Config``: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FamilyRecord:
    """What a recipe needs to know of a family. A subclass with a ``name`` is registered in
    :data:`FAMILIES` (a later class under the same name, such as the engine's subclass adding
    hooks, takes its place)."""

    name: ClassVar[str] = ""
    #: its recipe keys (None: none)
    Config: ClassVar[type[BaseModel] | None] = None
    #: where the keys sit: "pruning" (beside the method's keys) or the name of a table of their own
    section: ClassVar[str] = "pruning"
    #: the pruning method of a recipe that has no pruning section ("none": the family prunes no weights)
    default_method: ClassVar[str] = "soft_threshold"
    #: ``Pruner(reach=...)`` when the recipe gives no ``pruning.reach`` (None: the Pruner's default)
    default_reach: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            FAMILIES[normalise_name(cls.name)] = cls

    @classmethod
    def check(cls, recipe: Recipe) -> None:
        """Rules over the whole recipe (the keys are valid one by one already); raise ValueError
        saying what to change."""


def get_family_record(name: str) -> type[FamilyRecord]:
    """The class registered under family ``name``; a ValueError with a did-you-mean otherwise.

    Args:
        name: a family name (case-insensitive, ``-`` and ``_`` alike).

    Returns:
        The family's class.

    Example::

        >>> get_family_record("Early-Pruning").name
        'early_pruning'
    """
    key = normalise_name(name)
    if key not in FAMILIES:
        raise ValueError(f"unknown family {name!r}{did_you_mean(key, FAMILIES)}; known: {', '.join(FAMILIES)}")
    return FAMILIES[key]


def inner_epoch_fix(key: str, epochs: int) -> list[str]:
    """``--set`` values that put an epoch key strictly inside the run (``1 <= key < epochs``)."""
    return [f"{key}={epochs - 1}"] if epochs >= 2 else ["epochs=2", f"{key}=1"]


def check_family(recipe: Recipe) -> None:
    """The family's rules on ``recipe``: a family that prunes no weights has ``pruning.method =
    "none"`` and the others a method; then the family's own :meth:`FamilyRecord.check`.

    Args:
        recipe: a recipe whose sections are valid one by one.

    Returns:
        None; raises ValueError naming what to change.

    Example::

        >>> from snnprune.recipe import load_recipe
        >>> check_family(load_recipe("digits_snn_dense"))
    """
    family = FAMILIES[recipe.family]
    method = recipe.pruning.method
    if family.default_method == "none" and method != "none":
        raise key_error("pruning.method", method, f"prunes, family {family.name!r} does not",
                        'pruning={method="none"}')
    if family.default_method != "none" and method == "none":
        raise key_error("pruning.method", method, f"does not prune, family {family.name!r} does",
                        f"pruning.method={family.default_method}")
    family.check(recipe)


class Dense(FamilyRecord):
    """The reference row: the same recipe without pruning."""

    name = "dense"
    default_method = "none"


class SparsifyDuringTraining(FamilyRecord):
    """The method prunes over the whole run (its schedule spans every step)."""

    name = "sparsify_during_training"


class EarlyPruning(FamilyRecord):
    """The pruning schedule ends at ``pruning.freeze_epoch``, where the mask is frozen; the rest of
    the run is sparse fine-tuning."""

    name = "early_pruning"
    #: the schedule already ends where this family freezes the mask (freeze_epoch)
    default_reach = 1.0

    class Config(FamilyKeys):
        freeze_epoch: int = Field(ge=1, description="the epoch at whose start the mask is frozen")

    @classmethod
    def check(cls, recipe: Recipe) -> None:
        p = recipe.pruning
        if p.freeze_epoch >= recipe.epochs:
            raise key_error("pruning.freeze_epoch", p.freeze_epoch, "must be between 1 and epochs - 1 in family "
                            f"'early_pruning' (epochs={recipe.epochs})",
                            *inner_epoch_fix("pruning.freeze_epoch", recipe.epochs))
        schedule, beta = getattr(p, "schedule", None), getattr(p, "beta", 1.0)
        if p.control == "threshold" and p.target_sparsity is None and not (schedule == "pgh" and beta < 1):
            key, value, fixes = ("pruning.beta", beta, ["pruning.beta=0.1"]) if schedule == "pgh" else \
                ("pruning.schedule", schedule, ["pruning.schedule=pgh"] + ["pruning.beta=0.1"] * (beta >= 1))
            raise key_error(key, value, "does not prune early: family 'early_pruning' takes schedule 'pgh' with "
                            "beta < 1, or pruning.target_sparsity (reached at freeze_epoch)", *fixes)


class PruningAtInitialization(FamilyRecord):
    """The mask giving ``pruning.target_sparsity`` is set before the first step (surviving weights
    unchanged); with ``pruning.fixed_mask`` it is frozen there."""

    name = "pruning_at_initialization"

    class Config(FamilyKeys):
        target_sparsity: float = Field(ge=0, lt=1, description="the sparsity of the mask set at step 0")
        fixed_mask: bool = Field(
            default=True,
            description="True freezes the mask at step 0 (the sparsity stays exactly target_sparsity); False keeps "
            "only the threshold fixed (straight-through: weights may regrow)",
        )
        #: target_sparsity is the mask at step 0, not a sparsity the Pruner steers to
        target_at_end: ClassVar[bool] = False

    @classmethod
    def check(cls, recipe: Recipe) -> None:
        p = recipe.pruning
        if p.control == "learned":
            raise key_error("pruning.method", p.method, "learns its own mask: family 'pruning_at_initialization' "
                            "sets one at step 0", "pruning.method=soft_threshold")
        for key in ("final_threshold", "l1"):
            if getattr(p, key, None) is not None:
                raise key_error(f"pruning.{key}", getattr(p, key), "is not used by pruning_at_initialization, which "
                                "sets the threshold from pruning.target_sparsity: drop it from the recipe")


class ChannelPruningConfig(FamilyKeys):
    """The ``channels`` section of family ``channel_pruning`` (:mod:`snnprune.channels`): L1 on the
    batch-norm scales for the first ``prune_epoch`` epochs (:class:`~snnprune.channels.BNSparsity`),
    the cut at the start of epoch ``prune_epoch`` (:func:`~snnprune.channels.prune_channels`), then
    fine-tuning of the smaller network with a new optimizer (the LR schedule runs on)."""

    l1: float = Field(default=1e-4, ge=0, description="s, the L1 strength on the BN scales (slimming 1e-4, OT 2e-4)")
    proximal: bool = Field(
        default=True,
        description="True: proximal step after every optimizer step (dead scales reach exactly 0); False: the "
        "papers' subgradient s*sign(gamma), as the loss term s*sum|gamma|",
    )
    prune_epoch: int = Field(ge=1, description="the channels are cut at the start of this epoch")
    criterion: Literal["optimal", "slimming"] = "optimal"
    delta: float = Field(default=1e-3, ge=0, lt=1, description="optimal: the largest share of a layer's sum gamma^2 "
                         "that its removed channels may carry")
    percent: float | None = Field(default=None, ge=0, lt=1,
                                  description="slimming: the fraction of all channels removed (one global cut)")
    round_to: int | None = Field(default=None, ge=2, description="keep every group's width a multiple of this")
    restart_lr: bool = Field(
        default=False,
        description="run the LR schedule afresh in each phase, over its own epochs (sparsity training: prune_epoch; "
        "fine-tuning: the rest; step milestones count from the phase's start), as network slimming fine-tunes; "
        "False: one schedule over the whole run",
    )

    @model_validator(mode="after")
    def _criterion_keys(self) -> Any:
        if self.criterion == "slimming" and self.percent is None:
            raise key_error("channels.criterion", self.criterion, "needs channels.percent (the fraction of channels "
                            "to cut)", "channels.percent=0.4")
        if self.criterion == "optimal" and self.percent is not None:
            raise key_error("channels.percent", self.percent, "goes with channels.criterion='slimming' (optimal "
                            "uses channels.delta)", "channels.criterion=slimming")
        return self


class ChannelPruning(FamilyRecord):
    """Structured pruning that shrinks the network (the ``channels`` section): L1 sparsity training
    on the batch-norm scales until ``channels.prune_epoch``, the cut there, then fine-tuning of the
    smaller network. It does not combine with weight pruning."""

    name = "channel_pruning"
    Config = ChannelPruningConfig
    section = "channels"
    default_method = "none"

    @classmethod
    def check(cls, recipe: Recipe) -> None:
        c, epochs = recipe.channels, recipe.epochs
        if c.prune_epoch >= epochs:
            raise key_error("channels.prune_epoch", c.prune_epoch, f"must be smaller than epochs={epochs} "
                            "(fine-tuning follows the cut)", *inner_epoch_fix("channels.prune_epoch", epochs))
        shortest = min(c.prune_epoch, epochs - c.prune_epoch)
        if c.restart_lr and recipe.lr_schedule.warmup_epochs >= shortest:
            raise key_error("lr_schedule.warmup_epochs", recipe.lr_schedule.warmup_epochs, "must be smaller than "
                            f"each phase with channels.restart_lr (channels.prune_epoch={c.prune_epoch}, then "
                            f"{epochs - c.prune_epoch} epochs of fine-tuning)",
                            f"lr_schedule.warmup_epochs={shortest - 1}")
