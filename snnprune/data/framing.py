"""Event recordings to frame tensors [T, C, H, W], binned once and cached on disk.

The binning is tonic's ``ToFrame`` (optionally after tonic's spatial ``Downsample``); the cache is
tonic's ``DiskCachedDataset``, one compressed HDF5 file per recording, under a folder whose name
holds every parameter that changes the frames. A second epoch therefore reads frames from disk and
never bins again; changing a parameter selects a different folder instead of serving stale frames.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

DEFAULT_TIME_BINS = 16
CACHE_VERSION = 1  # bump when the cached content changes for the same parameters


@dataclass(frozen=True)
class Framing:
    """How events become frames: a fixed number of time bins, or fixed windows of ``time_window`` µs.

    With ``n_time_bins=T`` every recording gives exactly T frames (tonic ``ToFrame(n_time_bins=T)``:
    the recording's span divided into T equal slices). With ``time_window`` the number of frames
    follows the recording's duration; :func:`snnprune.data.collate_time_major` zero-pads a batch to
    its longest recording. ``size`` downsamples the sensor to ``size x size`` pixels first.

    Example:
        >>> Framing(n_time_bins=8).key((128, 128, 2))
        'bins8_128x128_v1'
        >>> Framing(time_window=10_000, size=64).key((128, 128, 2))
        'window10000us_64x64_v1'
    """

    n_time_bins: int | None = DEFAULT_TIME_BINS
    time_window: float | None = None
    size: int | None = None

    def __post_init__(self):
        if self.time_window is not None:
            object.__setattr__(self, "n_time_bins", None)  # a window overrides the default bins
        if (self.n_time_bins is None) == (self.time_window is None):
            raise ValueError("give exactly one of n_time_bins and time_window")

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
