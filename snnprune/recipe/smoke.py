"""The smoke version of a recipe: every phase of the run for one epoch of a few small batches.

A researcher's first move with a new recipe is a short run that goes through everything the real
one does (``snnprune train RECIPE --smoke``): the model, the data loader, the method, and each
phase the recipe's epoch keys mark out (LR warm-up, the start and end of a GMP ramp, a mask frozen
at ``freeze_epoch``, a one-shot prune or a channel cut at ``prune_epoch``, LR milestones).

The epoch keys are found by name: ``epochs``, every key ending in ``_epoch`` or ``_epochs``, and
``milestones``. Each boundary strictly inside the run becomes its own epoch, in order, so every
phase keeps at least one epoch and every rule between the keys (``start_epoch < end_epoch <=
epochs``, ``freeze_epoch < epochs``, ...) still holds; 0 stays 0 and the end of the run stays the
end. A recipe without inner boundaries runs one epoch.

This module imports nothing but the standard library.

Example::

    >>> r = {"epochs": 12, "batch_size": 64, "data": {"name": "digits_dvs", "T": 4},
    ...      "pruning": {"method": "gmp", "start_epoch": 1, "end_epoch": 9}}
    >>> s = smoke_settings(r)
    >>> s["epochs"], s["pruning"]["start_epoch"], s["pruning"]["end_epoch"], s["batch_size"], s["data"]["limit"]
    (3, 1, 2, 4, 4)
"""

from __future__ import annotations

from typing import Any

__all__ = ["smoke_settings", "smoke_image_size", "SMOKE_BATCHES", "SMOKE_BATCH_SIZE", "SMOKE_MAX_T",
           "SMOKE_IMAGE_SIZE"]

# Each epoch is one step: what a phase changes (a mask, a cut, an LR) shows in the step after it,
# and a large net's smoke run stays within seconds per phase.
SMOKE_BATCHES = 1  #: training batches per epoch, and evaluation batches
SMOKE_BATCH_SIZE = 4  #: at most this many samples a batch (2 is the least batch norm trains on)
SMOKE_MAX_T = 4  #: at most this many time steps (the default of data.T)
SMOKE_IMAGE_SIZE = 32  #: the side images larger than twice this are cut to (see smoke_image_size)


def smoke_image_size(sample_shape: tuple[int, ...], events: bool, kwargs: dict) -> int | None:
    """The ``data.kwargs.image_size`` of a smoke run, or None to keep the data set's own: images
    larger than ``2 * SMOKE_IMAGE_SIZE`` on their shorter side are cut to :data:`SMOKE_IMAGE_SIZE`
    (the image nets pool adaptively) unless the recipe sets a size; event frames keep theirs, which
    the event nets' fixed poolings need.

    Example::

        >>> smoke_image_size((3, 224, 224), False, {}), smoke_image_size((3, 32, 32), False, {})
        (32, None)
    """
    if events or "image_size" in kwargs or min(sample_shape[1:]) <= 2 * SMOKE_IMAGE_SIZE:
        return None
    return SMOKE_IMAGE_SIZE


def _is_epoch_key(key: str) -> bool:
    return key == "epochs" or key.endswith(("_epoch", "_epochs")) or key == "milestones"


def _epoch_values(node: dict, path: tuple = ()):
    """``(path, value)`` of every epoch key under ``node`` (a list of milestones gives each)."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _epoch_values(value, (*path, key))
        elif _is_epoch_key(key) and (*path, key) != ("epochs",):
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, int) and not isinstance(v, bool):
                    yield (*path, key), v


def _rescaled(node: dict, epochs: int, rank: dict[int, int], new_epochs: int) -> dict:
    def scale(v):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            return v
        return rank.get(v, new_epochs) if v < epochs else new_epochs

    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out[key] = _rescaled(value, epochs, rank, new_epochs)
        elif _is_epoch_key(key) and key != "epochs":
            out[key] = [scale(v) for v in value] if isinstance(value, list) else scale(value)
        else:
            out[key] = value
    return out


def smoke_settings(recipe: dict[str, Any], *, batches: int = SMOKE_BATCHES,
                   batch_size: int = SMOKE_BATCH_SIZE) -> dict[str, Any]:
    """The smoke version of a recipe given as a dict (before validation): each phase one epoch,
    ``batches`` batches of at most ``batch_size`` samples per epoch and for the evaluation (through
    ``data.limit``), at most :data:`SMOKE_MAX_T` time steps, no loader worker processes.

    Everything else (model, method, optimizer, LR schedule, data set) is the recipe's own. A value
    that is not an integer is left for validation to report.

    Args:
        recipe: the recipe's settings, as read from its file.
        batches: training batches per epoch (and test batches).
        batch_size: the largest batch.

    Returns:
        A new dict; ``recipe`` is not changed.

    Example::

        >>> s = smoke_settings({"epochs": 120, "batch_size": 256, "data": {"name": "imagenet"},
        ...                     "lr_schedule": {"warmup_epochs": 5, "milestones": [30, 60]},
        ...                     "channels": {"prune_epoch": 90}})
        >>> s["epochs"], s["lr_schedule"], s["channels"]["prune_epoch"]
        (5, {'warmup_epochs': 1, 'milestones': [2, 3]}, 4)
    """
    epochs = recipe.get("epochs")
    out = dict(recipe)
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
        inner = sorted({v for _, v in _epoch_values(recipe) if 0 < v < epochs})
        rank = {v: i + 1 for i, v in enumerate(inner)}
        out = _rescaled(recipe, epochs, rank, len(inner) + 1)
        out["epochs"] = len(inner) + 1
    size = recipe.get("batch_size")
    if isinstance(size, int) and not isinstance(size, bool):
        batch_size = min(size, batch_size)
    out["batch_size"] = batch_size
    data = dict(out.get("data") or {})
    limit = batches * batch_size
    data["limit"] = min(data["limit"], limit) if isinstance(data.get("limit"), int) else limit
    if isinstance(data.get("T"), int):
        data["T"] = min(data["T"], SMOKE_MAX_T)
    data["workers"] = 0
    out["data"] = data
    return out
