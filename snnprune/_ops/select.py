"""The one switch between the reference and the fast forms of :mod:`snnprune._ops`.

Example::

    >>> from snnprune._ops import fast_enabled, use_fast
    >>> previous = use_fast(False); fast_enabled()
    False
    >>> _ = use_fast(previous)
"""

from __future__ import annotations

import os

__all__ = ["ENV_VAR", "fast_enabled", "use_fast"]

#: the environment variable read at import: ``fast`` (the default) or ``reference``
ENV_VAR = "SNNPRUNE_OPS"
_CHOICES = ("fast", "reference")


def _from_environment() -> bool:
    value = os.environ.get(ENV_VAR, "fast").strip().lower() or "fast"
    if value not in _CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r} is not a choice: set it to 'fast' (the default) or 'reference'")
    return value == "fast"


_fast = _from_environment()


def use_fast(enabled: bool) -> bool:
    """Use the fast forms of the operators (``True``) or their reference forms (``False``), for
    every operator, from the next forward on.

    Args:
        enabled: whether the fast forms are used.

    Returns:
        The previous setting, to restore it.

    Example::

        >>> from snnprune._ops import use_fast
        >>> previous = use_fast(False)    # the reference forms (the papers' formulas under autograd)
        >>> _ = use_fast(previous)
    """
    global _fast
    if not isinstance(enabled, bool):
        raise TypeError(f"use_fast expects True or False, got {enabled!r}")
    previous, _fast = _fast, enabled
    return previous


def fast_enabled() -> bool:
    """Whether the fast forms are in use (:func:`use_fast`, ``SNNPRUNE_OPS``).

    Returns:
        ``True`` when the fast forms are used.

    Example::

        >>> from snnprune._ops import fast_enabled
        >>> isinstance(fast_enabled(), bool)
        True
    """
    return _fast
