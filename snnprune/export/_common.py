"""Shared by every exporter: a plain (finalized, eval-mode) copy of a model and atomic writes."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["ExportError", "plain_copy", "plain_state_dict", "atomic_write", "reset_states"]


class ExportError(RuntimeError):
    """An export failed, or the exported file does not reproduce the model; the message names why."""


def reset_states(model: nn.Module) -> None:
    """Reset every SpikingJelly stateful module (membrane potentials) of ``model``."""
    for module in model.modules():
        reset = getattr(module, "reset", None)
        if callable(reset) and _is_memory_module(module):
            reset()


def _is_memory_module(module: nn.Module) -> bool:
    try:
        from spikingjelly.activation_based import base
    except ImportError:  # pragma: no cover - spikingjelly is a dependency
        return False
    return isinstance(module, base.MemoryModule)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every pruning parametrization baked in.

    ``model`` itself is left as it is (training mode, parametrizations, optimizer references).
    SpikingJelly membrane potentials that hold autograd history cannot be deep-copied; they are
    reset first (a :class:`~snnprune.models.SpikingNet` resets them on every forward anyway).
    """
    try:
        clone = copy.deepcopy(model)
    except RuntimeError:
        reset_states(model)
        clone = copy.deepcopy(model)
    if any(parametrize.is_parametrized(m) for m in clone.modules()):
        from ..pruner import bake

        clone = bake(clone)
    reset_states(clone)
    return clone.eval()


def plain_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The finalized state_dict of a model (or a state_dict given as it is), tensors detached."""
    if isinstance(model_or_state, nn.Module):
        state = plain_copy(model_or_state).state_dict()
    elif isinstance(model_or_state, Mapping):
        state = model_or_state
    else:
        raise TypeError(f"expected an nn.Module or a state_dict, got {type(model_or_state).__name__}")
    if any(".parametrizations." in k for k in state):
        raise ValueError(
            "this state_dict comes from a model under pruning (it has '.parametrizations.' keys): "
            "pass the model itself, or snnprune.plain_state_dict(model)"
        )
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``: a
    crash never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
