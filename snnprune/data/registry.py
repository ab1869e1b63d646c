"""The data set registry: one name per data set, one call to build it."""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass

from torch.utils.data import Dataset

from .._validation import normalise_name
from .splits import canonical_split


@dataclass(frozen=True)
class DatasetInfo:
    """What a caller needs to know about a data set before building it.

    Attributes:
        name: the registered name.
        events: True if a sample is event frames ``[T, C, H, W]`` (batches ``[T, N, C, H, W]``).
        num_classes: number of labels.
        sample_shape: ``(C, H, W)`` of one image or frame at the default settings.
        description: one line.
    """

    name: str
    events: bool
    num_classes: int
    sample_shape: tuple[int, int, int]
    description: str
    module: str
    builder: str


# Modules are imported only when their data set is built, so listing names imports neither
# torchvision nor tonic.
_DATASETS = {info.name: info for info in [
    DatasetInfo("imagenet", False, 1000, (3, 224, 224), "ImageNet-1k, ImageFolder trees root/train and root/val",
                "images", "imagenet"),
    DatasetInfo("cifar10", False, 10, (3, 32, 32), "CIFAR-10, python pickles in root/cifar-10-batches-py",
                "images", "cifar10"),
    DatasetInfo("cifar100", False, 100, (3, 32, 32), "CIFAR-100, python pickles in root/cifar-100-python",
                "images", "cifar100"),
    DatasetInfo("dvs_gesture", True, 11, (2, 128, 128), "DVS128 Gesture (tonic), frames [T, 2, 128, 128]",
                "neuromorphic", "dvs_gesture"),
    DatasetInfo("cifar10_dvs", True, 10, (2, 128, 128), "CIFAR10-DVS (tonic, .aedat4), frames [T, 2, 128, 128]",
                "neuromorphic", "cifar10_dvs"),
    DatasetInfo("nmnist", True, 10, (2, 34, 34), "N-MNIST (tonic), frames [T, 2, 34, 34]", "neuromorphic", "nmnist"),
    DatasetInfo("digits", False, 10, (1, 8, 8), "scikit-learn digits, images [1, 8, 8], shipped with scikit-learn",
                "digits", "digits"),
    DatasetInfo("digits_dvs", True, 10, (2, 24, 24), "saccade-simulated event digits, frames [T, 2, 24, 24], generated",
                "digits_dvs", "digits_dvs"),
]}


def default_root() -> str:
    """Where data sets live when no root is given: ``$SNNPRUNE_DATA``, else ``~/.cache/snnprune/data``.

    The generated ``digits_dvs`` and every frame cache go there too, outside any source tree.

    Example:
        >>> os.environ["SNNPRUNE_DATA"] = "/srv/data"; default_root()
        '/srv/data'
        >>> del os.environ["SNNPRUNE_DATA"]
    """
    return os.environ.get("SNNPRUNE_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "snnprune", "data")


def list_datasets() -> dict[str, str]:
    """The registered data set names with a one-line description each.

    Example:
        >>> "digits_dvs" in list_datasets()
        True
    """
    return {name: info.description for name, info in _DATASETS.items()}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name raises ``ValueError`` with suggestions.

    Example:
        >>> info = dataset_info("dvs_gesture")
        >>> info.events, info.num_classes, info.sample_shape
        (True, 11, (2, 128, 128))
    """
    key = normalise_name(name)
    if key not in _DATASETS:
        close = difflib.get_close_matches(key, _DATASETS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown data set {name!r}; {hint}Known: {', '.join(_DATASETS)}")
    return _DATASETS[key]


def create_dataset(name: str, root: str | None, split: str, **kwargs) -> Dataset:
    """Build the ``split`` ('train', or 'test' / 'val') of data set ``name`` stored under ``root``.

    ``root=None`` means :func:`default_root`. Keyword arguments go to the data set's builder
    (``image_size`` for imagenet; ``n_time_bins``, ``time_window``, ``size``, ``cache_dir``,
    ``download`` for the event data sets; see data/README.md). A missing data set raises
    :class:`DatasetNotFoundError`; an unknown name raises ``ValueError`` with the closest
    registered names.

    Example:
        >>> ds = create_dataset("digits", None, "train")
        >>> len(ds), tuple(ds[0][0].shape)
        (1437, (1, 8, 8))
        >>> create_dataset("digit", None, "train")
        Traceback (most recent call last):
        ...
        ValueError: unknown data set 'digit'; did you mean 'digits', 'digits_dvs'? Known: ...
    """
    info = dataset_info(name)
    canonical_split(split)  # reject a bad split name before touching the disk
    build = getattr(importlib.import_module(f"{__package__}.{info.module}"), info.builder)
    return build(default_root() if root is None else root, split, **kwargs)
