"""Recorded event-camera data sets read with tonic: DVS128 Gesture, CIFAR10-DVS and N-MNIST.

tonic's classes are used as they are, with two changes made in a mixin: nothing is downloaded
unless the ``download`` flag is set to True (tonic downloads whenever its file-count check fails,
which a partial or re-organised copy does), and the recordings are put in natural path order, so indices,
splits and caches are the same on every machine (tonic lists files in file-system order).

A recording that cannot be read (empty, truncated, not an event file) raises
:class:`CorruptRecordingError` naming the file when it is read. With ``skip_corrupt=True`` (recipe:
``data.kwargs.skip_corrupt = true``) every file is checked when the data set is opened (the .npy
header against the file's size and the .bin size a whole number of 5-byte events, both cheap; an
.aedat4 file is parsed whole, one pass over the raw files) and the unreadable ones are left out
with one warning naming them.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import tonic

from .._validation import first_line
from .errors import DatasetNotFoundError
from .framing import EventFrames, Framing, make_framing
from .registry import register_dataset
from .splits import canonical_split, stratified_split

CIFAR10_DVS_TEST_FRACTION = 0.1


def _natural_key(path: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


class CorruptRecordingError(ValueError):
    """A recording of an event data set that cannot be read; the message is one line naming the file."""


def _check_recording(path: str, suffix: str, whole: bool = False) -> None:
    """Raise if ``path`` is visibly not a whole recording (cheap: header and size only; ``whole``
    also parses an .aedat4 file, whose packets have no index to check)."""
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError("the file is empty")
    if suffix == ".npy":
        events = np.load(path, mmap_mode="r")  # checks the header and that the file holds its data
        if events.ndim != 2 or not len(events):
            raise ValueError(f"not an event array (shape {events.shape})")
    elif suffix == ".bin" and size % 5:
        raise ValueError(f"{size} bytes is not a whole number of 5-byte events")
    elif suffix == ".aedat4":
        with open(path, "rb") as f:
            if not f.read(14).startswith(b"#!AER-DAT4.0"):
                raise ValueError("no AEDAT4 signature")
        if whole:
            from tonic.io import read_aedat4

            read_aedat4(path)


class _OnDisk:
    """Mixin for a tonic data set: read what is on disk, download only when asked.

    The subclasses keep tonic's class names: tonic stores a data set under ``save_to/<class name>``.
    """

    name = layout = source = suffix = ""
    per_recording = ()  # tonic's per-recording lists that must stay aligned with ``data``

    def __init__(self, save_to: str, *args, download: bool = False, skip_corrupt: bool = False, **kwargs):
        self.allow_download = download
        super().__init__(save_to, *args, **kwargs)
        lists = [self.data, self.targets] + [getattr(self, a) for a in self.per_recording]
        order = sorted(range(len(self.data)), key=lambda i: _natural_key(self.data[i]))
        if skip_corrupt:
            bad = {}
            for i in order:
                try:
                    _check_recording(self.data[i], self.suffix, whole=True)
                except Exception as exc:  # numpy, aedat and tonic raise many types for a bad file
                    bad[i] = f"{self.data[i]} ({exc})"
            if bad:
                shown = "; ".join(list(bad.values())[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
                warnings.warn(f"{self.name}: skipped {len(bad)} unreadable recording(s): {shown}", stacklevel=2)
            order = [i for i in order if i not in bad]
        for values in lists:
            values[:] = [values[i] for i in order]

    def __getitem__(self, index):
        try:
            _check_recording(self.data[index], self.suffix)  # an empty .bin would read as no events
            return super().__getitem__(index)
        except Exception as exc:  # numpy, aedat and tonic raise many types for a bad file
            raise CorruptRecordingError(
                f"{self.name}: cannot read recording {self.data[index]} ({first_line(exc)}): replace it, or set "
                "data.kwargs.skip_corrupt = true to leave unreadable recordings out"
            ) from exc

    def _check_exists(self) -> bool:
        if self.allow_download:  # tonic's own check: complete data set present
            return super()._check_exists()
        return self._folder_contains_at_least_n_files_of_type(1, self.suffix)

    def download(self) -> None:
        if not self.allow_download:
            raise DatasetNotFoundError(
                self.name, os.path.join(self.location_on_system, self.folder_name), self.layout, self.source
            )
        super().download()


class DVSGesture(_OnDisk, tonic.datasets.DVSGesture):
    """tonic ``DVSGesture`` (11 classes, 128x128) that never downloads implicitly.

    Example:
        >>> rec = DVSGesture("/data", train=False)  # doctest: +SKIP
        >>> events, label = rec[0]  # doctest: +SKIP
    """

    name, suffix, per_recording = "dvs_gesture", ".npy", ("users", "lighting")
    layout = "<root>/DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy"
    source = "tonic's figshare copy (set the download flag to True); originals at https://research.ibm.com/dvsgesture/"


class CIFAR10DVS(_OnDisk, tonic.datasets.CIFAR10DVS):
    """tonic ``CIFAR10DVS`` (10 classes, 128x128, .aedat4 read with the ``aedat`` package).

    Example:
        >>> rec = CIFAR10DVS("/data")  # doctest: +SKIP
    """

    name, suffix = "cifar10_dvs", ".aedat4"
    layout = "<root>/CIFAR10DVS/<class name>/*.aedat4"
    source = "tonic's figshare copy (set the download flag to True)"

    def __getitem__(self, index):
        try:
            import aedat  # noqa: F401  (tonic.io.read_aedat4 needs it)
        except ImportError:
            raise ImportError("reading CIFAR10-DVS (.aedat4) needs the 'aedat' package: pip install aedat") from None
        return super().__getitem__(index)


class NMNIST(_OnDisk, tonic.datasets.NMNIST):
    """tonic ``NMNIST`` (10 classes, 34x34 sensor, three saccades per digit).

    Example:
        >>> rec = NMNIST("/data", train=True)  # doctest: +SKIP
    """

    name, suffix = "nmnist", ".bin"
    layout = "<root>/NMNIST/{Train,Test}/<digit>/*.bin"
    source = "https://www.garrickorchard.com/datasets/n-mnist (or set the download flag to True)"


def _frames(recordings, root, cache_dir, framing: Framing, indices=None) -> EventFrames:
    return EventFrames(recordings, framing, cache_dir or os.path.join(root, "cache"), indices)


@register_dataset("dvs_gesture", in_channels=2, input_size=128, num_classes=11, events=True,
                  description="DVS128 Gesture (tonic), frames [T, 2, 128, 128]")
def dvs_gesture(root, split, n_time_bins=None, time_window=None, size=None, cache_dir=None, download=False,
                skip_corrupt=False):
    """DVS128 Gesture as frames [T, 2, H, W]; tonic's train (1077) / test (264) split.

    ``n_time_bins`` frames per recording (default 16), or windows of ``time_window`` µs, optionally
    downsampled to ``size x size``; frames are cached under ``cache_dir`` (default ``root/cache``).

    Example:
        >>> ds = dvs_gesture("/data", "train", n_time_bins=16, size=64)  # doctest: +SKIP
        >>> ds[0][0].shape  # doctest: +SKIP
        torch.Size([16, 2, 64, 64])
    """
    framing = make_framing(n_time_bins, time_window, size)  # bad arguments fail before any file is read
    rec = DVSGesture(root, train=canonical_split(split) == "train", download=download, skip_corrupt=skip_corrupt)
    return _frames(rec, root, cache_dir, framing)


@register_dataset("cifar10_dvs", in_channels=2, input_size=128, num_classes=10, events=True,
                  description="CIFAR10-DVS (tonic, .aedat4), frames [T, 2, 128, 128]")
def cifar10_dvs(root, split, n_time_bins=None, time_window=None, size=None, cache_dir=None, download=False,
                skip_corrupt=False):
    """CIFAR10-DVS as frames [T, 2, H, W]; a deterministic stratified 9:1 train/test split.

    The data set has no official split: recordings in natural path order are split per class
    9:1 by :func:`snnprune.data.splits.stratified_split` (seed 0), so 900 / 100 per class.

    Example:
        >>> ds = cifar10_dvs("/data", "test", n_time_bins=10)  # doctest: +SKIP
    """
    framing = make_framing(n_time_bins, time_window, size)
    rec = CIFAR10DVS(root, download=download, skip_corrupt=skip_corrupt)
    train, test = stratified_split(rec.targets, CIFAR10_DVS_TEST_FRACTION)
    indices = train if canonical_split(split) == "train" else test
    return _frames(rec, root, cache_dir, framing, indices)


@register_dataset("nmnist", in_channels=2, input_size=34, num_classes=10, events=True,
                  description="N-MNIST (tonic), frames [T, 2, 34, 34]")
def nmnist(root, split, n_time_bins=None, time_window=None, size=None, cache_dir=None, download=False,
           skip_corrupt=False):
    """N-MNIST as frames [T, 2, 34, 34]; the official 60 000 / 10 000 split.

    Example:
        >>> ds = nmnist("/data", "test", n_time_bins=10)  # doctest: +SKIP
    """
    framing = make_framing(n_time_bins, time_window, size)
    rec = NMNIST(root, train=canonical_split(split) == "train", download=download, skip_corrupt=skip_corrupt)
    return _frames(rec, root, cache_dir, framing)
