"""Tiny stand-ins of the data sets that cannot ship, written in each one's real on-disk layout
and file format, so that their real loaders read them (nothing is downloaded).

``snnprune train RECIPE --smoke`` trains on one of these when the recipe's data set is not on this
machine: the run goes through the same loader, framing and model as with the real data, on a
few random samples of the same shape. The test suite writes them too.

Example:
    >>> import tempfile
    >>> root = write_standin("cifar10", tempfile.mkdtemp())
    >>> from snnprune.data import create_dataset
    >>> ds = create_dataset("cifar10", str(root), "test", augment=False)
    >>> len(ds), tuple(ds[0][0].shape)
    (4, (3, 32, 32))
"""

from __future__ import annotations

import os
import pickle
import random
import struct
from pathlib import Path

import numpy as np

from .registry import default_root

__all__ = ["STANDINS", "write_standin", "standin_root", "write_image_folder", "write_cifar", "write_dvs_gesture",
           "write_cifar10_dvs", "write_nmnist", "write_aedat4", "write_nmnist_bin", "random_events",
           "CIFAR10_DVS_CLASSES"]


def write_image_folder(root, split, classes=("n01440764", "n01443537"), per_class=3, ext="JPEG"):
    """ImageNet layout: root/<split>/<wnid>/<name>.JPEG (or .png)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for wnid in classes:
        os.makedirs(root / split / wnid)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{k}.{ext}")


def write_cifar(root, hundred=False, per_batch=4):
    """CIFAR python version: pickled dicts with uint8 'data' [n, 3072] and labels, plus the meta file."""
    rng = np.random.default_rng(1)
    if hundred:
        folder, batches = root / "cifar-100-python", ["train", "test"]
        label_key, meta = "fine_labels", ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    else:
        folder, batches = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta = "labels", ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    os.makedirs(folder)
    for name in batches:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 label_key: [int(v) for v in rng.integers(0, 100 if hundred else 10, per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)


def random_events(rng, n, width, height, duration_us):
    t = np.sort(rng.integers(0, duration_us, n))
    return rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n)


def write_dvs_gesture(root, users=("user01_fluorescent", "user02_lab"), labels=range(11), n=300):
    """tonic's preprocessed DVSGesture: ibmGesture{Train,Test}/userNN_<light>/<label>.npy, columns x, y, p, t[ms]."""
    rng = np.random.default_rng(2)
    written = {}
    for folder, user_list in (("ibmGestureTrain", users), ("ibmGestureTest", users[:1])):
        for user in user_list:
            os.makedirs(root / "DVSGesture" / folder / user)
            for label in labels:
                x, y, t, p = random_events(rng, n, 128, 128, 6000)  # t in ms, as tonic's files
                path = root / "DVSGesture" / folder / user / f"{label}.npy"
                np.save(path, np.stack([x, y, p, t], axis=1).astype(np.int64))
                written[str(path)] = (x, y, t * 1000, p)
    return written


def _aedat4_ioheader(description: str) -> bytes:
    """The AEDAT4 IOHeader flatbuffer: table {compression: int32, file_data_position: int64, description: string}."""
    text = description.encode()
    buf = struct.pack("<I", 16)                      # root offset -> table at 16
    buf += struct.pack("<5H", 10, 20, 4, 8, 16)      # vtable: its size, table size, 3 field offsets
    buf += b"\0\0"
    buf += struct.pack("<i", 16 - 4)                 # table: offset back to the vtable
    buf += struct.pack("<iq", 0, -1)                 # compression None, no file data table
    buf += struct.pack("<I", 4)                      # -> string right after the table
    buf += struct.pack("<I", len(text)) + text + b"\0"
    return buf + b"\0" * (-len(buf) % 4)


def _aedat4_event_packet(t, x, y, p) -> bytes:
    """A size-prefixed 'EVTS' flatbuffer: table EventPacket {elements: [Event{t:int64, x,y:int16, on:bool}]}."""
    event = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                      "offsets": [0, 8, 10, 12], "itemsize": 16})
    elements = np.zeros(len(t), event)
    elements["t"], elements["x"], elements["y"], elements["on"] = t, x, y, p
    body = struct.pack("<I", 16) + b"EVTS"           # root offset (-> table at 20), file identifier
    body += struct.pack("<3H", 6, 8, 4) + b"\0\0"    # vtable at 12
    body += struct.pack("<iI", 20 - 12, 4)           # table at 20: vtable offset, -> vector at 28
    body += struct.pack("<I", len(elements)) + elements.tobytes()  # elements 8-aligned at 32
    return struct.pack("<I", len(body)) + body


