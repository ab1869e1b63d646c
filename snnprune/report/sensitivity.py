"""``sensitivity.json`` and ``sensitivity.png``: a :func:`snnprune.sensitivity.sensitivity` result
on disk (what ``snnprune sensitivity`` writes).

Example::

    >>> from torch import nn
    >>> from snnprune.sensitivity import sensitivity
    >>> result = sensitivity(nn.Sequential(nn.Linear(2, 2)), lambda m: 1.0, sparsities=[0.5])
    >>> [p.name for p in write_sensitivity(result, "sens")]
    ['sensitivity.json', 'sensitivity.png']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..runs.checkpoint import atomic_write
from ..sensitivity import SENSITIVITY_JSON, SENSITIVITY_PNG
from .plots import plot_sensitivity

__all__ = ["write_sensitivity"]


def write_sensitivity(result: Mapping[str, Any], folder: str | Path, *, title: str = "") -> tuple[Path, Path]:
    """Write ``sensitivity.json`` (atomically) and ``sensitivity.png`` of a
    :func:`~snnprune.sensitivity.sensitivity` result.

    Args:
        result: what :func:`~snnprune.sensitivity.sensitivity` returned.
        folder: where to write (made if missing).
        title: the picture's title.

    Returns:
        The paths of the JSON and the PNG.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(result), indent=1) + "\n"
    atomic_write(folder / SENSITIVITY_JSON, lambda f: f.write(text.encode()))
    return folder / SENSITIVITY_JSON, plot_sensitivity(dict(result), folder / SENSITIVITY_PNG, title=title)
