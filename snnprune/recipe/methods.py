"""The ``pruning`` section of a recipe, per method: the keys every method shares, the keys of its
control kind, and the keys of its constructor.

A method's recipe config is not written by hand. :func:`method_config` derives it from the
method's class: the base is the config of its control kind (``"threshold"``: a threshold schedule,
:class:`ThresholdConfig`; ``"learned"``: :class:`LearnedConfig`; ``"sparsity"``: a one-shot mask,
:class:`OneShotConfig`), and every parameter of the class's constructor becomes a key with the
constructor's own default and annotation. A class that needs other keys says so next to itself
with ``Config = ...`` (:class:`~snnprune.reparam.GMP` takes :class:`CubicConfig`, the cubic
schedule's keys). Rules about a control kind live here, with its config; rules about a family live
with the family (:mod:`snnprune.recipe.families`).

This module imports pydantic only: it reads the classes it is handed, and makes schedules through
the :class:`BuildContext` the engine passes in.

Example::

    >>> class HalfShrink:
    ...     control = "threshold"
    ...     def __init__(self, strength: float = 1.0): ...
    >>> HalfShrink.name = "half_shrink"
    >>> config = method_config(HalfShrink)
    >>> c = config(strength=0.5, schedule="linear", final_threshold=0.05)
    >>> c.kwargs(), c.label
    ({'strength': 0.5}, 'half_shrink / linear')
"""

from __future__ import annotations

import difflib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    create_model,
    field_validator,
    model_validator,
)

from .._validation import key_error, normalise_name

if TYPE_CHECKING:
    from .schema import Recipe

