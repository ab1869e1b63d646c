"""What the command line says when the user gets something wrong: one line on stderr, exit code 2,
no traceback, and the fix in the user's own terms (the flag or the ``--set`` to give)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from snnprune._validation import closest
from snnprune.cli import main
from snnprune.engine import train
from snnprune.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_home):
    out = tmp_path_factory.mktemp("run") / "digits_snn_lats"
    train(load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"]), out)
    return out


def one_line(capsys, *argv) -> tuple[int, str]:
    """Exit code and the single line on stderr (asserted single, with no traceback)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0]


# -- export --out -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["state_dict", "sparse", "onnx", "nir"])
def test_export_out_naming_a_folder_is_one_line_with_a_file_name_to_give(fmt, run_dir, tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    code, line = one_line(capsys, "export", run_dir, "--format", fmt, "--out", folder)
    assert code == 2 and f"--out {folder} is a folder" in line
    assert f"e.g. --out {folder}{os.sep}model." in line  # a file in it: the fix
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("fmt", ["state_dict", "sparse", "onnx", "nir"])
def test_export_out_where_no_file_can_be_written_is_one_line(fmt, run_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, line = one_line(capsys, "export", run_dir, "--format", fmt, "--out", blocker / "sub" / "model.out")
    assert code == 2 and f"{blocker} is a file, not a folder" in line and "--out" in line
    assert blocker.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_export_out_in_a_place_that_refuses_files_is_one_line(run_dir, capsys):
    # /proc refuses new entries even to root, for whom a read-only folder's mode bits mean nothing
    code, line = one_line(capsys, "export", run_dir, "--format", "sparse", "--out", "/proc/snnprune_nope/m.pt")
    assert code == 2 and line.startswith("snnprune: --out /proc/snnprune_nope/m.pt: cannot write in")


def test_compare_plot_naming_a_folder_is_one_line(run_dir, tmp_path, capsys):
    code, line = one_line(capsys, "compare", run_dir, "--plot", tmp_path)
    assert code == 2 and f"--plot {tmp_path} is a folder" in line and ".png" in line


def test_train_out_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").write_text("x")
    code, line = one_line(capsys, "train", "digits_snn_lats", "--out", tmp_path / "run")
    assert code == 2 and "is a file" in line


# -- report on a file that is not a checkpoint ---------------------------------------------------
def test_report_on_a_file_that_is_not_a_checkpoint_names_it_so(run_dir, tmp_path, capsys):
    for path in (run_dir / "recipe.json", run_dir / "metrics.jsonl"):
        code, line = one_line(capsys, "report", path)
        assert code == 2 and line == (f"snnprune: {path} is not a checkpoint (not a file torch.save writes): give a "
                                      "run folder or one of its .pt files")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    code, line = one_line(capsys, "export", text, "--format", "sparse", "--out", tmp_path / "m.pt")
    assert code == 2 and f"{text} is not a checkpoint" in line


def test_a_torch_file_holding_code_is_refused_naming_the_object_not_torchs_advice(tmp_path, capsys):
    import torch

    path = tmp_path / "odd.pt"
    torch.save({"model": Path("x")}, path)  # a class torch's weights-only loader does not allow
    code, line = one_line(capsys, "report", path)
    assert code == 2 and f"cannot read checkpoint {path}" in line and type(Path("x")).__name__ in line
    assert "weights_only" in line and "PyTorch 2.6" not in line


# -- did you mean ------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["digits_snn_lats", "cifar10_resnet56_channels"])
@pytest.mark.parametrize("key, hint", [
    ("lr", "optim.lr"), ("T", "data.T"), ("momentum", "optim.momentum"), ("data.lr", "optim.lr"),
    ("pruning.lr", "optim.lr"), ("epoch", "epochs"), ("optim.epochs", "epochs"), ("optim.lrr", "optim.lr"),
    ("final_threshold", "pruning.final_threshold"), ("warmup", "lr_schedule.warmup_epochs"),
    ("warmup_epochs", "lr_schedule.warmup_epochs"), ("milestone", "lr_schedule.milestones"),
    ("decay", "optim.weight_decay"),
])
def test_set_of_a_key_without_its_section_suggests_the_dotted_key(recipe, key, hint, tmp_path, capsys):
    code, line = one_line(capsys, "train", recipe, "--set", f"{key}=0.1", "--out", tmp_path / "run")
    assert code == 2 and f"unknown key {key!r}" in line and f"did you mean {hint!r}?" in line
    assert not (tmp_path / "run").exists()


def test_did_you_mean_prefers_the_last_part_of_a_dotted_key_over_a_close_spelling():
    keys = ["amp", "epochs", "optim.lr", "data.T", "model.kwargs.T", "lr_schedule.warmup_epochs",
            "lr_schedule.warmup_start_factor", "pruning.threshold_reg"]
    assert closest("warmup", keys) == ["lr_schedule.warmup_epochs"]  # not "amp", two edits away
    assert closest("T", keys) == ["data.T", "model.kwargs.T"]  # every key that ends so
    assert closest("lr", keys) == ["optim.lr"] and closest("pruning.lr", keys) == ["optim.lr"]
    assert closest("epoch", keys) == ["epochs"] and closest("optim.epochs", keys) == ["epochs"]
    assert closest("threshold_regularization", keys) == ["pruning.threshold_reg"]
    assert closest("ampp", keys) == ["amp"] and closest("xyz", keys) == []


# -- output piped into a reader that stops early --------------------------------------------------
def test_report_markdown_piped_into_a_reader_that_stops_ends_quietly(run_dir):
    """Through a real process and pipe: the interpreter's own flush at exit must stay quiet too."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "snnprune", "report", str(run_dir), "--markdown"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.close()  # the reader goes away at once, as `| head -0` does: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == "", err  # 141: 128 + SIGPIPE, as the shell reports a killed writer


def test_json_into_a_closed_pipe_returns_141_and_writes_nothing_else(run_dir, monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        code = main(["report", str(run_dir), "--json"])
        pipe.write("after")  # stdout now points at devnull: later writes (the exit's flush) are harmless
        pipe.flush()
    assert code == 141 and capsys.readouterr().err == ""


# -- a recipe key error names the key, its value and the --set that fixes it ---------------------
@pytest.mark.parametrize("recipe, line", [
    ("digits_snn_gmp", "pruning.end_epoch=9 must not exceed epochs=1: add --set pruning.end_epoch=1 "
                       "--set pruning.start_epoch=0"),
    ("digits_ann_gmp", "pruning.end_epoch=9 must not exceed epochs=1: add --set pruning.end_epoch=1 "
                       "--set pruning.start_epoch=0"),
    ("digits_snn_magnitude", "pruning.prune_epoch=6 must be smaller than epochs=1: add --set pruning.prune_epoch=0"),
    ("digits_snn_early", "pruning.freeze_epoch=6 must be between 1 and epochs - 1 in family 'early_pruning' "
                         "(epochs=1): add --set epochs=2 --set pruning.freeze_epoch=1"),
    ("digits_snn_target99", "pruning.freeze_epoch=15 must be between 1 and epochs - 1 in family 'early_pruning' "
                            "(epochs=1): add --set epochs=2 --set pruning.freeze_epoch=1"),
    ("digits_snn_channels", "channels.prune_epoch=8 must be smaller than epochs=1 (fine-tuning follows the cut): "
                            "add --set epochs=2 --set channels.prune_epoch=1"),
    ("imagenet_resnet50_lats", "lr_schedule.warmup_epochs=5 must be smaller than epochs=1: add --set "
                               "lr_schedule.warmup_epochs=0"),
])
def test_epochs_1_on_a_recipe_with_its_own_epoch_keys_names_key_value_and_fix(recipe, line, tmp_path, capsys):
    code, got = one_line(capsys, "train", recipe, "--set", "epochs=1", "--out", tmp_path / "run")
    assert code == 2 and got == f"snnprune: bad recipe: {line}"
    assert not (tmp_path / "run").exists()


def test_the_fix_a_message_names_works(tmp_path, capsys):
    """Following the advice of each message in turn ends in a recipe that validates."""
    import re
    import shlex

    from snnprune.recipe import RecipeError

    for recipe in ("digits_snn_gmp", "digits_snn_early", "digits_snn_channels", "imagenet_resnet50_gmp"):
        overrides = ["epochs=1"]
        for _ in range(4):
            try:
                load_recipe(recipe, overrides)
                break
            except RecipeError as exc:
                advice = re.search(r": add (--set .*)$", str(exc))
                assert advice, str(exc)
                overrides += shlex.split(advice.group(1))[1::2]
        else:
            raise AssertionError(f"{recipe}: still refused after {overrides}")


@pytest.mark.parametrize("override, line", [
    ("epochs=0", "epochs=0: input should be greater than or equal to 1: add --set epochs=1"),
    ("optim.lr=-1", "optim.lr=-1: input should be greater than 0: add --set optim.lr=0.1"),
    ("optim.name=sgdd", "optim.name='sgdd': input should be 'sgd' or 'adamw': add --set optim.name=sgd"),
    ("pruning.schedule=lat", "pruning.schedule='lat' is not a threshold schedule (known: lats, slats, pgh, sine, "
                             "linear, constant): add --set pruning.schedule=lats"),
    ("pruning.l1=0.001", "pruning.l1=0.001 and pruning.final_threshold=0.2 are two forms of one threshold (λ and D): "
                         "keep one of them in the recipe"),
    ("family=dense", "pruning.method='soft_threshold' prunes, family 'dense' does not: add --set "
                     "'pruning={method=\"none\"}'"),
])
def test_a_bad_value_names_key_value_and_fix(override, line, tmp_path, capsys):
    code, got = one_line(capsys, "train", "digits_snn_lats", "--set", override, "--out", tmp_path / "run")
    assert code == 2 and got == f"snnprune: bad recipe: {line}"
