"""One registry of pruning methods: a record per class. The Pruner, the recipes, the CLI and the
docs read it; nothing else keeps a list of method names.

A method declares itself once, in its class body: ``name``, ``control`` (who moves it),
``description`` and ``paper``; its recipe keys are its constructor's parameters
(:func:`snnprune.recipe.method_config`), or the config it names in ``Config``. A
:class:`~snnprune.reparam.Reparameterization` subclass that sets ``name = "..."`` registers
itself; :func:`register_method` does the same for a class defined elsewhere.

Example::

    >>> from snnprune.reparam import METHODS, get_method, method_info
    >>> get_method("Soft-Threshold").__name__
    'SoftThreshold'
    >>> "str" in METHODS
    True
    >>> method_info("ltp").control, list(method_info("ltp").config.model_fields)[-4:]
    ('learned', ['l0', 'temperature', 'tau_init', 'window'])
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from .._validation import did_you_mean, normalise_name

__all__ = ["METHODS", "MethodInfo", "register_method", "get_method", "method_info", "list_methods"]

#: Every registered method: name -> Reparameterization subclass.
METHODS: dict[str, type] = {}


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares about itself, read from its class.

    Attributes:
        name: the registered name (``Pruner(model, name)``, ``pruning.method``).
        cls: the class.
        control: ``"threshold"``, ``"sparsity"`` or ``"learned"``.
        description: one line (the class's ``description``, else its docstring's first line).
        paper: the paper it implements (empty for a method of no paper).
        config: the pydantic model of its ``pruning`` keys.
    """

    name: str
    cls: type
    control: str
    description: str
    paper: str
    config: type


def register_method(name: str):
    """Class decorator: register a Reparameterization subclass under ``name``.

    Args:
        name: case-insensitive, ``-`` and ``_`` alike. Registering a second class under a taken
            name replaces the first (so that re-running a notebook cell works).

    Returns:
        The decorator (it returns the class, with ``name`` set).

    Example::

        >>> from snnprune.reparam import SoftThreshold
        >>> @register_method("my_shrink")
        ... class MyShrink(SoftThreshold): ...
        >>> get_method("my-shrink") is MyShrink
        True
        >>> del METHODS["my_shrink"]
    """

    def decorator(cls):
        key = normalise_name(name)
        cls.name = key
        METHODS[key] = cls
        return cls

    return decorator


def get_method(name: str) -> type:
    """The class registered under ``name``.

    Args:
        name: a method name (case-insensitive, ``-`` and ``_`` alike).

    Returns:
        The class; a ValueError with a did-you-mean over the registered names otherwise.

    Example::

        >>> get_method("ltp").__name__
        'LTP'
    """
    key = normalise_name(name)
    if key not in METHODS:
        raise ValueError(
            f"unknown pruning method {name!r}{did_you_mean(key, METHODS)}; known: {', '.join(sorted(METHODS))}"
        )
    return METHODS[key]


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` record of the method registered under ``name``.

    Args:
        name: a registered method name.

    Returns:
        Its record (the recipe config is derived on first use).

    Example::

        >>> method_info("str").description
        'a learned per-layer threshold d = sigmoid(s), with the true ReLU gradient'
    """
    from ..recipe.methods import method_config

    cls = get_method(name)
    doc = (inspect.getdoc(cls) or "").strip().split("\n\n")[0].replace("\n", " ")
    return MethodInfo(cls.name, cls, cls.control, getattr(cls, "description", "") or doc,
                      getattr(cls, "paper", ""), method_config(cls))


def list_methods() -> list[MethodInfo]:
    """Every registered method's record, sorted by name.

    Returns:
        A list of :class:`MethodInfo`.

    Example::

        >>> [m.name for m in list_methods()][:3]
        ['gmp', 'ltp', 'magnitude']
    """
    return [method_info(name) for name in sorted(METHODS)]