__all__ = ["BuildContext", "PrunerSpec", "PruningMethodConfig", "ThresholdConfig", "LearnedConfig", "OneShotConfig",
           "CubicConfig", "NoPruningConfig", "CONTROL_CONFIGS", "method_config", "threshold_schedules"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BuildContext(Protocol):
    """What the engine hands a method config when it builds the pruner (torch-side objects)."""

    schedules: Any  #: the :mod:`snnprune.schedules` module
    lr: Any  #: the LR schedule of the run (LATS's D-form simulates it)
    steps_per_epoch: int
    total_steps: int  #: steps the pruning schedule spans (the family decides: early pruning ends at freeze)
    family: str  #: the recipe's family


@dataclass(frozen=True)
class PrunerSpec:
    """``Pruner(model, method, schedule, method_kwargs=kwargs, ...)``: what a method config asks for."""

    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: Any = None
    #: ``Pruner(target_sparsity=...)``: the sparsity at the last step (during-training methods)
    target_sparsity: float | None = None


def _normalised(value: Any) -> Any:
    return normalise_name(value) if isinstance(value, str) else value


class NoPruningConfig(_Section):
    """``method = "none"``: no pruner (the dense reference row, channel pruning); no other key."""

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
    """Keys every pruning method shares (which layers, the trail). Subclasses add their control
    kind's keys; :func:`method_config` adds the constructor's."""

    method: str
    scope: Literal["global", "layer"] = "global"
    keep_first: bool = False
    keep_last: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    trail: bool = Field(
        default=False,
        description="write a finalized model (trail/sparsity_<percent>.pt, listed in trail.json) each time the "
        "sparsity over the pruned layers passes a new 5% step; a method's default (on for ltp)",
    )
    activity: float | dict[str, float] | None = Field(
        default=None,
        description="a firing-rate penalty added to the loss (spiking nets): a coefficient for every spiking neuron "
        "layer, or {name glob = coefficient}; the penalty is coefficient x mean spikes per neuron per step, per layer "
        "(snnprune.activity)",
    )

    #: "threshold" | "sparsity" | "learned": who moves the method (the registered class's)
    control: ClassVar[str | None] = None
    #: the keys that are the method's constructor arguments (set by :func:`method_config`)
    constructor_keys: ClassVar[tuple[str, ...]] = ()

    @field_validator("method", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _normalised(value)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the method's constructor."""
        return {key: getattr(self, key) for key in self.constructor_keys}

    def make_schedule(self, ctx: BuildContext) -> Any:
        """The schedule the Pruner drives the method with (None: the method learns its threshold)."""
        return None

    def target_during_training(self, ctx: BuildContext | None = None) -> float | None:
        """``Pruner(target_sparsity=...)``: the sparsity the run ends at (None: no target)."""
        return None

    def spec(self, ctx: BuildContext) -> PrunerSpec | None:
        return PrunerSpec(self.method, self.kwargs(), self.make_schedule(ctx), self.target_during_training(ctx))

    @property
    def label(self) -> str:
        """How the recipe prunes, in a few words (tables)."""
        return self.method

    def check(self, recipe: Recipe) -> None:
        """Rules that need the whole recipe (epochs, family); raise ValueError."""

    def selection(self) -> dict[str, Any]:
        """The Pruner's layer-selection arguments."""
        return dict(scope=self.scope, keep_first=self.keep_first, keep_last=self.keep_last, include=self.include,
                    exclude=self.exclude)


class _TargetConfig(PruningMethodConfig):
    """``pruning.target_sparsity``: the run ends at that sparsity over the pruned layers (the
    Pruner's ``target_sparsity=``: LATS with a λ controller for a threshold method, a feedback on
    the regulariser and a last-step projection for a learned one); ``min_weights`` floors every
    pruned layer."""

    target_sparsity: float | None = Field(
        default=None, ge=0, lt=1,
        description="the sparsity over the pruned layers at the last step of the pruning schedule (early_pruning: at "
        "freeze_epoch; pruning_at_initialization: the mask set at step 0)",
    )
    min_weights: int | None = Field(
        default=None, ge=0,
        description="keep at least this many weights in every pruned layer (counted in the budget); default: with a "
        "target, min(32, budget / (2 x layers)), else 0",
    )

    reach: float | None = Field(
        default=None, gt=0, le=1,
        description="the fraction of the pruning schedule's steps at which the target is reached and the mask "
        "frozen (the Pruner's reach=); default: the family's (early_pruning: 1, freeze_epoch is its reach), else the "
        "Pruner's DEFAULT_REACH (0.75)",
    )
    allocation: str | dict[str, float] | None = Field(
        default=None,
        description="how the target is shared among the layers (the Pruner's allocation=): global, uniform, erk, "
        "sensitivity:PATH or a table {name glob = sparsity}; supersedes scope; default: as scope says",
    )

    #: False where a family reads ``target_sparsity`` as something else (a mask set at step 0)
    target_at_end: ClassVar[bool] = True

    @field_validator("allocation")
    @classmethod
    def _check_allocation(cls, value: Any) -> Any:
        if value is None:
            return None
        from ..allocation import check_allocation

        return check_allocation(value)

    def selection(self) -> dict[str, Any]:
        chosen = {**super().selection(), "min_weights": self.min_weights, "reach": self.reach}
        if self.allocation is not None:  # it supersedes scope
            chosen.pop("scope")
            chosen["allocation"] = self.allocation
        return chosen

    def target_during_training(self, ctx: BuildContext | None = None) -> float | None:
        return self.target_sparsity if self.target_at_end else None


def threshold_schedules() -> dict[str, type]:
    """The threshold schedules a recipe may name, read from :mod:`snnprune.schedules` now."""
    from ..schedules import THRESHOLD_SCHEDULES

    return THRESHOLD_SCHEDULES


class ThresholdConfig(_TargetConfig):
    """``control = "threshold"``: a threshold moved by a closed-form schedule (Chen et al. 2023),
    to ``final_threshold`` (D) at the last step, or by ``l1`` (λ of the LATS λ-form), or steered to
    ``target_sparsity``."""

    schedule: str = Field(default="lats", description="a threshold schedule of snnprune.schedules")
    final_threshold: float | None = Field(default=None, ge=0, description="D: threshold at the last step")
    l1: float | None = Field(default=None, ge=0, description="λ of the LATS λ-form (instead of D)")
    beta: float = Field(default=0.1, gt=0, description="PGH continuation factor")
    control: ClassVar[str] = "threshold"

    @field_validator("schedule", mode="before")
    @classmethod
    def _known_schedule(cls, value: Any) -> Any:
        value = _normalised(value)
        known = threshold_schedules()
        if isinstance(value, str) and value not in known:
            close = difflib.get_close_matches(value, list(known), n=1)
            raise key_error("pruning.schedule", value, f"is not a threshold schedule (known: {', '.join(known)})",
                            *(f"pruning.schedule={name}" for name in close))
        return value

    @model_validator(mode="after")
    def _one_form(self):
        given = [key for key in ("final_threshold", "l1", "target_sparsity") if getattr(self, key) is not None]
        if "final_threshold" in given and "l1" in given:
            raise key_error("pruning.l1", self.l1, f"and pruning.final_threshold={self.final_threshold} are two forms "
                            "of one threshold (λ and D): keep one of them in the recipe")
        if self.l1 is not None and self.schedule != "lats":
            raise key_error("pruning.schedule", self.schedule, f"does not take pruning.l1={self.l1} (the λ-form is "
                            "LATS's)", "pruning.schedule=lats")
        return self

    def make_schedule(self, ctx: BuildContext) -> Any:
        S = ctx.schedules
        if self.target_during_training(ctx) is not None:
            return S.TargetSparsity(self.target_during_training(ctx), lr=ctx.lr)
        if self.l1 is not None:
            return S.LATS(l1=self.l1)
        if self.final_threshold is None:  # a mask set at step 0 by prune_to: the threshold then stays
            return S.Constant(0.0)
        schedule = threshold_schedules()[self.schedule]
        takes = inspect.signature(schedule).parameters
        extra = {key: value for key, value in (("lr", ctx.lr), ("beta", self.beta)) if key in takes}
        return schedule(final=self.final_threshold, **extra)

    @property
    def label(self) -> str:
        return f"{self.method} / {self.schedule}"

    def check(self, recipe: Recipe) -> None:
        if self.target_during_training() is not None:
            if self.schedule != "lats":
                raise key_error("pruning.schedule", self.schedule, f"cannot reach pruning.target_sparsity="
                                f"{self.target_sparsity} (it sets LATS's λ)", "pruning.schedule=lats")
            if self.final_threshold is not None or self.l1 is not None:
                key, value = ("pruning.l1", self.l1) if self.final_threshold is None else \
                    ("pruning.final_threshold", self.final_threshold)
                raise key_error(key, value, f"and pruning.target_sparsity={self.target_sparsity} both set the "
                                "threshold: keep one of them in the recipe")
        elif self.final_threshold is None and self.l1 is None and self.target_sparsity is None:
            raise ValueError(f"pruning.method={self.method!r} needs one of pruning.final_threshold (D), pruning.l1 "
                             "(λ) or pruning.target_sparsity: add e.g. --set pruning.final_threshold=0.02")


class LearnedConfig(_TargetConfig):
    """``control = "learned"``: the optimizer moves the method's own thresholds."""

    control: ClassVar[str] = "learned"

    @property
    def label(self) -> str:
        return f"{self.method} (learned)"


class OneShotConfig(PruningMethodConfig):
    """``control = "sparsity"``, one mask (Han et al. 2015): ``target_sparsity`` at the start of epoch
    ``prune_epoch`` (0: at initialization), then fine-tuning with the mask fixed."""

    target_sparsity: float = Field(ge=0, lt=1, description="the sparsity the one-shot mask gives")
    prune_epoch: int = Field(default=0, ge=0, description="the mask is set at the start of this epoch")
    control: ClassVar[str] = "sparsity"

    def make_schedule(self, ctx: BuildContext) -> Any:
        return ctx.schedules.OneShot(self.target_sparsity, at=self.prune_epoch * ctx.steps_per_epoch)

    @property
    def label(self) -> str:
        return f"{self.method} / one-shot"

    def check(self, recipe: Recipe) -> None:
        if self.prune_epoch >= recipe.epochs:
            raise key_error("pruning.prune_epoch", self.prune_epoch, f"must be smaller than epochs={recipe.epochs}",
                            f"pruning.prune_epoch={recipe.epochs - 1}")


class CubicConfig(PruningMethodConfig):
    """``control = "sparsity"``, gradual (Zhu & Gupta 2017): the cubic sparsity schedule from
    ``initial_sparsity`` at ``start_epoch`` to ``final_sparsity`` at ``end_epoch``, masks recomputed
    every ``update_every`` optimizer steps."""

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


#: control kind -> the config a method of that kind gets unless its class names another
CONTROL_CONFIGS: dict[str, type[PruningMethodConfig]] = {
    "threshold": ThresholdConfig, "learned": LearnedConfig, "sparsity": OneShotConfig,
}

_DERIVED: dict[type, type[PruningMethodConfig]] = {}


def method_config(cls: type) -> type[PruningMethodConfig]:
    """The recipe config of method class ``cls``: the config its class (or nearest ancestor) names
    in ``Config``, else its control kind's (:data:`CONTROL_CONFIGS`), plus one key per parameter
    of its constructor, with the constructor's default and annotation. A parameter without a
    default is a required key; a class that defines no constructor of its own adds none.

    Args:
        cls: a method class with ``name`` and ``control`` (a
            :class:`~snnprune.reparam.Reparameterization` subclass).

    Returns:
        A pydantic model class named ``<ClassName>Config``, made once per class.

    Example::

        >>> from snnprune.reparam import LTP
        >>> config = method_config(LTP)
        >>> config.__name__, config.constructor_keys, config().trail
        ('LTPConfig', ('l0', 'temperature', 'tau_init', 'window'), True)
    """
    if cls in _DERIVED:
        return _DERIVED[cls]
    mro = [k for k in cls.__mro__ if k is not object]
    declarer = next((k for k in mro if vars(k).get("Config") is not None), None)
    init_owner = next((k for k in mro if "__init__" in vars(k)), None)
    base = vars(declarer)["Config"] if declarer is not None else CONTROL_CONFIGS[cls.control]
    own = init_owner is not None and (declarer is None or mro.index(init_owner) < mro.index(declarer))
    params = _constructor_keys(init_owner) if own else {}
    docs = _arg_docs(cls)

    def fields(typed: bool) -> dict[str, Any]:
        out: dict[str, Any] = {key: (annotation if typed else Any, Field(default=default, description=docs.get(key)))
                               for key, (annotation, default) in params.items()}
        out["method"] = (str, cls.name)
        if isinstance(getattr(cls, "trail", None), bool):
            out["trail"] = (bool, Field(default=cls.trail, description=PruningMethodConfig.model_fields["trail"]
                                        .description))
        return out

    try:
        config = create_model(f"{cls.__name__}Config", __base__=base, __doc__=_summary(cls), **fields(True))
    except PydanticSchemaGenerationError:  # an annotation pydantic cannot check (a tensor): any value
        config = create_model(f"{cls.__name__}Config", __base__=base, __doc__=_summary(cls), **fields(False))
    config.control = cls.control
    config.constructor_keys = tuple(base.constructor_keys) + tuple(params)
    _DERIVED[cls] = config
    return config


def _constructor_keys(owner: type) -> dict[str, tuple[Any, Any]]:
    """``name -> (annotation, default)`` of the keyword parameters of ``owner.__init__``."""
    hints = _hints(owner.__init__)
    out = {}
    for param in list(inspect.signature(owner.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        out[param.name] = (annotation, default)
    return out


def _hints(fn) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation this process cannot resolve: the key takes any value
        return {}


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return f"``method = {cls.name!r}``: " + (doc.split("\n\n")[0].replace("\n", " ") if doc else cls.__name__)


def _arg_docs(cls: type) -> dict[str, str]:
    """``name -> text`` of the ``Args:`` section of the class's (or its constructor's) docstring."""
    docs: dict[str, str] = {}
    for doc in (inspect.getdoc(cls.__init__) or "", inspect.getdoc(cls) or ""):
        section = re.split(r"^Args:\s*$", doc, maxsplit=1, flags=re.M)
        if len(section) < 2:
            continue
        key = None
        for line in section[1].splitlines():
            if line and not line.startswith(" "):
                break
            match = re.match(r"^ {2,4}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
            if match:
                key = match.group(1)
                docs.setdefault(key, match.group(2))
            elif key and line.strip() and key in docs:
                docs[key] += " " + line.strip()
    return docs
