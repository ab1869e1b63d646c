"""Plain finalized weights: the state_dict of the original architecture, zeros baked in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._common import atomic_write, plain_state_dict

__all__ = ["export_state_dict"]


def export_state_dict(model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save the plain weights of ``model`` to ``path`` with ``torch.save``; return the path.

    A model under pruning (snnprune parametrizations) is finalized on a deep copy with
    :func:`snnprune.bake`, so the live model keeps training; the file has exactly the keys of the
    original architecture and loads strictly into it (``torch.load(path, weights_only=True)``).

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from snnprune import Pruner
        >>> from snnprune.schedules import Constant
        >>> net = nn.Sequential(nn.Linear(4, 4)); _ = Pruner(net, "soft_threshold", Constant(0.3))
        >>> path = export_state_dict(net, tempfile.mkdtemp() + "/net.pt")
        >>> nn.Sequential(nn.Linear(4, 4)).load_state_dict(torch.load(path, weights_only=True))
        <All keys matched successfully>
    """
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in plain_state_dict(model).items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
