"""The data set registry: one name per data set, one call to build it.

A data set is a builder ``fn(root=None, split="train", **kwargs) -> Dataset`` registered with
:func:`register_dataset`, which records what a model needs to know before any file is read
(input channels and size, classes, whether samples are event frames). The shipped data sets
register themselves this way, and so does a user's, from any module.

Example::

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> @register_dataset("noise_doc", in_channels=1, input_size=8, num_classes=2)
    ... def noise_doc(root=None, split="train", n=16):
    ...     g = torch.Generator().manual_seed(0 if split == "train" else 1)
    ...     return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 2, (n,), generator=g))
    >>> dataset_info("noise_doc").sample_shape, len(create_dataset("noise_doc", None, "test", n=4))
    ((1, 8, 8), 4)
    >>> del DATASETS["noise_doc"]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

from .._validation import did_you_mean, normalise_name
from .splits import canonical_split

__all__ = ["DATASETS", "DatasetInfo", "register_dataset", "dataset_info", "list_datasets", "create_dataset",
           "default_root"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a caller needs to know about a data set before building it.

    Attributes:
        name: the registered name.
        events: True if a sample is event frames ``[T, C, H, W]`` (batches ``[T, N, C, H, W]``).
        num_classes: number of labels.
        sample_shape: ``(C, H, W)`` of one image or frame at the default settings.
        description: one line.
        builder: ``fn(root, split, **kwargs) -> Dataset``.
    """

    name: str
    events: bool
    num_classes: int
    sample_shape: tuple[int, int, int]
    description: str
    builder: Callable[..., Dataset]


#: Every registered data set: name -> :class:`DatasetInfo`.
DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, in_channels: int, input_size: int | tuple[int, int], num_classes: int,
                     events: bool = False, description: str | None = None):
    """Decorator: register a data set builder under ``name`` (as timm's ``register_model``).

    Args:
        name: case-insensitive, ``-`` and ``_`` alike; a second builder under a taken name replaces
            the first.
        in_channels: channels of one image or frame (2 for an event camera's polarities).
        input_size: its side, or ``(height, width)``, at the builder's default settings.
        num_classes: number of labels.
        events: True if a sample is event frames ``[T, C, H, W]`` (the builder then takes
            ``n_time_bins`` or ``time_window`` from the recipe's ``data.T`` / framing).
        description: one line (default: the first line of the builder's docstring).

    Returns:
        The decorator; it returns the builder unchanged. The builder is called as
        ``fn(root, split, **kwargs)``: ``root`` is the folder (:func:`default_root` when none is
        given), ``split`` is ``"train"`` or ``"test"``, ``kwargs`` are the recipe's ``data.kwargs``.

    Example::

        >>> from torch.utils.data import TensorDataset
        >>> import torch
        >>> @register_dataset("ones_doc", in_channels=3, input_size=(4, 6), num_classes=1)
        ... def ones_doc(root=None, split="train"):
        ...     "Ones, for the docs."
        ...     return TensorDataset(torch.ones(2, 3, 4, 6), torch.zeros(2, dtype=torch.long))
        >>> dataset_info("ones-doc").sample_shape, list_datasets()["ones_doc"]
        ((3, 4, 6), 'Ones, for the docs.')
        >>> del DATASETS["ones_doc"]
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)

    def decorator(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        text = description or (inspect.getdoc(fn) or name).splitlines()[0]
        key = normalise_name(name)
        DATASETS[key] = DatasetInfo(key, events, num_classes, (in_channels, height, width), text, fn)
        return fn

    return decorator


def default_root() -> str:
    """Where data sets live when no root is given: ``$SNNPRUNE_DATA``, else ``~/.cache/snnprune/data``.

    The generated ``digits_dvs`` and every frame cache go there too, outside any source tree.

    Returns:
        The folder (not created here).

    Example:
        >>> os.environ["SNNPRUNE_DATA"] = "/srv/data"; default_root()
        '/srv/data'
        >>> del os.environ["SNNPRUNE_DATA"]
    """
    return os.environ.get("SNNPRUNE_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "snnprune", "data")


def list_datasets() -> dict[str, str]:
    """The registered data set names with a one-line description each.

    Returns:
        ``name -> description``.

    Example:
        >>> "digits_dvs" in list_datasets()
        True
    """
    return {name: info.description for name, info in DATASETS.items()}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``.

    Args:
        name: a registered name (case-insensitive).

    Returns:
        Its record; an unknown name raises ``ValueError`` with the closest registered name.

    Example:
        >>> info = dataset_info("dvs_gesture")
        >>> info.events, info.num_classes, info.sample_shape
        (True, 11, (2, 128, 128))
    """
    key = normalise_name(name)
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}{did_you_mean(key, DATASETS)}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


def create_dataset(name: str, root: str | None, split: str, **kwargs) -> Dataset:
    """Build the ``split`` ('train', or 'test' / 'val') of data set ``name`` stored under ``root``.

    Args:
        name: a registered data set.
        root: its folder; None means :func:`default_root`.
        split: ``"train"``, or ``"test"`` / ``"val"`` for the held-out part.
        **kwargs: the builder's own arguments (``image_size`` for imagenet; ``n_time_bins``,
            ``time_window``, ``size``, ``cache_dir``, ``download`` for the event data sets; see
            data/README.md).

    Returns:
        The data set. A missing one raises :class:`DatasetNotFoundError`; an unknown name raises
        ``ValueError`` with the closest registered name.

    Example:
        >>> ds = create_dataset("digits", None, "train")
        >>> len(ds), tuple(ds[0][0].shape)
        (1437, (1, 8, 8))
        >>> create_dataset("digit", None, "train")
        Traceback (most recent call last):
        ...
        ValueError: unknown data set 'digit' (did you mean 'digits'?); known: ...
    """
    info = dataset_info(name)
    split = canonical_split(split)  # reject a bad split name before touching the disk
    return info.builder(default_root() if root is None else root, split, **kwargs)
