"""Reading recipes: discovery of the shipped ones, ``--set key=value`` overrides, one-line errors.

Example::

    >>> r = load_recipe("digits_snn_lats", overrides=["epochs=2", "optim.lr=0.05"])
    >>> r.epochs, r.optim.lr, r.pruning.schedule
    (2, 0.05, 'lats')
    >>> load_recipe("digits_snn_lats", overrides=["pruning.s_init=-100"])
    Traceback (most recent call last):
    ...
    snnprune.recipe.io.RecipeError: bad recipe: unknown key 'pruning.s_init' for method 'soft_threshold' (...)
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .._validation import closest, did_you_mean, shown
from .families import FAMILIES
from .schema import Recipe, family_sections, migrate, pruning_config
from .smoke import smoke_settings

__all__ = ["RecipeError", "load_recipe", "recipe_dir", "list_recipes", "parse_override", "RECIPE_DIR"]


def _find_recipe_dir() -> Path:
    """$SNNPRUNE_RECIPES, else the repository's recipes/ (source checkout, editable install), else
    the copy a wheel installs under <prefix>/share/snnprune/recipes."""
    env = os.environ.get("SNNPRUNE_RECIPES")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[2] / "recipes",
        Path(sys.prefix) / "share" / "snnprune" / "recipes",
    ]
    return next((c for c in candidates if c.is_dir()), candidates[0])


RECIPE_DIR = _find_recipe_dir()


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line naming the key and the fix."""


def recipe_dir() -> Path:
    """The folder of the shipped recipes."""
    return RECIPE_DIR


