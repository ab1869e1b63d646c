"""Checkpoints that are never half-written and load without unpickling arbitrary objects."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["atomic_save", "atomic_write", "load_checkpoint", "CheckpointError", "first_nonfinite"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message is one line naming the file."""


def first_nonfinite(tensors: dict) -> str | None:
    """The first key of ``tensors`` whose floating-point tensor holds a NaN or an infinity, else
    ``None``. One fused max-|x| over all of them (``torch._foreach_norm``, ``ord=inf``) and one host
    sync; the tensors are looked at one by one only when something is wrong.

    Example::

        >>> first_nonfinite({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")])})
        'b'
        >>> first_nonfinite({"a": torch.ones(2), "steps": torch.tensor(3)}) is None
        True
    """
    floats = {k: v.detach() for k, v in tensors.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()}
    if not floats:
        return None
    maxima = torch._foreach_norm(list(floats.values()), math.inf)
    if torch.isfinite(torch.stack([m.float() for m in maxima])).all():
        return None
    return next(k for k, v in floats.items() if not torch.isfinite(v).all())


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A run killed at any moment leaves either the previous checkpoint or the new one, never a
    truncated file.

    Example::

        >>> import tempfile, torch
        >>> p = atomic_save({"w": torch.ones(2)}, tempfile.mkdtemp() + "/last.pt")
        >>> load_checkpoint(p)["w"]
        tensor([1., 1.])
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: str | Path, write) -> Path:
    """``write(file)`` into a temporary file (binary) in the same folder, fsync, then rename over
    ``path``: :func:`atomic_save` and the run folder's JSON listings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)``; a missing or unreadable file raises
    :class:`CheckpointError` with one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: not a snnprune checkpoint")
    return state
