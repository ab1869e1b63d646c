"""The recipe schema: every default of snnprune's training that is not a method's or a family's.

The sections are assembled from the registries when a recipe is validated, so that a method, a
family or a threshold schedule registered at any time is one a recipe may name:

* ``family`` names a class of :data:`snnprune.recipe.families.FAMILIES`; its keys (its ``Config``)
  sit beside the method's in ``pruning``, or in a table of their own (``channels``), and its rules
  (``check``) run on the whole recipe;
* ``pruning`` holds the keys of the method it names (:data:`snnprune.reparam.METHODS`), derived
  from the method's class by :func:`snnprune.recipe.methods.method_config`: the keys every method
  shares, its control kind's and its constructor's. A key of another method is an "unknown key".

No method, family or schedule name is written here.

Example::

    >>> r = Recipe.model_validate({"name": "x", "family": "sparsify_during_training", "epochs": 2,
    ...     "batch_size": 8, "model": {"name": "sew_digits"}, "data": {"name": "digits"},
    ...     "pruning": {"method": "str", "s_init": -100}})
    >>> type(r.pruning).__name__, r.pruning.label
    ('STRConfig', 'str (learned)')
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from .._validation import key_error, normalise_name
from .families import FAMILIES, FamilyRecord, check_family, get_family_record
from .methods import (
    CONTROL_CONFIGS,
    BuildContext,
    CubicConfig,
    NoPruningConfig,
    PrunerSpec,
    PruningMethodConfig,
    _Section,
    method_config,
)

__all__ = [
    "Recipe",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "LRConfig",
    "PruningMethodConfig",
    "NoPruningConfig",
    "BuildContext",
    "PrunerSpec",
    "pruning_config",
    "family_sections",
]


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


# -- the pruning section: the method's keys, and the family's -------------------------------
_MERGED: dict[tuple[type, type], type[BaseModel]] = {}


def pruning_config(method: str, family: type[FamilyRecord] | None = None) -> type[BaseModel]:
    """The config class that validates a ``pruning`` section naming ``method`` in ``family``: the
    method's config (read from the method registry now), with the family's keys when the family
    puts them in ``pruning``.

    Args:
        method: a registered method name, or ``"none"``.
        family: a family class (None: the method's keys alone).

    Returns:
        A pydantic model class; a ValueError with a did-you-mean for an unknown method.

    Example::

        >>> config = pruning_config("soft_threshold", FAMILIES["early_pruning"])
        >>> "freeze_epoch" in config.model_fields, "freeze_epoch" in pruning_config("soft_threshold").model_fields
        (True, False)
    """
    if normalise_name(method) == "none":
        return NoPruningConfig
    from ..reparam import get_method  # the method registry, read when a recipe is validated

    base = method_config(get_method(method))
    if family is None or family.Config is None or family.section != "pruning":
        return base
    if (base, family) not in _MERGED:
        _MERGED[base, family] = create_model(base.__name__, __base__=(family.Config, base), __doc__=base.__doc__)
    return _MERGED[base, family]


def family_sections() -> dict[str, type[FamilyRecord]]:
    """Recipe tables that belong to a family: table name -> family (``channels`` -> channel_pruning)."""
    return {f.section: f for f in FAMILIES.values() if f.Config is not None and f.section != "pruning"}


def _pruning_keys() -> set[str]:
    """Every key a pruning section of some method and family may hold (old run folders wrote more)."""
    keys = {k for c in (*CONTROL_CONFIGS.values(), CubicConfig) for k in c.model_fields}
    return keys | {k for f in FAMILIES.values() if f.section == "pruning" and f.Config for k in f.Config.model_fields}


def _family_of(data: dict) -> type[FamilyRecord] | None:
    name = data.get("family")
    return FAMILIES.get(normalise_name(name)) if isinstance(name, str) else None


def _errors(errors: list[dict], *prefix: str) -> ValidationError:
    """A ValidationError of ``errors`` (pydantic's own dicts) with ``prefix`` before each location."""
    details = []
    for e in errors:
        detail: InitErrorDetails = {"type": e["type"], "loc": (*prefix, *e["loc"]), "input": e.get("input")}
        if e.get("ctx"):
            detail["ctx"] = e["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data("Recipe", details)


# -- runs made before: keys renamed or moved since ---------------------------------------------
#: the flat ``pruning`` section of snnprune <= 7f94dc1, every key with its default
_OLD_PRUNING_DEFAULTS = {
    "method": "soft_threshold", "schedule": "lats", "final_threshold": None, "l1": None, "beta": 0.1,
    "scope": "global", "keep_first": False, "keep_last": False, "include": None, "exclude": None,
    "s_init": -3200.0, "target_sparsity": None, "fixed_mask": True, "freeze_epoch": None,
}


def migrate(data: dict) -> dict:
    """A recipe saved by an older schema (a run folder's ``recipe.json``, a checkpoint's recipe)
    as this schema reads it:

    * the flat ``pruning`` section of snnprune <= 7f94dc1 has every old key with its default: those
      that are not its method's or family's and still hold the old default go;
    * ``pruning.options`` (the constructor arguments of a method without a config class) become
      keys of the section;
    * keys written as null by a schema where every family's keys were in every section go.

    A section that lacks any old key was written by hand and is left alone, so that a wrong key
    there is still reported.

    Args:
        data: the recipe as read (not changed).

    Returns:
        The recipe with its ``pruning`` section and tables updated.
    """
    section = data.get("pruning")
    family = _family_of(data)
    out = {k: v for k, v in data.items()
           if not (v is None and k in family_sections() and (family is None or family.section != k))}
    if not isinstance(section, dict) or not isinstance(section.get("method", "soft_threshold"), str):
        return out
    try:
        names = set(pruning_config(section.get("method", family.default_method if family else "none"),
                                   family).model_fields)
    except ValueError:
        return out
    section = dict(section)
    if isinstance(section.get("options"), dict) and "options" not in names:
        section = {**section.pop("options"), **section}
    flat = set(_OLD_PRUNING_DEFAULTS) <= set(section)
    known = _pruning_keys()
    section = {k: v for k, v in section.items()
               if k in names or not ((flat and k in _OLD_PRUNING_DEFAULTS and v == _OLD_PRUNING_DEFAULTS[k])
                                     or (v is None and k in known))}
    return {**out, "pruning": section}


class Recipe(_Section):
    """A whole experiment. The keys of a method live with the method, those of a family with the
    family; every other default of snnprune's training lives here."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)  # a family's own table

    name: str
    description: str = ""
    family: str = Field(description="a registered family (snnprune.recipe.FAMILIES)")
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
    pruning: SerializeAsAny[BaseModel] = Field(
        default=None, validate_default=True,
        description="the method and its keys (a registered method); default: the family's default method",
    )

    def __getattr__(self, item: str) -> Any:
        try:
            return super().__getattr__(item)
        except AttributeError:
            if item in family_sections():  # another family's table: this recipe has none
                return None
            raise

    @model_validator(mode="before")
    @classmethod
    def _migrate_and_tables(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = migrate(data)
        family = _family_of(data)
        table = family.section if family is not None and family.section in family_sections() else None
        unknown = [k for k in data if k not in cls.model_fields and k != table]
        owner = next((family_sections()[k] for k in unknown if k in family_sections()), None)
        if owner is not None:
            raise ValueError(f"the {owner.section} section belongs to family {owner.name!r}, not "
                             f"{data.get('family')!r}")
        if unknown:
            raise _errors([{"type": "extra_forbidden", "loc": (k,), "input": data[k]} for k in unknown])
        if table is not None and table not in data:
            required = [k for k, f in family.Config.model_fields.items() if f.is_required()]
            if required:
                raise ValueError(f"family {family.name!r} needs a {table} section (at least "
                                 f"{', '.join(f'{table}.{k}' for k in required)})")
            data = {**data, table: {}}
        return data

    @field_validator("family", mode="before")
    @classmethod
    def _registered_family(cls, value: Any) -> Any:
        return get_family_record(value).name if isinstance(value, str) else value

    @field_validator("pruning", mode="wrap")
    @classmethod
    def _method_keys(cls, value: Any, handler, info: ValidationInfo) -> Any:
        family = FAMILIES.get(info.data.get("family", ""))
        if value is None:
            value = {"method": family.default_method if family else "none"}
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            return handler(value)
        method = value.get("method", family.default_method if family else "none")
        if not isinstance(method, str):
            raise _errors([{"type": "string_type", "loc": ("method",), "input": method}])
        return pruning_config(method, family).model_validate(value)

    @model_validator(mode="after")
    def _family_table_and_rules(self) -> Recipe:
        family = FAMILIES[self.family]
        extra = self.__pydantic_extra__
        if extra and family.section in extra and not isinstance(extra[family.section], BaseModel):
            try:
                extra[family.section] = family.Config.model_validate(extra[family.section])
            except ValidationError as exc:
                raise _errors(exc.errors(), family.section) from None
        if self.lr_schedule.warmup_epochs >= self.epochs and self.lr_schedule.warmup_epochs > 0:
            raise key_error("lr_schedule.warmup_epochs", self.lr_schedule.warmup_epochs, "must be smaller than "
                            f"epochs={self.epochs}", f"lr_schedule.warmup_epochs={self.epochs - 1}")
        check_family(self)
        self.pruning.check(self)
        return self