def list_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(RECIPE_DIR.glob("*.toml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.05"`` -> ``(["optim", "lr"], 0.05)``; the value is read as TOML, else as text.

    Example::

        >>> parse_override("pruning={method='str'}")
        (['pruning'], {'method': 'str'})
    """
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


def load_recipe(spec: str | Path | dict, overrides: list[str] = (), *, smoke: bool = False) -> Recipe:
    """Read a recipe (a .toml or .json path, the name of a shipped recipe, or a dict), apply ``key=value``
    overrides, validate. Raises :class:`RecipeError` with a one-line message.

    A table value replaces the whole section (``pruning={method="str"}`` switches the method
    without the old method's keys). ``smoke=True`` makes it the recipe's smoke version first
    (:func:`~snnprune.recipe.smoke.smoke_settings`: each phase one epoch of a few small batches);
    the overrides apply after it."""
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
    data = _deep_copy(smoke_settings(data) if smoke else data)
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
        raise RecipeError(_one_line(exc, data)) from None


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _sections(data: dict) -> dict[str, type[BaseModel]]:
    """The model of each table of this recipe that the registries decide: ``pruning`` (its method's
    and family's keys) and the family's own table."""
    data = migrate(data)
    family = FAMILIES.get(data.get("family")) if isinstance(data.get("family"), str) else None
    out: dict[str, type[BaseModel]] = {}
    section = data.get("pruning")
    method = section.get("method") if isinstance(section, dict) else None
    try:
        out["pruning"] = pruning_config(method or (family.default_method if family else "none"), family)
    except (TypeError, ValueError):
        pass
    out.update({name: f.Config for name, f in family_sections().items() if f is family})
    return out


def _walk(loc: tuple, data: dict) -> tuple[tuple[str, ...], type[BaseModel] | None]:
    """Follow an error location through the schema: the key as the user wrote it and the model
    the last part belongs to."""
    model: type[BaseModel] | None = Recipe
    sections = _sections(data)
    shown = []
    for i, part in enumerate(str(p) for p in loc):
        shown.append(part)
        field = model.model_fields.get(part) if model is not None else None
        if i == 0 and part in sections:
            model = sections[part]
        elif field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
        else:
            model = None
    return tuple(shown), model


def _section_keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _section_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def recipe_keys() -> list[str]:
    """Every dotted key a recipe may hold: the fixed sections', every registered method's and
    family's (a key once, whichever methods share it).

    Returns:
        The keys, ``"optim.lr"``-style.

    Example::

        >>> keys = recipe_keys()
        >>> "optim.lr" in keys and "data.T" in keys and "pruning.final_threshold" in keys
        True
    """
    from ..reparam import METHODS

    keys = [k for k in _section_keys(Recipe, "") if k != "pruning"]
    models = [pruning_config(name) for name in METHODS]
    models += [f.Config for f in FAMILIES.values() if f.section == "pruning" and f.Config is not None]
    keys += [f"pruning.{k}" for m in models for k in m.model_fields]
    keys += [k for section, f in family_sections().items() for k in _section_keys(f.Config, section + ".")]
    return list(dict.fromkeys(keys))


def _unknown_key(loc: tuple[str, ...], data: dict) -> str:
    """"unknown key 'a.b'" with, in the pruning section, the methods and families the key belongs
    to, else the key it most likely meant (:func:`~snnprune._validation.closest`) among its own
    section's keys and every other key of a recipe (``warmup``: ``lr_schedule.warmup_epochs``)."""
    _, parent = _walk(loc[:-1], data)
    fields = list(parent.model_fields) if parent is not None else []
    if parent is Recipe:
        fields += list(family_sections())
    message = f"unknown key {'.'.join(loc)!r}"
    pruning = loc[:-1] == ("pruning",) and parent is not None
    own = [".".join(loc[:-1] + (f,)) for f in fields]
    # another method's pruning key would be refused for this method too: those are named as owners
    others = [k for k in recipe_keys() if not (pruning and k.startswith("pruning."))]
    hints, hint = closest(".".join(loc), own + others), did_you_mean(".".join(loc), own + others)
    if not pruning or (hints and set(hints) <= set(own)):  # a key of this method: no owners to name
        return message + hint
    from ..reparam import METHODS

    method = parent.model_fields["method"].default
    message += f" for method {method!r}"
    owners = [f"method {name!r}" for name, cls in METHODS.items()
              if name != method and loc[-1] in pruning_config(name).model_fields]
    owners += [f"family {name!r}" for name, f in FAMILIES.items()
               if f.section == "pruning" and f.Config is not None and loc[-1] in f.Config.model_fields]
    if owners:
        return message + f" ({loc[-1]} is a key of {' / '.join(owners)})"
    if hint:
        return message + hint
    return message + f" (its keys: {', '.join(k for k in fields if k != 'method')})"


def _choices(annotation) -> list:
    """The values a ``Literal`` annotation (possibly inside ``X | None``) allows."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [c for arg in typing.get_args(annotation) for c in _choices(arg)]


def _fix(loc: tuple[str, ...], ctx: dict, value, data: dict) -> Any:
    """A value that passes where ``value`` failed: the closest allowed name, the bound itself
    (``>= 1``: 1), else the key's default; None when there is none to suggest."""
    _, parent = _walk(loc[:-1], data)
    field = parent.model_fields.get(loc[-1]) if parent is not None else None
    if field is None:
        return None
    choices = _choices(field.annotation)
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    if close:
        return close[0]
    for bound in ("ge", "le"):
        if bound in ctx:
            return ctx[bound]
    default = field.get_default(call_default_factory=True)
    return default if isinstance(default, (str, int, float, bool)) else None


def _one_line(exc: ValidationError, data: dict) -> str:
    errors = exc.errors()
    first = errors[0]
    loc, model = _walk(tuple(first["loc"]), data)
    key = ".".join(loc) or "recipe"
    if first["type"] == "extra_forbidden":
        message = _unknown_key(loc, data)
    elif first["type"] == "missing":
        message = f"missing key {key!r}"
    elif first["type"] == "value_error":
        message = first["msg"].removeprefix("Value error, ")
    else:
        value, msg = first.get("input"), first["msg"][0].lower() + first["msg"][1:]
        fix = _fix(loc, first.get("ctx") or {}, value, data)
        shown_value = shown(value) if isinstance(value, (str, int, float, bool)) else repr(value)
        message = f"{key}={shown_value}: {msg}"
        if fix is not None:
            message += f": add --set {shlex.quote(f'{key}={str(fix).lower() if isinstance(fix, bool) else fix}')}"
    more = len(errors) - 1
    return "bad recipe: " + message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")