def write_aedat4(path, t, x, y, p, width=128, height=128, packet=100):
    """An uncompressed AEDAT 4.0 file with one event stream, as DV writes it (CIFAR10-DVS's format)."""
    xml = ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
           '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
           '<attr key="compression" type="string">NONE</attr>'
           '<attr key="typeIdentifier" type="string">EVTS</attr>'
           '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
           f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
           '</node></node></node></dv>')
    header = _aedat4_ioheader(xml)
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header)
        for s in range(0, len(t), packet):
            data = _aedat4_event_packet(t[s:s + packet], x[s:s + packet], y[s:s + packet], p[s:s + packet])
            f.write(struct.pack("<II", 0, len(data)) + data)


CIFAR10_DVS_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_dvs(root, per_class=10, n=200, seed=3):
    """CIFAR10DVS/<class>/cifar10_<class>_<k>.aedat4, written in a seeded random order."""
    rng = np.random.default_rng(seed)
    files = [(c, k) for c in CIFAR10_DVS_CLASSES for k in range(per_class)]
    random.Random(seed).shuffle(files)
    for cls, k in files:
        os.makedirs(root / "CIFAR10DVS" / cls, exist_ok=True)
        write_aedat4(root / "CIFAR10DVS" / cls / f"cifar10_{cls}_{k}.aedat4", *_txyp(rng, n))


def _txyp(rng, n):
    x, y, t, p = random_events(rng, n, 128, 128, 1_000_000)
    return t, x, y, p


def write_nmnist_bin(path, x, y, t, p):
    """N-MNIST's 40-bit events: x (8 bit), y (8), polarity (1) and timestamp (23, µs)."""
    raw = np.zeros((len(x), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((np.asarray(t) >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (np.asarray(t) >> 8) & 0xFF, np.asarray(t) & 0xFF
    raw.tofile(path)


def write_nmnist(root, per_digit=2, n=150):
    rng = np.random.default_rng(4)
    written = {}
    for folder, count in (("Train", per_digit), ("Test", 1)):
        for digit in range(10):
            os.makedirs(root / "NMNIST" / folder / str(digit))
            for k in range(count):
                x, y, t, p = random_events(rng, n, 34, 34, 300_000)
                path = root / "NMNIST" / folder / str(digit) / f"{k:05d}.bin"
                write_nmnist_bin(path, x, y, t, p)
                written[str(path)] = (x, y, t, p)
    return written


def _imagenet(root: Path) -> None:
    write_image_folder(root, "train")
    write_image_folder(root, "val")


#: data set name -> a function writing its stand-in (both splits) into an empty folder
STANDINS = {
    "imagenet": _imagenet,
    "cifar10": write_cifar,
    "cifar100": lambda root: write_cifar(root, hundred=True),
    "dvs_gesture": lambda root: write_dvs_gesture(root, labels=range(2), n=200),
    "cifar10_dvs": lambda root: write_cifar10_dvs(root, per_class=10, n=50),  # 9:1 split: one test file a class
    "nmnist": write_nmnist,
}
_DONE = ".standin-complete"  # written last: a folder without it was interrupted and is written again


def standin_root(name: str) -> Path:
    """Where :func:`write_standin` puts data set ``name`` by default: under :func:`default_root`,
    apart from any real data set."""
    return Path(default_root()) / "standin" / name


def write_standin(name: str, root: str | os.PathLike | None = None) -> Path:
    """Write the stand-in of data set ``name`` into ``root`` (default :func:`standin_root`) once,
    and return the folder to give as the data set's root.

    Raises:
        KeyError: ``name`` has no stand-in (the data sets that ship or are generated need none).
    """
    root = Path(root) if root is not None else standin_root(name)
    writer = STANDINS[name]
    if not (root / _DONE).is_file():
        if root.exists():
            import shutil

            shutil.rmtree(root)
        root.mkdir(parents=True)
        writer(root)
        (root / _DONE).write_text(name)
    return root
