"""snnprune.data: every loader on small files written here in the data set's real on-disk format.

Nothing is downloaded: each test writes its files under tmp_path in the layout and the binary
format the loader (torchvision or tonic) reads, and the download flags stay off.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from fakedata import tonic_frames, write_cifar, write_cifar10_dvs, write_dvs_gesture, write_image_folder, write_nmnist

from snnprune.data import (
    DatasetNotFoundError,
    Framing,
    collate_time_major,
    create_dataset,
    dataset_info,
    list_datasets,
    make_loader,
)


@pytest.fixture(scope="module")
def digits_dvs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("digits_dvs")


# ---------------------------------------------------------------- registry and errors


def test_registry_lists_every_data_set():
    assert set(list_datasets()) == {"imagenet", "cifar10", "cifar100", "dvs_gesture", "cifar10_dvs",
                                    "nmnist", "digits", "digits_dvs"}


@pytest.mark.parametrize("name", ["digits", "digits_dvs"])
def test_dataset_info_matches_what_the_builder_makes(name, digits_dvs_root):
    info = dataset_info(name)
    kwargs = {"n_time_bins": 4} if info.events else {}
    x, y = create_dataset(name, str(digits_dvs_root), "test", **kwargs)[0]
    assert tuple(x.shape[-3:]) == info.sample_shape and (x.dim() == 4) == info.events and 0 <= y < info.num_classes


def test_unknown_name_suggests_the_closest_names():
    with pytest.raises(ValueError, match="did you mean 'cifar10'"):
        create_dataset("cifar_10", "/nonexistent", "train")


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        create_dataset("digits", None, "holdout")


@pytest.mark.parametrize("name", ["imagenet", "cifar10", "cifar100", "dvs_gesture", "cifar10_dvs", "nmnist"])
def test_missing_data_raises_one_line_naming_layout_and_readme(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as info:
        create_dataset(name, str(tmp_path), "train")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in message and "<root>/" in message and "data/README.md" in message
    assert message.startswith(f"{name}: no data at {tmp_path}")
    assert not any(tmp_path.rglob("*.zip")) and not any(tmp_path.rglob("*.tar.gz"))  # nothing fetched


def test_no_root_means_the_default_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNPRUNE_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=f"no data at {tmp_path}/NMNIST/Train;"):
        create_dataset("nmnist", None, "train")


# ---------------------------------------------------------------- torchvision image sets


def test_imagenet_reads_class_folders_with_standard_transforms(tmp_path):
    write_image_folder(tmp_path, "train", ext="JPEG")
    write_image_folder(tmp_path, "val", ext="png", per_class=2)
    train = create_dataset("imagenet", str(tmp_path), "train", image_size=32)
    val = create_dataset("imagenet", str(tmp_path), "val", image_size=32)
    assert (len(train), len(val)) == (6, 4)
    assert train.classes == ["n01440764", "n01443537"] and sorted(set(val.targets)) == [0, 1]
    x, y = val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0
    assert torch.equal(val[1][0], val[1][0])  # validation transform is deterministic
    assert train[0][0].shape == (3, 32, 32)


def test_cifar10_reads_local_pickles_without_md5(tmp_path):
    write_cifar(tmp_path)
    train = create_dataset("cifar10", str(tmp_path), "train")
    test = create_dataset("cifar10", str(tmp_path), "test")
    assert (len(train), len(test)) == (20, 4)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < 10
    assert test.classes[0] == "c0"


def test_cifar_md5_check_is_optional_and_rejects_other_files(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(RuntimeError, match="corrupted"):
        create_dataset("cifar10", str(tmp_path), "test", verify_md5=True)


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar(tmp_path, hundred=True, per_batch=6)
    test = create_dataset("cifar100", str(tmp_path), "test", augment=False)
    assert len(test) == 6 and len(test.classes) == 100
    assert test[0][0].shape == (3, 32, 32)


# ---------------------------------------------------------------- tonic event sets


def test_dvs_gesture_frames_equal_tonic_toframe_of_the_file(tmp_path):
    written = write_dvs_gesture(tmp_path)
    train = create_dataset("dvs_gesture", str(tmp_path), "train", n_time_bins=5)
    test = create_dataset("dvs_gesture", str(tmp_path), "test", n_time_bins=5)
    assert (len(train), len(test)) == (22, 11)
    assert train.targets[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]  # natural file order
    frames, label = train[10]
    assert frames.shape == (5, 2, 128, 128) and frames.dtype == torch.float32 and label == 10
    x, y, t, p = written[train.recordings.data[10]]
    assert np.array_equal(frames.numpy(), tonic_frames(x, y, t, p, (128, 128, 2), n_time_bins=5))


def test_downsampling_and_time_window_framing(tmp_path):
    write_dvs_gesture(tmp_path, users=("user01_led",), labels=range(3))
    ds = create_dataset("dvs_gesture", str(tmp_path), "test", time_window=1_000_000, size=32)
    frames, _ = ds[0]
    assert frames.shape[1:] == (2, 32, 32) and 4 <= frames.shape[0] <= 6
    assert ds.sensor_size == (32, 32, 2) and "window1e+06us_32x32" in ds.cache_path


def test_cifar10_dvs_reads_aedat4_with_stratified_9_to_1_split(tmp_path):
    pytest.importorskip("aedat", reason="tonic reads .aedat4 with the 'aedat' package")
    write_cifar10_dvs(tmp_path)
    train = create_dataset("cifar10_dvs", str(tmp_path), "train", n_time_bins=4, size=64)
    test = create_dataset("cifar10_dvs", str(tmp_path), "test", n_time_bins=4, size=64)
    assert (len(train), len(test)) == (90, 10)
    assert np.bincount(train.targets).tolist() == [9] * 10 and sorted(test.targets) == list(range(10))
    frames, label = test[0]
    assert frames.shape == (4, 2, 64, 64) and frames.sum() == 200 - 1  # tonic's bins drop the last event
    assert label == test.targets[0]


def test_cifar10_dvs_split_does_not_depend_on_file_creation_order(tmp_path):
    pytest.importorskip("aedat")
    write_cifar10_dvs(tmp_path / "a", seed=3)
    write_cifar10_dvs(tmp_path / "b", seed=4)
    names = [[os.path.relpath(p, root / "CIFAR10DVS") for p in
              np.asarray(ds.recordings.data)[ds.indices]]
             for root in (tmp_path / "a", tmp_path / "b")
             for ds in [create_dataset("cifar10_dvs", str(root), "test")]]
    assert names[0] == names[1]


def test_nmnist_reads_the_40_bit_binary_format(tmp_path):
    written = write_nmnist(tmp_path)
    train = create_dataset("nmnist", str(tmp_path), "train", n_time_bins=3)
    test = create_dataset("nmnist", str(tmp_path), "val", n_time_bins=3)
    assert (len(train), len(test)) == (20, 10)
    assert train.targets == [d for d in range(10) for _ in range(2)]
    frames, label = train[5]
    assert frames.shape == (3, 2, 34, 34) and label == 2
    x, y, t, p = written[train.recordings.data[5]]
    assert np.array_equal(frames.numpy(), tonic_frames(x, y, t, p, (34, 34, 2), n_time_bins=3))


def test_second_pass_reads_the_disk_cache_and_does_not_bin_again(tmp_path, monkeypatch):
    from tonic.transforms import ToFrame

    write_nmnist(tmp_path, per_digit=1)
    calls = []
    original = ToFrame.__call__
    monkeypatch.setattr(ToFrame, "__call__", lambda self, events: calls.append(1) or original(self, events))
    first = [create_dataset("nmnist", str(tmp_path), "train", n_time_bins=3)[i] for i in range(10)]
    assert len(calls) == 10
    again = create_dataset("nmnist", str(tmp_path), "train", n_time_bins=3)  # a new object, as in a new run
    second = [again[i] for i in range(10)]
    assert len(calls) == 10
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, second))
    create_dataset("nmnist", str(tmp_path), "train", n_time_bins=4)[0]  # other framing: other folder
    assert len(calls) == 11


def test_framing_needs_exactly_one_of_bins_and_window():
    assert Framing(time_window=5000).n_time_bins is None
    with pytest.raises(ValueError):
        Framing(n_time_bins=None)


# ---------------------------------------------------------------- batching


def test_collate_is_time_major_and_pads_shorter_sequences():
    batch = [(torch.ones(3, 2, 4, 4), 1), (torch.full((5, 2, 4, 4), 2.0), 7)]
    frames, labels = collate_time_major(batch)
    assert frames.shape == (5, 2, 2, 4, 4) and labels.tolist() == [1, 7] and labels.dtype == torch.long
    assert frames[3:, 0].abs().sum() == 0 and torch.equal(frames[:, 1], batch[1][0])


def test_loader_batches_event_frames_as_T_N_C_H_W_with_workers(tmp_path):
    write_nmnist(tmp_path, per_digit=1)
    ds = create_dataset("nmnist", str(tmp_path), "train", n_time_bins=3)
    loader = make_loader(ds, batch_size=4, train=True, workers=2, seed=0)
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(3, 4, 2, 34, 34)] * 2 + [(3, 2, 2, 34, 34)]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))


def test_distributed_loader_shards_the_data(tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    loader = make_loader(create_dataset("digits", None, "test"), batch_size=64, train=True, distributed=True)
    assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
    assert sum(len(y) for _, y in loader) == 180


# ---------------------------------------------------------------- digits and digits_dvs


def test_digits_are_8x8_images_in_unit_range_with_stratified_split():
    train, test = create_dataset("digits", None, "train"), create_dataset("digits", None, "test")
    assert (len(train), len(test)) == (1437, 360)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert np.bincount(test.targets).min() >= 35
    assert create_dataset("digits", None, "test").targets == test.targets


def test_digits_dvs_is_generated_in_tonic_dtype(digits_dvs_root):
    from tonic.io import events_struct

    from snnprune.data.digits_dvs import DigitsDVS

    ds = create_dataset("digits_dvs", str(digits_dvs_root), "train", n_time_bins=4)
    events = np.load(digits_dvs_root / "DigitsDVS" / "16px-v1" / "events.npy", mmap_mode="r")
    assert events.dtype == events_struct and len(ds) == 1437 and ds.sensor_size == (24, 24, 2)
    raw, label = DigitsDVS(str(digits_dvs_root))[0]
    assert np.all(np.diff(raw["t"]) >= 0) and 0 < raw["t"].max() <= 300_000 and label == 0
    assert set(np.unique(raw["p"])) == {False, True}
    frames, _ = ds[0]
    assert frames.shape == (4, 2, 24, 24) and frames.sum() > 100


def test_digits_dvs_generation_is_the_same_bytes_every_time(digits_dvs_root, tmp_path):
    from snnprune.data.digits_dvs import FILES, generate

    create_dataset("digits_dvs", str(digits_dvs_root), "test", n_time_bins=4)
    generate(str(tmp_path / "again"))
    for name in FILES:
        first = (digits_dvs_root / "DigitsDVS" / "16px-v1" / name).read_bytes()
        assert first == (tmp_path / "again" / name).read_bytes(), name


def test_digits_dvs_is_learnable_by_logistic_regression(digits_dvs_root):
    def features(split):
        ds = create_dataset("digits_dvs", str(digits_dvs_root), split, n_time_bins=4)
        frames = torch.stack([ds[i][0] for i in range(len(ds))]).flatten(1, 2)  # [N, T*C, 24, 24]
        return torch.nn.functional.avg_pool2d(frames, 2).flatten(1), torch.tensor(ds.targets)

    (x, y), (xt, yt) = features("train"), features("test")
    scale = x.max()
    torch.manual_seed(0)
    linear = torch.nn.Linear(x.shape[1], 10)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x / scale), y) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: extra threads only spin on a shared 2-core machine
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    accuracy = (linear(xt / scale).argmax(1) == yt).float().mean().item()
    print(f"digits_dvs logistic regression test accuracy: {accuracy:.3f}")
    assert accuracy > 0.8


# ---------------------------------------------------------------- argument checks and naming


@pytest.mark.parametrize("kwargs, name", [
    ({"n_time_bins": 0}, "n_time_bins"), ({"n_time_bins": -3}, "n_time_bins"), ({"n_time_bins": 2.5}, "n_time_bins"),
    ({"size": 0}, "size"), ({"time_window": 0}, "time_window"), ({"time_window": -5.0}, "time_window"),
])
def test_bad_framing_arguments_raise_one_value_error_naming_them_before_touching_disk(tmp_path, kwargs, name):
    root = tmp_path / "nothing-here"
    for dataset in ("digits_dvs", "nmnist"):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            create_dataset(dataset, str(root), "train", **kwargs)
    assert not root.exists()  # nothing generated, no cache folder written


def test_framing_by_bins_and_by_window_together_is_refused():
    with pytest.raises(ValueError, match="n_time_bins or time_window, not both"):
        Framing(n_time_bins=4, time_window=1000)
    assert Framing().n_time_bins == 16 and Framing(size=32).size == 32


def test_data_set_and_split_names_are_case_insensitive_and_dash_tolerant():
    assert len(create_dataset("DIGITS", None, "TRAIN")) == len(create_dataset("digits", None, "Train")) == 1437
    assert len(create_dataset("Digits", None, "Val")) == 360
    assert dataset_info("Digits-DVS").name == "digits_dvs"
