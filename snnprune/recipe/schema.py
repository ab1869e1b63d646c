"""The recipe schema: every default of snnprune's training, and one config class per pruning method.

The ``pruning`` section is a discriminated union on ``method``: each method's config carries only
its own keys (plus the layer-selection keys every method shares), so a key of another method is an
"unknown key" error. A method registered at runtime without a config class here (a user's own
:class:`~snnprune.reparam.Reparameterization` with ``name = "toy"``) is taken by
:class:`CustomMethodConfig`: ``{method = "toy", options = {...}}`` plus the threshold-schedule keys;
the engine looks the name up in :data:`snnprune.reparam.METHODS` when it builds the pruner.

Each method config says how it becomes a :class:`~snnprune.pruner.Pruner` through
:meth:`PruningMethodConfig.spec` — the registered method name, the keyword arguments of its
constructor and its schedule — so the engine has no per-method branch. This module imports
pydantic only: schedules come from the engine through the :class:`BuildContext` it passes in.

Families (after Chen et al., "A Unified Framework for Soft Threshold Pruning", ICLR 2023):

* ``dense`` — the reference row: same recipe, no pruning (``pruning.method = "none"``);
* ``sparsify_during_training`` — the method prunes over the whole run (LATS / S-LATS, STR, GMP, ...);
* ``early_pruning`` — continuation (PGH with ``beta < 1``) reaches most of ``D`` early, the mask is
  frozen at ``pruning.freeze_epoch`` and the rest is sparse fine-tuning;
* ``pruning_at_initialization`` — the mask giving ``pruning.target_sparsity`` is set at step 0
  (surviving weights unchanged), then kept (``pruning.fixed_mask``);
* ``channel_pruning`` — whole channels leave (structured; Optimal Thresholding or network slimming
  on batch-norm scales, the ``channels`` section): L1 sparsity training on the BN scales until
  ``channels.prune_epoch``, the cut there, then fine-tuning of the smaller network. It does not
  combine with weight pruning (``pruning.method = "none"``, its default in this family).

Example::

    >>> r = Recipe.model_validate({"name": "x", "family": "sparsify_during_training", "epochs": 2,
    ...     "batch_size": 8, "model": {"name": "sew_digits"}, "data": {"name": "digits"},
    ...     "pruning": {"method": "str", "s_init": -100}})
    >>> type(r.pruning).__name__, r.pruning.label
    ('STRConfig', 'str (learned)')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from .._validation import key_error, normalise_name

__all__ = [
    "Recipe",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "LRConfig",
    "PruningConfig",
    "PruningMethodConfig",
    "NoPruningConfig",
    "SoftThresholdConfig",
    "STRConfig",
    "LTPConfig",
    "SmoothThresholdConfig",
    "MagnitudeConfig",
    "RandomConfig",
    "GMPConfig",
    "CustomMethodConfig",
    "ChannelPruningConfig",
    "METHOD_CONFIGS",
    "FAMILIES",
    "FAMILY_KEYS",
    "BuildContext",
    "PrunerSpec",
]

FAMILIES = ("dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization", "channel_pruning")
#: pruning keys that belong to a family rather than to a method: key -> the family they belong to
FAMILY_KEYS = {"freeze_epoch": "early_pruning", "target_sparsity": "pruning_at_initialization",
               "fixed_mask": "pruning_at_initialization"}
THRESHOLD_SCHEDULES = ("lats", "slats", "pgh", "sine", "linear", "constant")
# recipe name -> class in snnprune.schedules
_SCHEDULE_CLASSES = {"lats": "LATS", "slats": "SLATS", "pgh": "PGH", "sine": "Sine", "linear": "Linear",
                     "constant": "Constant"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- how a method config becomes a Pruner -----------------------------------------------------
class BuildContext(Protocol):
    """What the engine hands a method config when it builds the pruner (torch-side objects)."""

    schedules: Any  #: the :mod:`snnprune.schedules` module
    lr: Any  #: the LR schedule of the run (LATS's D-form simulates it)
    steps_per_epoch: int
    total_steps: int  #: steps the pruning schedule spans (the family decides: early pruning ends at freeze)
    family: str  #: the recipe's family (what ``pruning.target_sparsity`` means depends on it)


@dataclass(frozen=True)
class PrunerSpec:
    """``Pruner(model, method, schedule, method_kwargs=kwargs, ...)``: what a method config asks for."""

    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: Any = None
    #: ``Pruner(target_sparsity=...)``: the sparsity at the last step (during-training methods)
    target_sparsity: float | None = None


class ModelConfig(_Section):
    name: str
    twin: bool = False
    num_classes: int | None = Field(default=None, ge=1, description="default: the data set's")
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="extra arguments of create_model; in_channels, input_size and T default to the data set's",
    )


class DataConfig(_Section):
    name: str
    root: str | None = Field(default=None, description="data folder; default: the data set's own default")
    T: int = Field(
        default=4, ge=1,
        description="time steps: frames per sample (with time_window framing, samples are cut or zero-padded to T), "
        "or encoder repeats for static images",
    )
    framing: Literal["bins", "time_window"] = "bins"
    time_window_us: float | None = Field(default=None, gt=0)
    workers: int = Field(default=0, ge=0)
    limit: int | None = Field(
        default=None, ge=1, description="use a fixed random subset (seeded by the recipe's seed) of N samples per split"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(_Section):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    threshold_weight_decay: float | None = Field(
        default=None, ge=0, description="weight decay on learned thresholds (STR's s); default weight_decay"
    )


class LRConfig(_Section):
    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = Field(default=0, ge=0)
    warmup_start_factor: float = Field(default=0.01, gt=0, le=1)
    milestones: list[int] = Field(default_factory=list, description="epochs where 'step' multiplies by gamma")
    gamma: float = Field(default=0.1, gt=0, le=1)


# -- the pruning section: one config per method -----------------------------------------------
def _normalised(value):
    return normalise_name(value) if isinstance(value, str) else value


class NoPruningConfig(_Section):
    """``method = "none"``: the dense reference row; no other key."""

    method: Literal["none"] = "none"
    control: ClassVar[str | None] = None

    @field_validator("method", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _normalised(value)

    @property
    def label(self) -> str:
        return "dense"

    def spec(self, ctx: BuildContext) -> PrunerSpec | None:
        return None

    def check(self, recipe: Recipe) -> None:
        pass


class PruningMethodConfig(_Section):
    """Keys every pruning method shares (which layers), and the family keys (checked against the
    recipe's family). Subclasses add their own keys, ``control`` and :meth:`spec`."""

    method: str
    scope: Literal["global", "layer"] = "global"
    keep_first: bool = False
    keep_last: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    freeze_epoch: int | None = Field(default=None, ge=1, description="early pruning: freeze the mask here")
    target_sparsity: float | None = Field(
        default=None, ge=0, lt=1,
        description="pruning_at_initialization: the mask set at step 0; sparsify_during_training (soft_threshold, "
        "str, ltp, smooth_threshold): the sparsity over the pruned layers at the last step",
    )
    fixed_mask: bool | None = Field(
        default=None,
        description="pruning at initialization: True (default) freezes the mask at step 0 (the sparsity stays "
        "exactly target_sparsity); False keeps only the threshold fixed (straight-through: weights may regrow)",
    )
    trail: bool = Field(
        default=False,
        description="write a finalized model (trail/sparsity_<percent>.pt, listed in trail.json) each time the "
        "sparsity over the pruned layers passes a new 5% step; on by default for ltp",
    )

    #: "threshold" | "sparsity" | "learned" (None: decided by the registered class)
    control: ClassVar[str | None] = None
    #: family keys that are this method's own keys too (magnitude's target_sparsity)
    own_family_keys: ClassVar[tuple[str, ...]] = ()

    @field_validator("method", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _normalised(value)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the method's constructor."""
        return {}

    def make_schedule(self, ctx: BuildContext) -> Any:
        """The schedule the Pruner drives the method with (None: the method learns its threshold)."""
        return None

    def spec(self, ctx: BuildContext) -> PrunerSpec | None:
        return PrunerSpec(self.method, self.kwargs(), self.make_schedule(ctx))

    @property
    def label(self) -> str:
        """How the recipe prunes, in a few words (tables)."""
        return f"{self.method} (learned)" if self.control == "learned" else self.method

    def check(self, recipe: Recipe) -> None:
        """Rules that need the whole recipe (epochs, family); raise ValueError."""

    def selection(self) -> dict[str, Any]:
        """The Pruner's layer-selection arguments."""
        return dict(scope=self.scope, keep_first=self.keep_first, keep_last=self.keep_last, include=self.include,
                    exclude=self.exclude)


class _TargetKeys(PruningMethodConfig):
    """``pruning.target_sparsity`` in family ``sparsify_during_training``: the run ends at that
    sparsity over the pruned layers (the Pruner's ``target_sparsity=``: LATS with a λ controller for
    soft thresholding, a feedback on the regulariser and a last-step projection for the learned
    methods); in ``early_pruning`` it is reached at ``freeze_epoch``, where the mask is frozen for
    sparse fine-tuning; ``min_weights`` floors every pruned layer."""

    min_weights: int | None = Field(
        default=None, ge=0,
        description="keep at least this many weights in every pruned layer (counted in the budget); default: with a "
        "target, min(32, budget / (2 x layers)), else 0",
    )
    own_family_keys: ClassVar[tuple[str, ...]] = ("target_sparsity",)

    def selection(self) -> dict[str, Any]:
        return {**super().selection(), "min_weights": self.min_weights}

    def target_during_training(self, ctx: BuildContext) -> float | None:
        return self.target_sparsity if ctx.family in ("sparsify_during_training", "early_pruning") else None

    def spec(self, ctx: BuildContext) -> PrunerSpec | None:
        return PrunerSpec(self.method, self.kwargs(), self.make_schedule(ctx), self.target_during_training(ctx))

    def check(self, recipe: Recipe) -> None:
        if self.target_sparsity is not None and recipe.family not in ("sparsify_during_training", "early_pruning",
                                                                      "pruning_at_initialization"):
            raise key_error("family", recipe.family, f"does not take pruning.target_sparsity={self.target_sparsity} "
                            "(sparsify_during_training: reached at the last step; early_pruning: at freeze_epoch; "
                            "pruning_at_initialization: set at step 0)", "family=sparsify_during_training")


class _ThresholdKeys(PruningMethodConfig):
    """A threshold moved by a closed-form schedule (Chen et al. 2023): ``final_threshold`` (D) or
    ``l1`` (λ of the LATS λ-form)."""

    schedule: Literal["lats", "slats", "pgh", "sine", "linear", "constant"] | None = "lats"
    final_threshold: float | None = Field(default=None, ge=0, description="D: threshold at the last step")
    l1: float | None = Field(default=None, ge=0, description="λ of the LATS λ-form (instead of D)")
    beta: float = Field(default=0.1, gt=0, description="PGH continuation factor")

    @model_validator(mode="after")
    def _one_form(self):
        if self.final_threshold is not None and self.l1 is not None:
            raise key_error("pruning.l1", self.l1, f"and pruning.final_threshold={self.final_threshold} are two forms "
                            "of one threshold (λ and D): keep one of them in the recipe")
        if self.l1 is not None and (self.schedule or "lats") != "lats":
            raise key_error("pruning.schedule", self.schedule, f"does not take pruning.l1={self.l1} (the λ-form is "
                            "LATS's)", "pruning.schedule=lats")
        return self

    @property
    def scheduled(self) -> bool:
        return self.schedule is not None or self.final_threshold is not None or self.l1 is not None

    def make_schedule(self, ctx: BuildContext) -> Any:
        if not self.scheduled:
            return None
        S, name = ctx.schedules, self.schedule or "lats"
        if self.l1 is not None:
            return S.LATS(l1=self.l1)
        if self.final_threshold is None:  # pruning at initialization: prune_to sets it, then it stays
            return S.Constant(0.0)
        extra = {"lats": {"lr": ctx.lr}, "pgh": {"beta": self.beta}}.get(name, {})
        return getattr(S, _SCHEDULE_CLASSES[name])(final=self.final_threshold, **extra)

    @property
    def label(self) -> str:
        return f"{self.method} / {self.schedule or 'lats'}" if self.scheduled else super().label


class SoftThresholdConfig(_ThresholdKeys, _TargetKeys):
    """``method = "soft_threshold"``: ``w = sign(θ)·max(|θ|−d, 0)`` with a scheduled ``d`` (LATS, S-LATS,
    PGH, Sine, Linear, Constant), or with ``target_sparsity``: LATS whose λ a feedback controller sets
    so that the run ends at that sparsity."""

    method: Literal["soft_threshold"] = "soft_threshold"
    schedule: Literal["lats", "slats", "pgh", "sine", "linear", "constant"] = "lats"
    control: ClassVar[str] = "threshold"

    def make_schedule(self, ctx: BuildContext) -> Any:
        target = self.target_during_training(ctx)
        if target is not None:
            return ctx.schedules.TargetSparsity(target, lr=ctx.lr)
        return super().make_schedule(ctx)

    def check(self, recipe: Recipe) -> None:
        _TargetKeys.check(self, recipe)
        family = recipe.family
        if family == "pruning_at_initialization":
            if self.final_threshold is not None or self.l1 is not None:
                key, value = ("pruning.l1", self.l1) if self.final_threshold is None else \
                    ("pruning.final_threshold", self.final_threshold)
                raise key_error(key, value, "is not used by pruning_at_initialization, which sets the threshold from "
                                "pruning.target_sparsity: drop it from the recipe")
        elif self.target_sparsity is not None:
            if self.schedule != "lats":
                raise key_error("pruning.schedule", self.schedule, f"cannot reach pruning.target_sparsity="
                                f"{self.target_sparsity} (it sets LATS's λ)", "pruning.schedule=lats")
            if self.final_threshold is not None or self.l1 is not None:
                key, value = ("pruning.l1", self.l1) if self.final_threshold is None else \
                    ("pruning.final_threshold", self.final_threshold)
                raise key_error(key, value, f"and pruning.target_sparsity={self.target_sparsity} both set the "
                                "threshold: keep one of them in the recipe")
        elif self.final_threshold is None and self.l1 is None:
            raise ValueError("pruning.method='soft_threshold' needs one of pruning.final_threshold (D), pruning.l1 "
                             "(λ) or pruning.target_sparsity: add e.g. --set pruning.final_threshold=0.02")
        pgh = self.schedule == "pgh" and self.beta < 1
        if family == "early_pruning" and self.target_sparsity is None and not pgh:
            key, value, fixes = ("pruning.beta", self.beta, ["pruning.beta=0.1"]) if self.schedule == "pgh" else \
                ("pruning.schedule", self.schedule, ["pruning.schedule=pgh"] + ["pruning.beta=0.1"] * (self.beta >= 1))
            raise key_error(key, value, "does not prune early: family 'early_pruning' takes schedule 'pgh' with "
                            "beta < 1, or pruning.target_sparsity (reached at freeze_epoch)", *fixes)


class STRConfig(_TargetKeys):
    """``method = "str"``: soft threshold reparameterization (Kusupati et al. 2020), learned per-layer
    threshold ``d = sigmoid(s)``."""

    method: Literal["str"] = "str"
    s_init: float = Field(default=-3200.0, description="initial s (d = sigmoid(s))")
    control: ClassVar[str] = "learned"

    def kwargs(self) -> dict[str, Any]:
        return {"s_init": self.s_init}


class LTPConfig(_TargetKeys):
    """``method = "ltp"``: learned threshold pruning (Azarian et al. 2020): a sigmoid soft mask of
    ``θ²`` against a learned per-layer threshold, with a soft-L0 penalty."""

    method: Literal["ltp"] = "ltp"
    l0: float = Field(default=0.1, ge=0, description="coefficient of the soft-L0 term (the sparsity pressure)")
    temperature: float = Field(default=0.1, gt=0, description="sigmoid temperature, in units of the layer's mean w²")
    tau_init: float = Field(default=0.0, description="initial threshold τ, in the same unit")
    window: int = Field(default=100, ge=1, description="steps between two saturation checks")
    trail: bool = True  # LTP yields a trail of ever sparser models (Azarian et al. 2020): keep it
    control: ClassVar[str] = "learned"

    def kwargs(self) -> dict[str, Any]:
        return {"l0": self.l0, "temperature": self.temperature, "tau_init": self.tau_init, "window": self.window}


class SmoothThresholdConfig(_TargetKeys):
    """``method = "smooth_threshold"``: a differentiable threshold (Manessi et al. 2018) with a
    learned per-layer threshold pushed up by a regulariser."""

    method: Literal["smooth_threshold"] = "smooth_threshold"
    beta: float = Field(default=50.0, gt=0, description="sharpness, in units of 1 / the layer's weight RMS")
    threshold_reg: float = Field(default=0.1, ge=0, description="coefficient of the threshold regulariser")
    t_init: float = Field(default=0.05, gt=0, description="initial threshold, in units of the layer's weight RMS")
    control: ClassVar[str] = "learned"

    def kwargs(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold_reg": self.threshold_reg, "t_init": self.t_init}


class MagnitudeConfig(PruningMethodConfig):
    """``method = "magnitude"``: one-shot magnitude pruning (Han et al. 2015) to ``target_sparsity`` at
    the start of epoch ``prune_epoch`` (0: at initialization), then fine-tuning with the mask fixed."""

    method: Literal["magnitude"] = "magnitude"
    target_sparsity: float = Field(ge=0, lt=1, description="the sparsity the one-shot mask gives")
    prune_epoch: int = Field(default=0, ge=0, description="the mask is set at the start of this epoch")
    control: ClassVar[str] = "sparsity"
    own_family_keys: ClassVar[tuple[str, ...]] = ("target_sparsity",)

    def make_schedule(self, ctx: BuildContext) -> Any:
        return ctx.schedules.OneShot(self.target_sparsity, at=self.prune_epoch * ctx.steps_per_epoch)

    @property
    def label(self) -> str:
        return f"{self.method} / one-shot"

    def check(self, recipe: Recipe) -> None:
        if self.prune_epoch >= recipe.epochs:
            raise key_error("pruning.prune_epoch", self.prune_epoch, f"must be smaller than epochs={recipe.epochs}",
                            f"pruning.prune_epoch={recipe.epochs - 1}")


class RandomConfig(MagnitudeConfig):
    """``method = "random"``: the random-mask control, set once like :class:`MagnitudeConfig`."""

    method: Literal["random"] = "random"


class GMPConfig(PruningMethodConfig):
    """``method = "gmp"``: gradual magnitude pruning (Zhu & Gupta 2017), the cubic sparsity schedule
    from ``initial_sparsity`` at ``start_epoch`` to ``final_sparsity`` at ``end_epoch``, masks
    recomputed every ``update_every`` optimizer steps."""

    method: Literal["gmp"] = "gmp"
    initial_sparsity: float = Field(default=0.0, ge=0, lt=1)
    final_sparsity: float = Field(ge=0, lt=1)
    start_epoch: int = Field(default=0, ge=0)
    end_epoch: int | None = Field(default=None, ge=1, description="default: the last epoch")
    update_every: int = Field(default=100, ge=1, description="optimizer steps between mask updates")
    control: ClassVar[str] = "sparsity"

    @model_validator(mode="after")
    def _ordered(self):
        if self.initial_sparsity > self.final_sparsity:
            raise key_error("pruning.initial_sparsity", self.initial_sparsity, "must not exceed "
                            f"pruning.final_sparsity={self.final_sparsity}", "pruning.initial_sparsity=0.0")
        if self.end_epoch is not None and self.end_epoch <= self.start_epoch:
            raise key_error("pruning.end_epoch", self.end_epoch, f"must come after pruning.start_epoch="
                            f"{self.start_epoch}", f"pruning.start_epoch={self.end_epoch - 1}")
        return self

    def make_schedule(self, ctx: BuildContext) -> Any:
        spe = ctx.steps_per_epoch
        end = None if self.end_epoch is None else self.end_epoch * spe
        return ctx.schedules.Cubic(self.final_sparsity, initial=self.initial_sparsity, start=self.start_epoch * spe,
                                   end=end, every=self.update_every)

    @property
    def label(self) -> str:
        return f"{self.method} / cubic"

    def check(self, recipe: Recipe) -> None:
        epochs, start_fix = recipe.epochs, f"pruning.start_epoch={recipe.epochs - 1}"
        if self.end_epoch is not None and self.end_epoch > epochs:
            raise key_error("pruning.end_epoch", self.end_epoch, f"must not exceed epochs={epochs}",
                            f"pruning.end_epoch={epochs}", *([start_fix] if self.start_epoch >= epochs else []))
        if self.start_epoch >= epochs:
            raise key_error("pruning.start_epoch", self.start_epoch, f"must be smaller than epochs={epochs}", start_fix)


class CustomMethodConfig(_ThresholdKeys):
    """Any other registered method: ``options`` go to its constructor; give ``final_threshold`` or
    ``l1`` (and ``schedule``) for a threshold-controlled method, nothing for a learned one."""

    method: str
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the method's class")
    schedule: Literal["lats", "slats", "pgh", "sine", "linear", "constant"] | None = None

    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


#: method name -> its config class (a method without one is a :class:`CustomMethodConfig`)
METHOD_CONFIGS: dict[str, type[BaseModel]] = {
    "none": NoPruningConfig,
    "soft_threshold": SoftThresholdConfig,
    "str": STRConfig,
    "ltp": LTPConfig,
    "smooth_threshold": SmoothThresholdConfig,
    "magnitude": MagnitudeConfig,
    "gmp": GMPConfig,
    "random": RandomConfig,
}
_CUSTOM = "custom"


def _method_tag(value: Any) -> str:
    method = value.get("method", "soft_threshold") if isinstance(value, dict) else getattr(value, "method", None)
    method = _normalised(method)
    return method if isinstance(method, str) and method in METHOD_CONFIGS else _CUSTOM  # [] is not a name


def config_class(method: Any) -> type[BaseModel]:
    """The config class that validates a pruning section with this ``method``."""
    tag = _method_tag({"method": method})
    return CustomMethodConfig if tag == _CUSTOM else METHOD_CONFIGS[tag]


PruningConfig = Annotated[
    # built from the table above (X | Y has no splat form)
    Union[tuple(Annotated[cls, Tag(tag)] for tag, cls in [*METHOD_CONFIGS.items(), (_CUSTOM, CustomMethodConfig)])],  # noqa: UP007, E501
    Discriminator(_method_tag),
]


# -- runs made before the method configs: drop the defaults the old flat section wrote ---------
#: the flat ``pruning`` section of snnprune <= 7f94dc1, every key with its default
_OLD_PRUNING_DEFAULTS = {
    "method": "soft_threshold", "schedule": "lats", "final_threshold": None, "l1": None, "beta": 0.1,
    "scope": "global", "keep_first": False, "keep_last": False, "include": None, "exclude": None,
    "s_init": -3200.0, "target_sparsity": None, "fixed_mask": True, "freeze_epoch": None,
}


def migrate_flat_pruning(data: dict) -> dict:
    """A recipe saved by the flat schema (a run folder's ``recipe.json``, a checkpoint's recipe) has
    every old key with its default; drop those that do not belong to its method or family and still
    hold the old default. A section that lacks any old key was written by hand and is left alone,
    so that a wrong key there is still reported."""
    section = data.get("pruning")
    if not isinstance(section, dict) or not set(_OLD_PRUNING_DEFAULTS) <= set(section):
        return data
    cls = config_class(section.get("method"))
    names = set(cls.model_fields)
    family = data.get("family")
    kept = {}
    for key, value in section.items():
        foreign = key not in names or (FAMILY_KEYS.get(key, family) != family
                                       and key not in getattr(cls, "own_family_keys", ()))
        if not (foreign and key in _OLD_PRUNING_DEFAULTS and value == _OLD_PRUNING_DEFAULTS[key]):
            kept[key] = value
    return {**data, "pruning": kept}


class ChannelPruningConfig(_Section):
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
    def _criterion_keys(self):
        if self.criterion == "slimming" and self.percent is None:
            raise key_error("channels.criterion", self.criterion, "needs channels.percent (the fraction of channels "
                            "to cut)", "channels.percent=0.4")
        if self.criterion == "optimal" and self.percent is not None:
            raise key_error("channels.percent", self.percent, "goes with channels.criterion='slimming' (optimal "
                            "uses channels.delta)", "channels.criterion=slimming")
        return self


def _inner_epoch_fix(key: str, epochs: int) -> list[str]:
    """``--set`` values that put an epoch key strictly inside the run (``1 <= key < epochs``)."""
    return [f"{key}={epochs - 1}"] if epochs >= 2 else ["epochs=2", f"{key}=1"]


class Recipe(_Section):
    """A whole experiment. Every default of snnprune's training lives here."""

    name: str
    description: str = ""
    family: Literal["dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization",
                    "channel_pruning"]
    seed: int = 0
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="global batch (split over the processes under torchrun)")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="mixed precision (CUDA only)")
    channels_last: bool = Field(default=True, description="channels-last memory format (CUDA only)")
    compile: bool = False
    on_nonfinite: Literal["stop", "skip"] = Field(
        default="stop",
        description="a non-finite loss or gradient: 'stop' the run (no checkpoint is written past the last good "
        "one), or 'skip' the batch (no optimizer step; counted in skipped_batches)",
    )
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    lr_schedule: LRConfig = Field(default_factory=LRConfig)
    pruning: PruningConfig = Field(default_factory=SoftThresholdConfig)
    channels: ChannelPruningConfig | None = Field(default=None, description="family channel_pruning only")

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        return migrate_flat_pruning(data) if isinstance(data, dict) else data

    @model_validator(mode="before")
    @classmethod
    def _channel_family_prunes_no_weights(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("family") == "channel_pruning" and data.get("pruning") is None:
            return {**data, "pruning": {"method": "none"}}
        return data

    def _check_channels(self) -> None:
        c = self.channels
        if self.family != "channel_pruning":
            if c is not None:
                raise key_error("family", self.family, "does not take a channels section (family "
                                "'channel_pruning' does)", "family=channel_pruning")
            return
        if c is None:
            raise key_error("family", self.family, "needs a channels section (at least channels.prune_epoch)",
                            f"channels.prune_epoch={max(self.epochs // 2, 1)}")
        if self.pruning.method != "none":
            raise key_error("pruning.method", self.pruning.method, "does not combine with family 'channel_pruning' "
                            "(it removes whole channels)", 'pruning={method="none"}')
        if c.prune_epoch >= self.epochs:
            raise key_error("channels.prune_epoch", c.prune_epoch, f"must be smaller than epochs={self.epochs} "
                            "(fine-tuning follows the cut)", *_inner_epoch_fix("channels.prune_epoch", self.epochs))
        shortest = min(c.prune_epoch, self.epochs - c.prune_epoch)
        if c.restart_lr and self.lr_schedule.warmup_epochs >= shortest:
            raise key_error("lr_schedule.warmup_epochs", self.lr_schedule.warmup_epochs, "must be smaller than each "
                            f"phase with channels.restart_lr (channels.prune_epoch={c.prune_epoch}, then "
                            f"{self.epochs - c.prune_epoch} epochs of fine-tuning)",
                            f"lr_schedule.warmup_epochs={shortest - 1}")

    @model_validator(mode="after")
    def _family_is_consistent(self) -> Recipe:
        p, family = self.pruning, self.family
        if self.lr_schedule.warmup_epochs >= self.epochs and self.lr_schedule.warmup_epochs > 0:
            raise key_error("lr_schedule.warmup_epochs", self.lr_schedule.warmup_epochs, "must be smaller than "
                            f"epochs={self.epochs}", f"lr_schedule.warmup_epochs={self.epochs - 1}")
        self._check_channels()
        if family == "channel_pruning":
            return self
        if family == "dense":
            if p.method != "none":
                raise key_error("pruning.method", p.method, "prunes, family 'dense' does not",
                                'pruning={method="none"}')
            return self
        if p.method == "none":
            raise key_error("pruning.method", p.method, f"does not prune, family {family!r} does",
                            "pruning.method=soft_threshold")
        for key, owner in FAMILY_KEYS.items():
            if getattr(p, key) is not None and owner != family and key not in p.own_family_keys:
                raise key_error(f"pruning.{key}", getattr(p, key), f"belongs to family {owner!r}, not {family!r}",
                                f"family={owner}")
        if family == "early_pruning" and (p.freeze_epoch is None or p.freeze_epoch >= self.epochs):
            raise key_error("pruning.freeze_epoch", p.freeze_epoch, "must be between 1 and epochs - 1 in family "
                            f"'early_pruning' (epochs={self.epochs})",
                            *_inner_epoch_fix("pruning.freeze_epoch", self.epochs))
        if family == "pruning_at_initialization":
            if p.control == "learned":
                raise key_error("pruning.method", p.method, "learns its own mask: family 'pruning_at_initialization' "
                                "sets one at step 0", "pruning.method=soft_threshold")
            if p.target_sparsity is None:
                raise key_error("family", family, "needs pruning.target_sparsity (the mask set at step 0)",
                                "pruning.target_sparsity=0.8")
            if p.fixed_mask is None:
                p.fixed_mask = True
        p.check(self)
        return self
