"""Argument checks shared by the methods, the schedules and the pruner: one message per mistake
(and :func:`first_line`, the one-line form of an error's message that every user-facing error uses)."""

from __future__ import annotations

import difflib
import math
import numbers
import shlex

__all__ = [
    "check_nonnegative", "check_positive_int", "check_fraction", "closest", "did_you_mean", "normalise_name",
    "resolve_name", "first_line", "key_error", "shown",
]


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters (``None``: whole), or the
    name of its type when it has no message.

    Example::

        >>> first_line(ValueError("bad shape\\nat line 3")), first_line(KeyError()), first_line(OSError("x" * 9), 4)
        ('bad shape', 'KeyError', 'xxxx')
    """
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def check_nonnegative(name: str, value) -> float:
    """``float(value)`` if it is a finite number >= 0, else a ValueError naming ``name``.

    Example::

        >>> check_nonnegative("threshold", 0.5)
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(value)  # 0-d tensors, numpy scalars
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    value = float(value)
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_positive_int(name: str, value) -> int:
    """``int(value)`` if it is an integer >= 1 (``2.0`` passes, ``2.7`` does not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or float(value) != int(value) or int(value) < 1:  # (inf and nan first: int() of them raises)
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_fraction(name: str, value, *, closed: bool = False) -> float:
    """A number in ``[0, 1)`` (``[0, 1]`` with ``closed=True``)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1{']' if closed else ')'}, got {value!r}") from None
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return value


def normalise_name(name: str) -> str:
    """Names are compared case-insensitively, with ``-`` and ``_`` alike: ``"Soft-Threshold"`` is
    ``"soft_threshold"``."""
    return str(name).strip().lower().replace("-", "_")


def closest(word: str, choices) -> list[str]:
    """The entries of ``choices`` that ``word`` most likely meant, best first (empty if none).

    A choice is compared by its last dotted part (``optim.lr`` by ``lr``), and so is ``word``. In
    order, the first rule that finds anything decides:

    1. the last parts are equal (every such choice: ``T`` may be ``data.T`` or ``model.kwargs.T``);
    2. one last part begins with the other, the shorter of three letters or more (``warmup``:
       ``lr_schedule.warmup_epochs``; ``threshold_regularization``: ``threshold_reg``);
    3. ``word``'s last part, of three letters or more, is inside a choice's (``decay``: ``weight_decay``);
    4. the last parts are alike by :mod:`difflib`'s similarity (``optim.lrr``: ``optim.lr``).

    Rules 2-4 give the one choice whose last part is most like ``word``'s (on a tie, one in
    ``word``'s own section).

    Example::

        >>> closest("warmup", ["amp", "lr_schedule.warmup_epochs", "lr_schedule.warmup_start_factor"])
        ['lr_schedule.warmup_epochs']
        >>> closest("T", ["data.T", "model.kwargs.T", "seed"]), closest("xyz", ["epochs"])
        (['data.T', 'model.kwargs.T'], [])
    """
    word = str(word)
    section, _, tail = word.rpartition(".")
    last = {c: c.rsplit(".", 1)[-1] for c in dict.fromkeys(str(c) for c in choices) if c != word}

    def similarity(c: str) -> tuple[float, bool]:
        return difflib.SequenceMatcher(None, tail, last[c]).ratio(), c.rpartition(".")[0] == section

    rules = (
        lambda p: p == tail,
        lambda p: min(len(p), len(tail)) >= 3 and (p.startswith(tail) or tail.startswith(p)),
        lambda p: len(tail) >= 3 and tail in p,
        lambda p: difflib.SequenceMatcher(None, tail, p).ratio() >= 0.6,  # difflib.get_close_matches' cutoff
    )
    for i, rule in enumerate(rules):
        found = [c for c, p in last.items() if rule(p)]
        if found:
            return found if i == 0 else [max(found, key=similarity)]
    return []


def did_you_mean(word: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the choices :func:`closest` finds, else ``""``.

    Example::

        >>> did_you_mean("lr", ["epochs", "optim.lr", "optim.momentum"])
        " (did you mean 'optim.lr'?)"
        >>> did_you_mean("epoch", ["epochs", "optim.lr"]), did_you_mean("xyz", ["epochs"])
        (" (did you mean 'epochs'?)", '')
    """
    hints = closest(word, choices)
    if not hints:
        return ""
    return f" (did you mean {' or '.join(map(repr, hints))}?)"


def resolve_name(what: str, value, choices):
    """The entry of ``choices`` that ``value`` names, compared by :func:`normalise_name`
    (``"Add"``, ``"add"`` and ``"ADD"`` all give ``"ADD"``; ``"sew-digits"`` gives ``"sew_digits"``);
    otherwise one ValueError naming ``what``, the closest choice and every choice.

    Example::

        >>> resolve_name("cnf", "add", ("ADD", "AND", "IAND"))
        'ADD'
    """
    choices = list(choices)
    by_key = {normalise_name(c): c for c in choices}
    if isinstance(value, str) and normalise_name(value) in by_key:
        return by_key[normalise_name(value)]
    close = difflib.get_close_matches(normalise_name(value), list(by_key), n=1) if isinstance(value, str) else []
    hint = f" (did you mean {by_key[close[0]]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {value!r}{hint}; choose one of {', '.join(map(repr, choices))}")


def shown(value) -> str:
    """A recipe value as the user writes it after ``--set key=`` (TOML: ``true``, ``'sgd'``, ``0.1``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def key_error(key: str, value, problem: str, *fixes: str) -> ValueError:
    """A recipe error naming the key, its value and the ``--set`` options that fix it (each fix a
    ``key=value`` text; none when only an edit of the recipe file can).

    Example::

        >>> str(key_error("pruning.end_epoch", 9, "must not exceed epochs=1", "pruning.end_epoch=1"))
        'pruning.end_epoch=9 must not exceed epochs=1: add --set pruning.end_epoch=1'
    """
    text = f"{key}={shown(value)} {problem}"
    if fixes:
        text += ": add " + " ".join(f"--set {shlex.quote(fix)}" for fix in fixes)
    return ValueError(text)
