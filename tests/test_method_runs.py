"""Every pruning method trains the digits SNN and its ANN twin from its shipped recipe and resumes
exactly: an interrupted run continued with resume=True, and a command-line run of each method killed with kill -9
and continued with --resume, end with the weights of an uninterrupted one, bit for bit (the
pruner's, the method's and the optimizer's state all come back)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnprune.engine import train
from snnprune.engine.trail import read_trail
from snnprune.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["epochs=2", "data.limit=48", "batch_size=16"]
# every method, on the SNN or its twin in turn (both models run every method in the shipped-recipe test)
RECIPES = ["digits_snn_ltp", "digits_ann_smooth", "digits_snn_gmp", "digits_ann_magnitude"]
FIT = {"gmp": ["pruning.start_epoch=0", "pruning.end_epoch=2", "pruning.update_every=1"],
       "magnitude": ["pruning.prune_epoch=1"]}


@pytest.fixture(scope="module", autouse=True)
def _private_data(data_home):  # tests/conftest.py
    return data_home


def final_weights(run: Path) -> dict:
    return torch.load(run / "final_model.pt", weights_only=True)["model"]


@pytest.mark.parametrize("name", RECIPES)
def test_each_method_recipe_trains_and_resumes_bit_for_bit(name, tmp_path):
    recipe = load_recipe(name, [*SMALL, *FIT.get(name.rsplit("_", 1)[1], [])])
    whole = train(recipe, tmp_path / "whole")
    assert 0 < whole.history[-1]["sparsity"] < 1
    assert (tmp_path / "whole" / "trail.json").exists() == (recipe.pruning.method == "ltp")  # the default trail
    stopped = train(recipe, tmp_path / "cut", stop_after_steps=4)  # in the second epoch
    assert stopped.interrupted
    train(recipe, tmp_path / "cut", resume=True)
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), name


# Through the command line: every method on the other net than above (so each goes through both),
# and random (no in-process run above). The kill lands in the second of three epochs: after GMP's
# first mask updates, and after the one-shot magnitude cut made at the start of it.
CLI_RUNS = {
    "ltp": ("digits_ann_ltp", []),
    "smooth_threshold": ("digits_snn_smooth", []),
    "gmp": ("digits_ann_gmp", ["pruning.start_epoch=0", "pruning.end_epoch=3", "pruning.update_every=1"]),
    "magnitude": ("digits_snn_magnitude", ["pruning.prune_epoch=1"]),
    "random": ("digits_ann_magnitude", ['pruning={method="random", target_sparsity=0.9, prune_epoch=1}']),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CLI_RUNS))
def test_each_method_through_the_command_line_resumes_after_kill_9(method, tmp_path):
    name, extra = CLI_RUNS[method]
    overrides = [*SMALL, "epochs=3", *extra]
    recipe = load_recipe(name, overrides)
    assert recipe.pruning.method == method
    train(recipe, tmp_path / "whole")  # the uninterrupted reference, in this process
    args = ["train", name, *[x for s in overrides for x in ("--set", s)], "--out", str(tmp_path / "killed")]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}

    def cli(*extra):
        return subprocess.Popen([sys.executable, "-m", "snnprune", *args, *extra], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    run = cli()
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # into the second epoch (two more to go)
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL, run.stderr.read()
    resumed = cli("--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), method
    if recipe.pruning.trail:
        assert read_trail(tmp_path / "killed") == read_trail(tmp_path / "whole")
