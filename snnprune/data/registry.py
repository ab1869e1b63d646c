"""The data set registry: one name per data set, one call to build it."""

from __future__ import annotations

import difflib
import importlib

from torch.utils.data import Dataset

from .splits import canonical_split

# name -> (module, builder, one-line description). Modules are imported only when their data set is
# built, so listing names does not import torchvision or tonic.
_DATASETS: dict[str, tuple[str, str, str]] = {
    "imagenet": ("images", "imagenet", "ImageNet-1k, ImageFolder trees root/train and root/val"),
    "cifar10": ("images", "cifar10", "CIFAR-10, python pickles in root/cifar-10-batches-py"),
    "cifar100": ("images", "cifar100", "CIFAR-100, python pickles in root/cifar-100-python"),
    "dvs_gesture": ("neuromorphic", "dvs_gesture", "DVS128 Gesture (tonic), frames [T, 2, 128, 128]"),
    "cifar10_dvs": ("neuromorphic", "cifar10_dvs", "CIFAR10-DVS (tonic, .aedat4), frames [T, 2, 128, 128]"),
    "nmnist": ("neuromorphic", "nmnist", "N-MNIST (tonic), frames [T, 2, 34, 34]"),
    "digits": ("digits", "digits", "scikit-learn digits, images [1, 8, 8], shipped with scikit-learn"),
    "digits_dvs": ("digits_dvs", "digits_dvs", "saccade-simulated event digits, frames [T, 2, 24, 24], generated"),
}


def list_datasets() -> dict[str, str]:
    """The registered data set names with a one-line description each.

    Example:
        >>> "digits_dvs" in list_datasets()
        True
    """
    return {name: description for name, (_, _, description) in _DATASETS.items()}


def create_dataset(name: str, root: str | None, split: str, **kwargs) -> Dataset:
    """Build the ``split`` ('train', or 'test' / 'val') of data set ``name`` stored under ``root``.

    Keyword arguments go to the data set's builder (``image_size`` for imagenet; ``n_time_bins``,
    ``time_window``, ``size``, ``cache_dir``, ``download`` for the event data sets; see
    data/README.md). A missing data set raises :class:`DatasetNotFoundError`; an unknown name
    raises ``ValueError`` with the closest registered names.

    Example:
        >>> ds = create_dataset("digits", None, "train")
        >>> len(ds), tuple(ds[0][0].shape)
        (1437, (1, 8, 8))
        >>> create_dataset("digit", None, "train")
        Traceback (most recent call last):
        ...
        ValueError: unknown data set 'digit'; did you mean 'digits', 'digits_dvs'? Known: ...
    """
    key = name.lower().replace("-", "_")
    if key not in _DATASETS:
        close = difflib.get_close_matches(key, _DATASETS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown data set {name!r}; {hint}Known: {', '.join(_DATASETS)}")
    canonical_split(split)  # reject a bad split name before touching the disk
    module, builder, _ = _DATASETS[key]
    build = getattr(importlib.import_module(f"{__package__}.{module}"), builder)
    return build(root, split, **kwargs)
