"""Recipes: one declarative TOML file per experiment, validated against one schema.

The schema below is the single place where every default lives; a recipe file states only what
differs. Validation is done by pydantic (unknown keys, wrong types and out-of-range values are
rejected with the offending key named); :func:`load_recipe` turns its report into one line.

Families (after Chen et al., "A Unified Framework for Soft Threshold Pruning", ICLR 2023):

* ``dense`` — the reference row: same recipe, no pruning;
* ``sparsify_during_training`` — the threshold rises over the whole run (LATS / S-LATS);
* ``early_pruning`` — continuation (PGH with ``beta < 1``) reaches most of ``D`` early, the mask is
  frozen at ``pruning.freeze_epoch`` and the rest is sparse fine-tuning;
* ``pruning_at_initialization`` — the threshold giving ``pruning.target_sparsity`` is set at step
  0 (surviving weights unchanged), then kept fixed.

Example::

    >>> r = load_recipe("digits_snn_lats", overrides=["epochs=2", "optim.lr=0.05"])
    >>> r.epochs, r.optim.lr, r.pruning.schedule
    (2, 0.05, 'lats')
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_dir", "list_recipes", "parse_override"]

def _find_recipe_dir() -> Path:
    """$SNNPRUNE_RECIPES, else the repository's recipes/ (source checkout, editable install), else
    the copy a wheel installs under <prefix>/share/snnprune/recipes."""
    env = os.environ.get("SNNPRUNE_RECIPES")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parent.parent / "recipes",
        Path(sys.prefix) / "share" / "snnprune" / "recipes",
    ]
    return next((c for c in candidates if c.is_dir()), candidates[0])


RECIPE_DIR = _find_recipe_dir()


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line naming the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str
    twin: bool = False
    num_classes: int | None = Field(default=None, ge=1, description="default: the data set's")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments of create_model")


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


class PruningConfig(_Section):
    method: Literal["none", "soft_threshold", "str"] = "soft_threshold"
    schedule: Literal["lats", "slats", "pgh", "sine", "linear", "constant"] = "lats"
    final_threshold: float | None = Field(default=None, ge=0, description="D: threshold at the last step")
    l1: float | None = Field(default=None, ge=0, description="λ of the LATS λ-form (instead of D)")
    beta: float = Field(default=0.1, gt=0, description="PGH continuation factor")
    scope: Literal["global", "layer"] = "global"
    keep_first: bool = False
    keep_last: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    s_init: float = Field(default=-3200.0, description="STR: initial s (d = sigmoid(s))")
    target_sparsity: float | None = Field(default=None, ge=0, lt=1, description="pruning at initialization")
    fixed_mask: bool = Field(
        default=True,
        description="pruning at initialization: True freezes the mask at step 0 (the sparsity stays exactly "
        "target_sparsity); False keeps only the threshold fixed (straight-through: weights may regrow)",
    )
    freeze_epoch: int | None = Field(default=None, ge=1, description="early pruning: freeze the mask here")


class Recipe(_Section):
    """A whole experiment. Every default of snnprune's training lives here."""

    name: str
    description: str = ""
    family: Literal["dense", "sparsify_during_training", "early_pruning", "pruning_at_initialization"]
    seed: int = 0
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="global batch (split over the processes under torchrun)")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="mixed precision (CUDA only)")
    channels_last: bool = Field(default=True, description="channels-last memory format (CUDA only)")
    compile: bool = False
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    lr_schedule: LRConfig = Field(default_factory=LRConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)

    @model_validator(mode="after")
    def _family_is_consistent(self) -> Recipe:
        p, family = self.pruning, self.family
        if family == "dense":
            if p.method != "none":
                raise ValueError("family 'dense' needs pruning.method = 'none'")
            return self
        if p.method == "none":
            raise ValueError(f"family {family!r} needs a pruning.method ('soft_threshold' or 'str')")
        if p.method == "str" and (p.final_threshold is not None or p.l1 is not None):
            raise ValueError("method 'str' learns its thresholds: drop pruning.final_threshold / pruning.l1")
        if p.method == "soft_threshold":
            if family != "pruning_at_initialization" and (p.final_threshold is None) == (p.l1 is None):
                raise ValueError("soft_threshold needs exactly one of pruning.final_threshold (D) or pruning.l1 (λ)")
            if p.l1 is not None and p.schedule != "lats":
                raise ValueError("pruning.l1 (λ-form) goes with pruning.schedule = 'lats'")
        if family == "early_pruning":
            if p.method != "soft_threshold" or p.schedule != "pgh" or not p.beta < 1:
                raise ValueError("early_pruning uses method 'soft_threshold' with schedule 'pgh' and beta < 1")
            if p.freeze_epoch is None or p.freeze_epoch >= self.epochs:
                raise ValueError("early_pruning needs pruning.freeze_epoch between 1 and epochs - 1")
        elif p.freeze_epoch is not None:
            raise ValueError(f"pruning.freeze_epoch belongs to family 'early_pruning', not {family!r}")
        if family == "pruning_at_initialization":
            if p.method != "soft_threshold" or p.target_sparsity is None:
                raise ValueError("pruning_at_initialization needs method 'soft_threshold' and pruning.target_sparsity")
        elif p.target_sparsity is not None:
            raise ValueError(f"pruning.target_sparsity belongs to 'pruning_at_initialization', not {family!r}")
        if self.lr_schedule.warmup_epochs >= self.epochs and self.lr_schedule.warmup_epochs > 0:
            raise ValueError("lr_schedule.warmup_epochs must be smaller than epochs")
        return self


