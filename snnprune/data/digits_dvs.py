"""Neuromorphic digits: scikit-learn's digits seen by a simulated event camera making saccades.

N-MNIST (Orchard et al., 2015, "Converting static image datasets to spiking neuromorphic datasets
using saccades") was recorded by moving an ATIS camera in three saccades in front of MNIST digits
on a monitor. This module simulates that recording for the 1797 8x8 digits that ship with
scikit-learn, so a neuromorphic data set is always available offline:

1. each digit is upsampled (bilinear) to ``image_size x image_size`` and placed on a sensor of
   ``image_size + AMPLITUDE_FRACTION * image_size + 2 * BORDER`` pixels;
2. the sensor moves along N-MNIST's triangle of three saccades, (0,0) -> (a/2, a) -> (a, 0) -> (0,0)
   with ``a = image_size / 4`` pixels, each saccade lasting ``SACCADE_US`` = 100 ms, sampled in
   ``STEPS_PER_SACCADE`` steps with bilinear sub-pixel rendering;
3. every pixel keeps the log intensity ``log(I + EPS)`` at its last event and emits an ON (OFF)
   event each time the current log intensity has risen (fallen) by ``CONTRAST`` since then (the
   DVS pixel model); an event's timestamp is the linearly interpolated crossing time, in µs.

There is no randomness: the generated files are the same bytes every time. Events are stored in
tonic's event dtype (``tonic.io.events_struct``: x, y int16; t int64 µs; p bool) and framed by the
same ``ToFrame`` + ``DiskCachedDataset`` path as the recorded data sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from .digits import digit_images, digits_split
from .framing import EventFrames, make_framing
from .registry import register_dataset

GENERATOR_VERSION = 1
SACCADE_US = 100_000
STEPS_PER_SACCADE = 15
CONTRAST = 0.4
EPS = 0.2
BORDER = 2
AMPLITUDE_FRACTION = 0.25
FILES = ("events.npy", "offsets.npy", "targets.npy", "meta.json")


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling [N, h, w] -> [N, size, size] (pixel centres aligned, edges clamped)."""
    n, h, w = images.shape
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = images[:, y0][:, :, x0] * (1 - fx) + images[:, y0][:, :, x1] * fx
    bottom = images[:, y1][:, :, x0] * (1 - fx) + images[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _render(images: np.ndarray, dx: float, dy: float, sensor: int) -> np.ndarray:
    """The sensor's view [N, sensor, sensor] of ``images`` shifted by (dx, dy) >= 0 pixels, bilinear."""
    n, s, _ = images.shape
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    canvas = np.zeros((n, sensor + 1, sensor + 1), np.float32)
    canvas[:, BORDER + iy + 1: BORDER + iy + 1 + s, BORDER + ix + 1: BORDER + ix + 1 + s] = images
    # a shift by a fraction f interpolates between the canvas and its copy one pixel back;
    # separable: first along x, then along y
    rows = canvas[:, :, 1:] + fx * (canvas[:, :, :-1] - canvas[:, :, 1:])
    return rows[:, 1:] + fy * (rows[:, :-1] - rows[:, 1:])


def saccade_path(amplitude: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (µs) and (dx, dy) offsets of the three N-MNIST saccades, one row per simulation step.

    Example:
        >>> t, dx, dy = saccade_path(4.0)
        >>> int(t[-1]), float(dx.max()), float(dy.max()), float(dx[-1])
        (300000, 4.0, 4.0, 0.0)
    """
    corners = np.array([[0, 0], [amplitude / 2, amplitude], [amplitude, 0], [0, 0]], dtype=np.float64)
    steps = 3 * STEPS_PER_SACCADE
    u = np.arange(steps + 1) / STEPS_PER_SACCADE  # saccade index + fraction
    k = np.minimum(u.astype(int), 2)
    frac = (u - k)[:, None]
    xy = corners[k] * (1 - frac) + corners[k + 1] * frac
    t = np.round(u * SACCADE_US).astype(np.int64)
    return t, xy[:, 0], xy[:, 1]


def simulate_saccades(images: np.ndarray, image_size: int = 16) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Events of an event camera making N-MNIST's three saccades over ``images`` [N, h, w] in [0, 1].

    Returns the events of all images in tonic's dtype, sorted by (image, t, y, x, p), the offsets
    [N + 1] delimiting each image's events, and the sensor size (W, H, 2).

    Example:
        >>> img = np.zeros((1, 8, 8), np.float32); img[0, 2:6, 3:5] = 1.0
        >>> events, offsets, sensor = simulate_saccades(img)
        >>> sensor, events.dtype.names, bool(offsets[-1] > 0)
        ((24, 24, 2), ('x', 'y', 't', 'p'), True)
    """
    from tonic.io import events_struct

    amplitude = AMPLITUDE_FRACTION * image_size
    sensor = image_size + int(np.ceil(amplitude)) + 2 * BORDER
    big = _upsample(np.asarray(images, np.float32), image_size)
    times, dxs, dys = saccade_path(amplitude)
    log_now = np.log(_render(big, dxs[0], dys[0], sensor) + np.float32(EPS))
    reference = log_now.copy()
    chunks = []
    for step in range(1, len(times)):
        log_prev, log_now = log_now, np.log(_render(big, dxs[step], dys[step], sensor) + np.float32(EPS))
        change = log_now - reference
        img, y, x = np.nonzero(np.abs(change) >= CONTRAST)
        if len(img) == 0:
            continue
        change = change[img, y, x]
        count = np.floor(np.abs(change) / CONTRAST).astype(np.int64)
        sign = np.sign(change)
        old_ref = reference[img, y, x]
        reference[img, y, x] = old_ref + sign * count * CONTRAST
        # the j-th crossing of this step is where the log intensity, linear in time between the
        # two steps, reaches old_ref + j * CONTRAST * sign
        start = log_prev[img, y, x]
        delta = log_now[img, y, x] - start
        rep = np.repeat(np.arange(len(img)), count)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(count) - count, count) + 1
        level = old_ref[rep] + j * CONTRAST * sign[rep]
        frac = np.clip((level - start[rep]) / np.where(delta == 0, 1, delta)[rep], 0, 1)
        t = np.round(times[step - 1] + frac * (times[step] - times[step - 1])).astype(np.int64)
        chunks.append((img[rep], x[rep], y[rep], t, sign[rep] > 0))
    img, x, y, t, p = (np.concatenate(c) for c in zip(*chunks))
    order = np.lexsort((p, x, y, t, img))
    events = np.empty(len(order), dtype=events_struct)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    offsets = np.searchsorted(img[order], np.arange(len(images) + 1)).astype(np.int64)
    return events, offsets, (sensor, sensor, 2)


def generate(folder: str, image_size: int = 16) -> None:
    """Write the digits_dvs files for all 1797 digits into ``folder`` (atomically, deterministic).

    Files: ``events.npy`` (tonic event dtype, all recordings back to back), ``offsets.npy``
    (int64 [1798], recording i is ``events[offsets[i]:offsets[i+1]]``), ``targets.npy`` (int64
    labels) and ``meta.json`` (generator parameters, sensor size, sha256 of the arrays).

    Example:
        >>> generate("/tmp/snnprune-doc-gen")
        >>> sorted(os.listdir("/tmp/snnprune-doc-gen"))
        ['events.npy', 'meta.json', 'offsets.npy', 'targets.npy']
    """
    images, labels = digit_images()
    events, offsets, sensor = simulate_saccades(images, image_size)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".digits_dvs-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the data set is shared like any other
    meta = {"generator_version": GENERATOR_VERSION, "image_size": image_size, "sensor_size": list(sensor),
            "saccade_us": SACCADE_US, "steps_per_saccade": STEPS_PER_SACCADE, "contrast": CONTRAST,
            "eps": EPS, "border": BORDER, "amplitude_fraction": AMPLITUDE_FRACTION, "n_events": len(events)}
    for name, array in (("events", events), ("offsets", offsets), ("targets", labels)):
        np.save(os.path.join(tmp, f"{name}.npy"), array)
        meta[f"sha256_{name}"] = hashlib.sha256(array.tobytes()).hexdigest()
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    try:
        os.rename(tmp, folder)  # atomic; loses cleanly to a concurrent generator
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not all(os.path.isfile(os.path.join(folder, f)) for f in FILES):
            raise


class DigitsDVS:
    """The digits_dvs recordings as a tonic-style data set: ``rec[i]`` is (events, label).

    The files live in ``save_to/DigitsDVS/<image_size>px-v<version>/`` and are generated there on
    first use (a few seconds). Same interface as tonic's data sets: ``sensor_size``, ``dtype``,
    ``ordering``, ``classes``, ``targets``, ``transform``.

    Example:
        >>> rec = DigitsDVS("/tmp/snnprune-doc")
        >>> events, label = rec[0]
        >>> len(rec), rec.sensor_size, events.dtype.names, label
        (1797, (24, 24, 2), ('x', 'y', 't', 'p'), 0)
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, save_to: str, image_size: int = 16, transform=None, target_transform=None):
        from tonic.io import events_struct

        self.dtype, self.ordering = events_struct, events_struct.names
        self.location_on_system = os.path.join(os.path.expanduser(save_to), "DigitsDVS")
        self.folder = os.path.join(self.location_on_system, f"{image_size}px-v{GENERATOR_VERSION}")
        if not all(os.path.isfile(os.path.join(self.folder, f)) for f in FILES):
            generate(self.folder, image_size)
        with open(os.path.join(self.folder, "meta.json")) as f:
            self.meta = json.load(f)
        self.sensor_size = tuple(self.meta["sensor_size"])
        self.cache_tag = self.meta["sha256_events"]
        self.offsets = np.load(os.path.join(self.folder, "offsets.npy"))
        self.targets = np.load(os.path.join(self.folder, "targets.npy")).tolist()
        self.data = list(range(len(self.targets)))
        self.transform, self.target_transform = transform, target_transform
        self._events = None  # memory-mapped lazily, so the object pickles cheaply to workers

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if self._events is None:
            self._events = np.load(os.path.join(self.folder, "events.npy"), mmap_mode="r")
        events = np.array(self._events[self.offsets[index]: self.offsets[index + 1]])
        target = self.targets[index]
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target

    def __getstate__(self):
        return {**self.__dict__, "_events": None}


@register_dataset("digits_dvs", in_channels=2, input_size=24, num_classes=10, events=True,
                  description="saccade-simulated event digits, frames [T, 2, 24, 24], generated")
def digits_dvs(root: str, split: str, n_time_bins: int | None = None, time_window: float | None = None,
               size: int | None = None, image_size: int = 16, cache_dir: str | None = None) -> EventFrames:
    """The embedded neuromorphic data set: frames [T, 2, 24, 24] of saccade-recorded digits.

    Generated under ``root/DigitsDVS`` on first use; same stratified 80/20 split as ``digits``.
    ``n_time_bins`` frames per recording (default 16), or windows of ``time_window`` µs.

    Example:
        >>> ds = digits_dvs("/tmp/snnprune-doc", "train", n_time_bins=8)
        >>> len(ds), tuple(ds[0][0].shape)
        (1437, (8, 2, 24, 24))
    """
    if root is None:
        raise ValueError("digits_dvs needs a root folder: its recordings are generated there on first use")
    framing = make_framing(n_time_bins, time_window, size)  # bad arguments fail before generating
    recordings = DigitsDVS(root, image_size=image_size)
    return EventFrames(recordings, framing, cache_dir or os.path.join(root, "cache"), digits_split(split))
