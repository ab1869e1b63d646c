"""SIGKILL at seeded random points of short digits runs of every family (inside a training step, in
the middle of a checkpoint write, between a whole temporary file and its rename, at a random
moment), then ``--resume``: every checkpoint in the folder always loads, and the resumed run ends
bit for bit on the uninterrupted one (CPU). SIGINT and SIGTERM save a mid-epoch checkpoint and exit
with code 130."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from faults import run_main

from snnprune.engine import train
from snnprune.engine.families import FAMILIES
from snnprune.recipe import load_recipe, recipe_dir
from snnprune.runs import load_checkpoint

HERE = Path(__file__).resolve().parent
EPOCHS, LIMIT, BATCH = 3, 48, 16
STEPS_PER_EPOCH = LIMIT // BATCH  # 3 steps per epoch, 9 in all
BASE = [f"epochs={EPOCHS}", f"data.limit={LIMIT}", f"batch_size={BATCH}"]

FAMILY_RECIPES = {  # family -> (recipe, its overrides)
    "dense": ("digits_ann_dense", []),
    "sparsify_during_training": ("digits_snn_lats", []),
    "early_pruning": ("digits_ann_early", ["pruning.freeze_epoch=1"]),
    "pruning_at_initialization": ("digits_ann_pai", []),
    "channel_pruning": ("digits_ann_channels", ["channels.prune_epoch=1"]),  # the cut after epoch 1
}

# a few seeded kill points per family, not dozens: the suite stays short
_rng = random.Random(12)
_total = EPOCHS * STEPS_PER_EPOCH
CASES = [
    ("dense", f"step:{_rng.randint(STEPS_PER_EPOCH + 1, _total)}"),
    ("sparsify_during_training", f"write:{_rng.randint(2, 5)}"),
    ("early_pruning", f"rename:{_rng.randint(2, 5)}"),
    ("pruning_at_initialization", f"time:{_rng.uniform(0.0, 1.5):.2f}"),  # seconds after the run started
    ("channel_pruning", f"step:{STEPS_PER_EPOCH + 1}"),  # the first step of the smaller network
    ("channel_pruning", "rename:3"),  # the checkpoint written with the cut network (best.pt, last.pt, ...)
]


def landed(family: str) -> bool:
    name = FAMILY_RECIPES[family][0]
    return family in FAMILIES and (recipe_dir() / f"{name}.toml").is_file()


def overrides(family: str) -> list[str]:
    return [*BASE, *FAMILY_RECIPES[family][1]]


def argv(family: str, out: Path, *extra) -> list[str]:
    sets = [a for o in overrides(family) for a in ("--set", o)]
    return ["train", FAMILY_RECIPES[family][0], *sets, "--out", str(out), *extra]


def inject(fault: str, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(HERE / "inject.py"), fault, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): the same sums, bit for bit


@pytest.fixture(scope="module")
def references(tmp_path_factory, data_home):
    """The uninterrupted run of each family, made on demand."""
    root, made = tmp_path_factory.mktemp("whole"), {}

    def get(family):
        if family not in made:
            torch.set_num_threads(1)
            train(load_recipe(FAMILY_RECIPES[family][0], overrides(family)), root / family)
            made[family] = torch.load(root / family / "final_model.pt", weights_only=True)["model"]
        return made[family]

    return get


def assert_every_checkpoint_loads(folder: Path) -> None:
    for path in folder.glob("*.pt"):
        assert load_checkpoint(path)["model"], path  # a whole file: never half a checkpoint


def resume_and_compare(family, out, reference, capsys) -> None:
    assert_every_checkpoint_loads(out)
    if (out / "last.pt").exists():
        saved = load_checkpoint(out / "last.pt")
        assert 0 < saved["global_step"] <= _total
        code, lines = run_main(argv(family, out, "--resume"), capsys)
    else:  # killed before the first checkpoint: nothing to resume, the run starts again
        code, lines = run_main(argv(family, out), capsys)
    assert code == 0, lines
    final = torch.load(out / "final_model.pt", weights_only=True)["model"]
    assert final.keys() == reference.keys()
    for key in reference:
        assert torch.equal(final[key], reference[key]), key
    assert not list(out.glob(".*.tmp"))  # a killed write's temporary file is cleaned up


@pytest.mark.parametrize("family, fault", CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_sigkill_then_resume_ends_bit_for_bit_on_the_uninterrupted_run(family, fault, references, tmp_path,
                                                                       capsys, data_home):
    if not landed(family):
        pytest.skip(f"family {family!r} is not in this tree")
    out = tmp_path / "run"
    if fault.startswith("time:"):  # a random moment, from outside
        run = inject("none", argv(family, out))
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(float(fault.split(":")[1]))
        run.send_signal(signal.SIGKILL)
        code = run.wait(timeout=300)
        assert code in (-signal.SIGKILL, 0), run.stderr.read()
    else:
        run = inject(fault, argv(family, out))
        code = run.wait(timeout=300)
        assert code == -signal.SIGKILL, (code, run.stderr.read()[-2000:])
    if fault.startswith(("write:", "rename:")):
        assert list(out.glob(".*.tmp"))  # killed with the temporary file there, the rename not done
    assert not (out / "final_model.pt").exists() or code == 0
    resume_and_compare(family, out, references(family), capsys)


@pytest.mark.parametrize("family, name", [("dense", "INT"), ("pruning_at_initialization", "TERM")])
def test_sigint_and_sigterm_save_mid_epoch_exit_130_and_resume_bit_for_bit(family, name, references, tmp_path,
                                                                           capsys, data_home):
    step = STEPS_PER_EPOCH + 2  # the middle of epoch 2
    out = tmp_path / "run"
    run = inject(f"signal:{step}:{name}", argv(family, out))
    code = run.wait(timeout=300)
    err = run.stderr.read()
    assert code == 130 and "--resume" in err.strip().splitlines()[-1], err[-2000:]
    saved = load_checkpoint(out / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 2, step)
    assert not (out / "final_model.pt").exists()
    resume_and_compare(family, out, references(family), capsys)
