"""Data sets for snnprune: one registry over torchvision image sets, tonic event sets and two
small data sets that need no download (``digits`` and its event-camera version ``digits_dvs``).
A data set of your own is a builder registered with :func:`register_dataset`.

Event data become frames ``[T, C, H, W]`` (tonic ``ToFrame``), cached on disk after the first
epoch (tonic ``DiskCachedDataset``); :func:`make_loader` batches them time-major ``[T, N, C, H, W]``.

Example:
    >>> from snnprune.data import create_dataset, make_loader
    >>> loader = make_loader(create_dataset("digits_dvs", "/tmp/snnprune-doc", "test", n_time_bins=4),
    ...                      batch_size=8, train=False)
    >>> frames, labels = next(iter(loader))
    >>> tuple(frames.shape), tuple(labels.shape)
    ((4, 8, 2, 24, 24), (8,))
"""

from .errors import DatasetNotFoundError
from .framing import EventFrames, Framing
from .loader import collate_time_major, first_samples, make_loader
from .registry import DATASETS, DatasetInfo, create_dataset, dataset_info, default_root, list_datasets, register_dataset
from .splits import VALIDATION_FRACTION, validation_split

# the shipped data sets register themselves when their modules load
from . import digits, digits_dvs, images, neuromorphic  # noqa: E402, F401  isort: skip

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EventFrames",
    "Framing",
    "collate_time_major",
    "create_dataset",
    "dataset_info",
    "default_root",
    "first_samples",
    "list_datasets",
    "make_loader",
    "register_dataset",
    "VALIDATION_FRACTION",
    "validation_split",
]
