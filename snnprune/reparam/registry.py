"""One registry of pruning methods: a name per class. The Pruner, the recipes' engine and the
reports read it; nothing else keeps a list of method names.

A :class:`~snnprune.reparam.Reparameterization` subclass that sets ``name = "..."`` in its class
body registers itself; :func:`register_method` does the same for a class defined elsewhere.

Example::

    >>> from snnprune.reparam import METHODS, get_method
    >>> get_method("Soft-Threshold").__name__
    'SoftThreshold'
    >>> "str" in METHODS
    True
"""

from __future__ import annotations

from .._validation import did_you_mean, normalise_name

__all__ = ["METHODS", "register_method", "get_method"]

#: Every registered method: name -> Reparameterization subclass.
METHODS: dict[str, type] = {}


def register_method(name: str):
    """Class decorator: register a Reparameterization subclass under ``name`` (names are
    case-insensitive, ``-`` and ``_`` alike). Registering a second class under a taken name
    replaces the first (so that re-running a notebook cell works)."""

    def decorator(cls):
        key = normalise_name(name)
        cls.name = key
        METHODS[key] = cls
        return cls

    return decorator


def get_method(name: str) -> type:
    """The class registered under ``name``; a ValueError with a did-you-mean otherwise."""
    key = normalise_name(name)
    if key not in METHODS:
        raise ValueError(
            f"unknown pruning method {name!r}{did_you_mean(key, METHODS)}; known: {', '.join(sorted(METHODS))}"
        )
    return METHODS[key]
