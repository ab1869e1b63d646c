"""Event recordings to frame tensors [T, C, H, W], binned once and cached on disk.

The binning is tonic's ``ToFrame`` (optionally after tonic's spatial ``Downsample``); the cache is
tonic's ``DiskCachedDataset``, one compressed HDF5 file per recording, under a folder whose name
holds every parameter that changes the frames. A second epoch therefore reads frames from disk and
never bins again; changing a parameter selects a different folder instead of serving stale frames.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_positive_int

DEFAULT_TIME_BINS = 16
CACHE_VERSION = 1  # bump when the cached content changes for the same parameters


class _Unset:
    """The default of ``Framing.n_time_bins``: tells "not given" apart from an explicit value."""

    def __repr__(self) -> str:
        return f"<{DEFAULT_TIME_BINS} unless time_window is given>"


_UNSET = _Unset()


@dataclass(frozen=True)
class Framing:
    """How events become frames: a fixed number of time bins, or fixed windows of ``time_window`` µs.

    With ``n_time_bins=T`` every recording gives exactly T frames (tonic ``ToFrame(n_time_bins=T)``:
    the recording's span divided into T equal slices). With ``time_window`` the number of frames
    follows the recording's duration; :func:`snnprune.data.collate_time_major` zero-pads a batch to
    its longest recording. ``size`` downsamples the sensor to ``size x size`` pixels first.
    ``n_time_bins`` defaults to ``DEFAULT_TIME_BINS`` when no ``time_window`` is given.

    Every argument is checked here, so a bad one fails with one ValueError naming it before any
    file is read: ``n_time_bins`` and ``size`` are integers >= 1, ``time_window`` a positive number
    of µs, and ``n_time_bins`` and ``time_window`` are never both given.

    Args:
        n_time_bins: frames per recording (default ``DEFAULT_TIME_BINS`` without a ``time_window``).
        time_window: the length of one frame in µs, instead of a fixed number of frames.
        size: downsample the sensor to ``size x size`` pixels first; None keeps its size.

    Example:
        >>> Framing(n_time_bins=8).key((128, 128, 2))
        'bins8_128x128_v1'
        >>> Framing(time_window=10_000, size=64).key((128, 128, 2))
        'window10000us_64x64_v1'
    """

    n_time_bins: int | None = _UNSET  # type: ignore[assignment]
    time_window: float | None = None
    size: int | None = None

    def __post_init__(self):
        bins, window = self.n_time_bins, self.time_window
        if bins is _UNSET:
            bins = DEFAULT_TIME_BINS if window is None else None
        elif bins is not None and window is not None:
            raise ValueError(
                f"give n_time_bins or time_window, not both (got n_time_bins={bins!r}, time_window={window!r})"
            )
        if (bins is None) == (window is None):
            raise ValueError("give exactly one of n_time_bins and time_window")
        if bins is not None:
            bins = check_positive_int("n_time_bins", bins)
        if window is not None:
            if isinstance(window, bool) or not isinstance(window, numbers.Real) or not 0 < window < math.inf:
                raise ValueError(f"time_window must be a positive number of microseconds, got {window!r}")
            window = float(window)
        size = None if self.size is None else check_positive_int("size", self.size)
        object.__setattr__(self, "n_time_bins", bins)
        object.__setattr__(self, "time_window", window)
        object.__setattr__(self, "size", size)

    def frame_size(self, sensor_size: Sequence[int]) -> tuple[int, int, int]:
        """The (W, H, P) of the frames for a sensor of ``sensor_size`` = (W, H, P)."""
        w, h, p = sensor_size
        return (self.size, self.size, p) if self.size else (w, h, p)

    def key(self, sensor_size: Sequence[int]) -> str:
        """A folder name that changes whenever the frames would."""
        w, h, _ = self.frame_size(sensor_size)
        how = f"bins{self.n_time_bins}" if self.n_time_bins else f"window{self.time_window:g}us"
        return f"{how}_{w}x{h}_v{CACHE_VERSION}"

    def transform(self, sensor_size: Sequence[int]):
        """The tonic transform from a structured event array to int16 frames [T, P, H, W]."""
        from tonic import transforms

        steps = []
        if self.size:
            steps.append(transforms.Downsample(sensor_size=tuple(sensor_size), target_size=(self.size, self.size)))
        steps.append(transforms.ToFrame(
            sensor_size=self.frame_size(sensor_size), n_time_bins=self.n_time_bins, time_window=self.time_window
        ))
        return transforms.Compose(steps)


def make_framing(n_time_bins: int | None = None, time_window: float | None = None, size: int | None = None) -> Framing:
    """The builders' front to :class:`Framing`: ``None`` means "not given", so neither argument
    gives ``DEFAULT_TIME_BINS`` bins.

    Args:
        n_time_bins: frames per recording, or None.
        time_window: µs per frame, or None.
        size: the downsampled sensor side in pixels, or None.

    Returns:
        The checked :class:`Framing`.

    Example:
        >>> make_framing(time_window=1000).n_time_bins is None, make_framing().n_time_bins
        (True, 16)
        >>> make_framing(n_time_bins=0)
        Traceback (most recent call last):
        ...
        ValueError: n_time_bins must be an integer >= 1, got 0
    """
    given = {"n_time_bins": n_time_bins, "time_window": time_window, "size": size}
    return Framing(**{k: v for k, v in given.items() if v is not None})


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).float()


def _fingerprint(recordings) -> str:
    """Short hash of what the recordings are: their files (relative to the data set) or cache tag."""
    base = getattr(recordings, "location_on_system", "")
    items = [os.path.relpath(p, base) if isinstance(p, str) else str(p) for p in recordings.data]
    items.append(getattr(recordings, "cache_tag", ""))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:10]


class EventFrames(Dataset):
    """A tonic-style event data set (or a subset of it) seen as frames ``[T, C, H, W]`` float32.

    ``recordings`` is any tonic ``Dataset`` (``__getitem__`` gives a structured event array with
    x, y, t, p and the label; ``sensor_size``, ``targets``). Its ``transform`` is set to the
    framing, and a tonic ``DiskCachedDataset`` stores each recording's frames under
    ``cache_dir/<DataSet>/<framing key>_<file-list hash>/`` the first time it is read. The cache is
    indexed by the recording's position in the whole data set, so train and test subsets share it.
    Batch with :func:`snnprune.data.collate_time_major` (``make_loader`` does).

    Args:
        recordings: the tonic data set of event recordings.
        framing: how the events become frames.
        cache_dir: the root of the frame cache.
        indices: the recordings of this subset (positions in ``recordings``); None for all.

    Example:
        >>> from snnprune.data import create_dataset
        >>> ds = create_dataset("digits_dvs", "/tmp/snnprune-doc", "test", n_time_bins=4)
        >>> frames, label = ds[0]
        >>> tuple(frames.shape), frames.dtype
        ((4, 2, 24, 24), torch.float32)
    """

    time_major = True  # make_loader batches it as [T, N, C, H, W]

    def __init__(self, recordings, framing: Framing, cache_dir: str, indices: Sequence[int] | None = None):
        from tonic import DiskCachedDataset

        self.recordings, self.framing = recordings, framing
        self.sensor_size = framing.frame_size(recordings.sensor_size)
        self.classes = list(getattr(recordings, "classes", []))
        recordings.transform = framing.transform(recordings.sensor_size)
        self.cache_path = os.path.join(
            cache_dir, type(recordings).__name__,
            f"{framing.key(recordings.sensor_size)}_{_fingerprint(recordings)}",
        )
        self._cached = DiskCachedDataset(
            recordings, cache_path=self.cache_path, transform=_to_tensor, target_transform=int
        )
        self.indices = np.arange(len(recordings)) if indices is None else np.asarray(indices, dtype=np.int64)
        all_targets = np.asarray(recordings.targets)
        self.targets = all_targets[self.indices].tolist() if len(all_targets) else []

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._cached[int(self.indices[index])]
