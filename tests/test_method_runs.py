"""Every pruning method trains the digits SNN and its ANN twin from its shipped recipe and resumes
exactly: an interrupted run continued with resume=True ends with the weights of an uninterrupted
one, bit for bit (the pruner's, the method's and the optimizer's state all come back)."""

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


def test_ltp_through_the_command_line_resumes_after_kill_9(tmp_path):
    args = ["train", "digits_snn_ltp", *[x for s in SMALL for x in ("--set", s)], "--set", "epochs=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}

    def cli(*extra):
        return subprocess.Popen([sys.executable, "-m", "snnprune", *args, *extra], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    whole = cli("--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    run = cli("--out", str(tmp_path / "killed"))
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    resumed = cli("--out", str(tmp_path / "killed"), "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