def recipe_dir() -> Path:
    """The folder of the shipped recipes."""
    return RECIPE_DIR


def list_recipes() -> list[Path]:
    return sorted(RECIPE_DIR.glob("*.toml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.05"`` -> ``(["optim", "lr"], 0.05)``; the value is read as TOML, else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects key=value, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip().split("."), parsed


def _resolve_path(spec: str | Path) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    shipped = RECIPE_DIR / f"{Path(spec).stem}.toml"
    if shipped.is_file() and path.suffix in ("", ".toml") and len(path.parts) == 1:
        return shipped
    names = [p.stem for p in list_recipes()]
    hint = difflib.get_close_matches(str(spec), names, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else "; `snnprune recipes` lists the shipped ones"
    raise RecipeError(f"no recipe file or shipped recipe named {str(spec)!r}{extra}")


def load_recipe(spec: str | Path | dict, overrides: list[str] = ()) -> Recipe:
    """Read a recipe (a .toml or .json path, the name of a shipped recipe, or a dict), apply ``key=value``
    overrides, validate. Raises :class:`RecipeError` with a one-line message."""
    if isinstance(spec, dict):
        data = spec
    else:
        path = _resolve_path(spec)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(f"cannot read recipe {path}: {exc}") from None
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            kind = "JSON" if path.suffix == ".json" else "TOML"
            raise RecipeError(f"recipe {path} is not valid {kind}: {exc}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"recipe {path} is not a table of settings")
    data = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {text!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_one_line(exc)) from None


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = Recipe
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(str(p) for p in first["loc"])
    key = ".".join(loc) or "recipe"
    if first["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(loc[-1], _fields_at(loc[:-1]), n=1)
        message = f"unknown key {key!r}" + (f" (did you mean {'.'.join(loc[:-1] + (hint[0],))!r}?)" if hint else "")
    elif first["type"] == "missing":
        message = f"missing key {key!r}"
    elif first["type"] == "value_error":
        message = first["msg"].removeprefix("Value error, ")
    else:
        message = f"{key}: {first['msg'][0].lower()}{first['msg'][1:]} (got {first.get('input')!r})"
    more = len(errors) - 1
    return "bad recipe: " + message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
