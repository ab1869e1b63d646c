"""Checkpoints that are never half-written and load without unpickling arbitrary objects."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import torch

from .._validation import first_line

__all__ = ["atomic_save", "atomic_write", "load_checkpoint", "CheckpointError", "first_nonfinite",
           "load_run_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message is one line naming the file."""


def first_nonfinite(tensors: dict) -> str | None:
    """The first key of ``tensors`` whose floating-point tensor holds a NaN or an infinity, else
    ``None``. Their total L2 norm in one call (``torch.nn.utils.get_total_norm``: fused per device
    and dtype; a NaN or an infinity anywhere makes it non-finite) and one host sync; the tensors
    are looked at one by one only when that norm is not finite.

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
    if torch.isfinite(torch.nn.utils.get_total_norm(list(floats.values()))):
        return None
    return next((k for k, v in floats.items() if not torch.isfinite(v).all()), None)  # None: a norm overflowed


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A run killed at any moment leaves either the previous checkpoint or the new one, never a
    truncated file. A dict gets a ``checksum`` entry (SHA-256 of its content: every tensor's bytes,
    dtype and shape, every other value's repr), which :func:`load_checkpoint` verifies, so a file
    changed after it was written (a flipped bit, an edit) is refused rather than trained on.

    Example::

        >>> import tempfile, torch
        >>> p = atomic_save({"w": torch.ones(2)}, tempfile.mkdtemp() + "/last.pt")
        >>> load_checkpoint(p)["w"]
        tensor([1., 1.])
    """
    if isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != CHECKSUM}, CHECKSUM: content_checksum(obj)}
    return atomic_write(path, lambda f: torch.save(obj, f))


#: the key of the content checksum in the files :func:`atomic_save` writes
CHECKSUM = "checksum"


def content_checksum(obj) -> str:
    """``"sha256:<hex>"`` of a nested structure of dicts, lists and tensors (the ``checksum`` entry
    itself left out): the same before saving and after ``torch.load``. Cost: one pass over the
    bytes (about 1 s per GB)."""
    digest = hashlib.sha256()

    def feed(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            digest.update(memoryview(t.view(torch.uint8).numpy()) if t.numel() else b"")
        elif isinstance(x, dict):
            digest.update(b"{")
            for k, v in x.items():
                if k != CHECKSUM:
                    digest.update(repr(k).encode())
                    feed(v)
            digest.update(b"}")
        elif isinstance(x, (list, tuple)):
            digest.update(b"[" if isinstance(x, list) else b"(")
            for v in x:
                feed(v)
            digest.update(b"]")
        else:
            digest.update(f"{type(x).__name__}:{x!r};".encode())

    feed(obj)
    return "sha256:" + digest.hexdigest()


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
    """``torch.load(path, weights_only=True)``; a missing or unreadable file, or one whose content
    no longer matches its ``checksum`` (files without one, older ones, are read as they are), raises
    :class:`CheckpointError` with one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not _written_by_torch_save(path):
        raise CheckpointError(f"{path} is not a checkpoint (not a file torch.save writes): give a run folder or one "
                              "of its .pt files")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: not a snnprune checkpoint")
    if CHECKSUM in state and state[CHECKSUM] != content_checksum(state):
        raise CheckpointError(f"checkpoint {path} was changed or damaged after it was written (its checksum "
                              "does not match): use another copy")
    return state


def _written_by_torch_save(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle (its legacy format, protocol 2 and up):
    anything else (a JSON file, text, an image) is no checkpoint at all."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith((b"PK\x03\x04", b"\x80"))


def _load_failure(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line: for an object it will not
    unpickle, the object (torch's own message is a page of advice on loading unsafely)."""
    text = str(exc)
    if "Weights only load failed" in text:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({refused.group(1)})" if refused else ""
        return f"it holds an object{what} that torch.load(weights_only=True) does not load: snnprune runs no " \
               "code from a file"
    return first_line(exc)


#: what a run checkpoint (last.pt, best.pt) holds, and the type of each entry
RUN_CHECKPOINT = {"recipe": dict, "model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict,
                  "masks": dict, "rng": list, "epoch": int, "step_in_epoch": int, "global_step": int,
                  "history": list, "partial": list}


def load_run_checkpoint(path: str | Path) -> dict:
    """:func:`load_checkpoint` for resuming: refuses (one line naming the file) a file that is not a
    whole run checkpoint (an entry missing or of the wrong type, a model entry that is not a
    tensor) or whose model holds a NaN or an infinity."""
    state = load_checkpoint(path)
    for key, kind in RUN_CHECKPOINT.items():
        if not isinstance(state.get(key), kind) or (kind is int and isinstance(state[key], bool)):
            raise CheckpointError(f"checkpoint {path} is not a run checkpoint: {key!r} is missing or not a "
                                  f"{kind.__name__}")
    bad = next((k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is not a run checkpoint: model entry {bad!r} is not a tensor")
    broken = first_nonfinite(state["model"])
    if broken is not None:
        raise CheckpointError(f"checkpoint {path} holds a non-finite value in {broken!r}: resume from a good copy")
    return state
