"""A checkpoint crafted to run code when unpickled is refused everywhere one is read (train
--resume, report, compare, export) and the code never runs; a truncated or edited checkpoint is one
line naming the file, exit code 2, and nothing in the run folder changes."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import pytest
import torch
from faults import folder_bytes, run_main

from snnprune.engine import train
from snnprune.recipe import load_recipe

SMALL = ["epochs=1", "data.limit=32", "batch_size=16"]
TRAIN = ["train", "digits_ann_lats", *[a for s in SMALL for a in ("--set", s)]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_home):
    """One finished short run (last.pt, best.pt, final_model.pt)."""
    out = tmp_path_factory.mktemp("safety") / "run"
    train(load_recipe("digits_ann_lats", SMALL), out)
    return out


def readers(folder, target, tmp_path):
    """Every command that reads a checkpoint, pointed at ``target`` (a file of ``folder``)."""
    return {
        "train --resume": [*TRAIN, "--out", folder, "--resume"],
        "report": ["report", target],
        "report (folder)": ["report", folder],
        "compare": ["compare", target],
        "export": ["export", target, "--format", "sparse", "--out", tmp_path / "exported.pt"],
    }


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def copy_run(run_dir, to):
    to.mkdir()
    for name, data in folder_bytes(run_dir).items():
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        (to / name).write_bytes(data)
    return to


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # torch's note on the plain pickle: expected
@pytest.mark.parametrize("how", ["torch.save", "plain pickle"])
def test_a_checkpoint_that_runs_code_is_refused_by_every_reader(how, run_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = copy_run(run_dir, tmp_path / "run")
    for name in ("last.pt", "best.pt", "final_model.pt"):  # every file a reader may pick
        if how == "torch.save":
            torch.save({"model": Evil(marker), "recipe": {}, "model_name": "sew_digits"}, folder / name)
        else:
            (folder / name).write_bytes(pickle.dumps({"model": Evil(marker)}))
    before = folder_bytes(folder)
    for what, argv in readers(folder, folder / "last.pt", tmp_path).items():
        code, lines = run_main(argv, capsys)
        assert code == 2 and len(lines) == 1, (what, lines)
        assert str(folder) in lines[0] and "checkpoint" in lines[0], (what, lines)
        assert not marker.exists(), what
    assert folder_bytes(folder) == before and not (tmp_path / "exported.pt").exists()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def emptied(data: bytes) -> bytes:
    return b""


def flipped(data: bytes) -> bytes:
    """One byte of a tensor's storage changed (the zip's CRC no longer matches)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = max(z.infolist(), key=lambda i: i.file_size if "/data/" in i.filename else 0)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    out[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("damage", [truncated, emptied, flipped], ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_is_one_line_naming_it_and_nothing_is_overwritten(damage, run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path / "run")
    for name in ("last.pt", "best.pt", "final_model.pt"):
        (folder / name).write_bytes(damage((folder / name).read_bytes()))
    before = folder_bytes(folder)
    for what, argv in readers(folder, folder / "last.pt", tmp_path).items():
        code, lines = run_main(argv, capsys)
        assert code == 2 and len(lines) == 1, (what, lines)
        assert str(folder) in lines[0], (what, lines)
    assert folder_bytes(folder) == before and not (tmp_path / "exported.pt").exists()


def _edit(state: dict, how: str) -> dict:
    """``state`` changed as ``how`` says; the checksum entry is dropped (as an editor who knows of
    it would), except for the first edit, which the checksum catches."""
    if how != "a weight changed, checksum kept":
        state.pop("checksum")
    if how == "a weight changed, checksum kept":
        key = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][key] = state["model"][key] * 1.0001
    elif how == "missing model":
        del state["model"]
    elif how == "tensor of another shape":
        key = next(k for k, v in state["model"].items() if v.dim() == 4)
        state["model"][key] = state["model"][key][:1]
    elif how == "a NaN weight":
        key = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][key] = state["model"][key].clone().fill_(float("nan"))
    elif how == "step is text":
        state["global_step"] = "three"
    elif how == "optimizer of another model":
        state["optimizer"]["state"] = {0: {"momentum_buffer": torch.zeros(3)}}
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:0]
    elif how == "rng cut short":
        state["rng"] = [{"torch": torch.zeros(3, dtype=torch.uint8)}]
    return state


EDITS = ["a weight changed, checksum kept", "missing model", "tensor of another shape", "a NaN weight",
         "step is text", "optimizer of another model", "rng cut short"]


@pytest.mark.parametrize("how", EDITS)
def test_resuming_an_edited_checkpoint_is_one_line_and_leaves_the_folder_as_it_was(how, run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path / "run")
    state = torch.load(folder / "last.pt", weights_only=True)
    torch.save(_edit(state, how), folder / "last.pt")
    before = folder_bytes(folder)
    code, lines = run_main([*TRAIN, "--out", folder, "--resume"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"checkpoint {folder / 'last.pt'}" in lines[0], lines
    assert folder_bytes(folder) == before  # no new TensorBoard file, no line in metrics.jsonl, recipe.json as it was


@pytest.mark.parametrize("how", ["a weight changed, checksum kept", "missing model", "tensor of another shape"])
def test_reading_an_edited_checkpoint_back_is_one_line(how, run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path / "run")
    for name in ("last.pt", "final_model.pt"):
        torch.save(_edit(torch.load(folder / name, weights_only=True), how), folder / name)
    for target in (folder / "last.pt", folder / "final_model.pt"):
        for what, argv in readers(folder, target, tmp_path).items():
            if what.startswith("train") or what == "report (folder)":
                continue
            code, lines = run_main(argv, capsys)
            assert code == 2 and len(lines) == 1 and str(target) in lines[0], (what, target.name, lines)
