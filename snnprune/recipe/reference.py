"""Every recipe key as Markdown tables, read from the schema and the registries (the docs' key
reference is generated from here, so it names a key exactly when a recipe may hold it).

One table per section: the top-level keys, ``model``, ``data``, ``optim``, ``lr_schedule``; the
``pruning`` keys every method shares, then each registered method's own; then each family's keys
(in ``pruning`` or in its own table); then the threshold schedules' names.

Example::

    >>> text = recipe_reference()
    >>> "| `final_threshold` |" in text, '### `[pruning]` with `method = "ltp"`' in text
    (True, True)
"""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .families import FAMILIES
from .methods import PruningMethodConfig, method_config, threshold_schedules
from .schema import Recipe

__all__ = ["recipe_reference", "reference_tables"]

_SECTIONS = ("model", "data", "optim", "lr_schedule")


def reference_tables() -> list[tuple[str, str, type[BaseModel], list[str]]]:
    """``(title, intro, model, keys)`` of every table of the reference, in order.

    Returns:
        One entry per table; ``keys`` are field names of ``model``.

    Example::

        >>> [t[0] for t in reference_tables()][:2]
        ['Top-level keys', '`[model]`']
    """
    from ..reparam import list_methods  # the registered methods, read now

    top = [k for k in Recipe.model_fields if k not in (*_SECTIONS, "pruning")]
    tables = [("Top-level keys", "", Recipe, top)]
    for name in _SECTIONS:
        model = Recipe.model_fields[name].annotation
        tables.append((f"`[{name}]`", "", model, list(model.model_fields)))
    shared = list(PruningMethodConfig.model_fields)
    tables.append(("`[pruning]`: every method", "The method, and which layers it prunes.", PruningMethodConfig,
                   shared))
    for info in list_methods():
        config = method_config(info.cls)
        own = [k for k in config.model_fields if k not in shared or config.model_fields[k].default
               != PruningMethodConfig.model_fields[k].default]
        intro = f"{info.description} ({info.control}{'; ' + info.paper if info.paper else ''})."
        tables.append((f'`[pruning]` with `method = "{info.name}"`', intro, config, own))
    for family in FAMILIES.values():
        if family.Config is None:
            continue
        where = "`[pruning]`" if family.section == "pruning" else f"`[{family.section}]`"
        tables.append((f'{where} with `family = "{family.name}"`', _first_line(family), family.Config,
                       list(family.Config.model_fields)))
    return tables


def recipe_reference(level: int = 3) -> str:
    """The reference as Markdown: one heading of ``level`` and one table per section.

    Args:
        level: the heading level of each table's title.

    Returns:
        Markdown text.

    Example::

        >>> print(recipe_reference().splitlines()[0])
        ### Top-level keys
    """
    out = []
    for title, intro, model, keys in reference_tables():
        out += [f"{'#' * level} {title}", ""]
        if intro:
            out += [intro, ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key in keys:
            field = model.model_fields[key]
            out.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | "
                       f"{_cell(field.description or '')} |")
        out.append("")
    out += [f"{'#' * level} `pruning.schedule`", "", "The threshold schedules a threshold method names "
            "(`snnprune.schedules.THRESHOLD_SCHEDULES`):", ""]
    out += [f"- `{name}`: {_first_line(cls)}" for name, cls in threshold_schedules().items()]
    return "\n".join(out) + "\n"


def _first_line(cls: type) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    if origin is not None:
        return _cell(f"{getattr(origin, '__name__', origin)}[{', '.join(_type(a) for a in args)}]")
    if isinstance(annotation, type):
        return "table" if issubclass(annotation, BaseModel) else annotation.__name__
    return _cell(str(annotation).replace("typing.", ""))


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "`{}`" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default, ensure_ascii=False)}`"
