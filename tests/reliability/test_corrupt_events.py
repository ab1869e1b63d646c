"""Corrupt or empty event files in a data set (.npy, .aedat4, .bin): an error naming the file, or,
with ``skip_corrupt`` (``data.kwargs.skip_corrupt = true``), the file left out with one warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from fakedata import write_cifar10_dvs, write_dvs_gesture, write_nmnist
from faults import run_main

from snnprune.data import create_dataset
from snnprune.data.neuromorphic import CorruptRecordingError

WRITERS = {  # data set -> a writer of small files in its layout (.npy, .aedat4, .bin)
    "dvs_gesture": lambda root: write_dvs_gesture(root, labels=range(2), n=100),
    "cifar10_dvs": lambda root: write_cifar10_dvs(root, per_class=10, n=20),
    "nmnist": lambda root: write_nmnist(root, per_digit=1, n=50),
}


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not an event file\n" * 3)


def damaged_root(name, damage, tmp_path) -> tuple[Path, Path]:
    """A generated copy of data set ``name`` whose second training recording is damaged."""
    root = tmp_path / "data"
    WRITERS[name](root)
    ds = create_dataset(name, str(root), "train", n_time_bins=2, cache_dir=str(tmp_path / "unused"))
    victim = Path(ds.recordings.data[int(ds.indices[1])])
    damage(victim)
    return root, victim


def read_all(ds) -> None:
    for i in range(len(ds)):
        ds[i]


@pytest.mark.parametrize("damage", [emptied, truncated, garbage], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", list(WRITERS))
def test_a_damaged_recording_is_an_error_naming_the_file_or_is_skipped_when_asked(name, damage, tmp_path):
    root, victim = damaged_root(name, damage, tmp_path)
    split = "train"
    ds = create_dataset(name, str(root), split, n_time_bins=2, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CorruptRecordingError) as info:
        read_all(ds)
    message = str(info.value)
    assert str(victim) in message and "skip_corrupt" in message and "\n" not in message

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = create_dataset(name, str(root), split, n_time_bins=2, cache_dir=str(tmp_path / "cache2"),
                              skip_corrupt=True)
    notes = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(notes) == 1 and str(victim) in notes[0] and "skipped 1" in notes[0]
    if name != "cifar10_dvs":  # (its 9:1 split is drawn again over the files left)
        assert len(kept) == len(ds) - 1
    assert str(victim) not in map(str, kept.recordings.data)
    read_all(kept)  # everything left reads


def test_the_command_line_names_the_damaged_file_in_one_line(tmp_path, capsys):
    root, victim = damaged_root("dvs_gesture", truncated, tmp_path)
    args = ["train", "digits_ann_lats", "--set", "data.name='dvs_gesture'", "--set", f"data.root='{root}'",
            "--set", "data.T=2", "--set", "data.kwargs.size=32", "--set", "model.kwargs={in_channels=2, input_size=32}",
            "--set", "epochs=1", "--set", "batch_size=2", "--out", tmp_path / "run"]
    code, lines = run_main(args, capsys)
    assert code == 2 and len(lines) == 1 and str(victim) in lines[0], lines
    code, lines = run_main([*args[:-2], "--set", "data.workers=1", "--out", tmp_path / "run1"], capsys)
    assert code == 2 and len(lines) == 1 and str(victim) in lines[0], lines  # re-raised from a worker process
    with pytest.warns(UserWarning, match=f"skipped 1 unreadable recording.*{victim.name}"):
        code, lines = run_main([*args[:-2], "--set", "data.kwargs.skip_corrupt=true", "--out", tmp_path / "run2"],
                               capsys)
    assert code == 0, lines
