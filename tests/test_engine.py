"""The training engine end to end: recipes run, logs and checkpoints land, resume is exact,
torchrun works, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnprune.cli import main
from snnprune.engine import train
from snnprune.models import create_model
from snnprune.recipe import RecipeError, load_recipe
from snnprune.reparam import SoftThreshold
from snnprune.runs import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    """A private default data root ($SNNPRUNE_DATA) with digits_dvs generated once."""
    home = tmp_path_factory.mktemp("data_home")
    old = os.environ.get("SNNPRUNE_DATA")
    os.environ["SNNPRUNE_DATA"] = str(home)
    from snnprune.data import create_dataset

    create_dataset("digits_dvs", None, "train")
    yield home
    if old is None:
        os.environ.pop("SNNPRUNE_DATA", None)
    else:
        os.environ["SNNPRUNE_DATA"] = old


def test_digits_run_writes_logs_checkpoints_and_a_plain_final_model(tmp_path, data_home):
    recipe = load_recipe("digits_snn_lats", ["epochs=2", "data.limit=96", "batch_size=32"])
    result = train(recipe, tmp_path)
    assert [m["epoch"] for m in result.history] == [1, 2]
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [l for l in lines if l["kind"] == "epoch"]
    assert len(epochs) == 2 and {"train_loss", "test_acc", "threshold", "sparsity", "regrowth"} <= set(epochs[0])
    assert epochs[1]["threshold"] == recipe.pruning.final_threshold  # the D-form lands on D at the last step
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())
    assert json.loads((tmp_path / "recipe.json").read_text())["name"] == "digits_snn_lats"
    for name in ("last.pt", "best.pt", "final_model.pt"):
        torch.load(tmp_path / name, weights_only=True)
    final = torch.load(tmp_path / "final_model.pt", weights_only=True)
    fresh = create_model("sew_digits", in_channels=2, input_size=24, num_classes=10, T=4)
    fresh.load_state_dict(final["model"], strict=True)
    assert final["sparsity"] == pytest.approx(result.final["sparsity"])


def test_early_pruning_freezes_the_mask(tmp_path, data_home):
    recipe = load_recipe("digits_snn_early", ["epochs=3", "pruning.freeze_epoch=1", "data.limit=64", "batch_size=32"])
    result = train(recipe, tmp_path)
    after_freeze = [m["sparsity"] for m in result.history[1:]]
    assert after_freeze[0] == after_freeze[1] > 0
    assert result.history[2]["regrowth"] == 0.0


def test_pruning_at_initialization_starts_at_the_target(tmp_path, data_home):
    recipe = load_recipe("digits_ann_pai", ["epochs=2", "data.limit=64", "batch_size=32"])
    result = train(recipe, tmp_path / "fixed")
    numel = sum(m.numel() for m in load_checkpoint(tmp_path / "fixed" / "last.pt")["masks"].values())
    # the mask set at step 0 is kept: every layer is pruned, so the total is the target
    assert [m["sparsity"] for m in result.history] == [pytest.approx(0.8, abs=1 / numel)] * 2
    assert result.history[1]["regrowth"] == 0.0

    soft = load_recipe("digits_ann_pai", ["epochs=1", "data.limit=64", "batch_size=32", "pruning.fixed_mask=false"])
    train(soft, tmp_path / "soft", stop_after_steps=1)
    state = load_checkpoint(tmp_path / "soft" / "last.pt")
    masks = state["masks"]  # the masks at step 0, right after the threshold was set
    kept = sum(int(m.sum()) for m in masks.values())
    assert 1 - kept / numel == pytest.approx(0.8, abs=1 / numel)
    assert state["pruner"]["schedule"]["type"] == "Constant"  # only the threshold stays fixed


METHODS = [  # a pruning section per method config, each small enough for one CPU run
    {"method": "str", "s_init": -5.0},
    {"method": "magnitude", "target_sparsity": 0.5},
    {"method": "random", "target_sparsity": 0.5, "prune_epoch": 1},
    {"method": "gmp", "final_sparsity": 0.6, "update_every": 1},
    {"method": "ltp", "l0": 1.0},
    {"method": "smooth_threshold", "threshold_reg": 1.0},
]


@pytest.mark.parametrize("pruning", METHODS, ids=lambda p: p["method"])
def test_every_method_config_trains_through_the_generic_builder(pruning, tmp_path, data_home):
    recipe = load_recipe("digits_ann_lats", ["epochs=2", "data.limit=64", "batch_size=32"])
    recipe = load_recipe({**recipe.model_dump(), "pruning": pruning})
    result = train(recipe, tmp_path)
    final = result.history[-1]["sparsity"]
    target = pruning.get("target_sparsity", pruning.get("final_sparsity"))
    if target is not None:  # sparsity-controlled: the schedule's target, exactly
        assert final == pytest.approx(target, abs=1e-3)
    else:
        assert 0 < final < 1


@pytest.fixture
def toy_method():
    """A user's own method, registered by its name only (no config class in the recipe schema),
    and unregistered after the test, so that tests iterating over METHODS do not meet it."""
    import snnprune.reparam

    class Toy(SoftThreshold):
        name = "toy_test"

        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

    yield Toy
    snnprune.reparam.METHODS.pop("toy_test", None)


def test_a_method_registered_at_runtime_trains_from_a_recipe_dict(tmp_path, data_home, toy_method):
    import snnprune.reparam

    Toy = toy_method
    assert hasattr(snnprune.reparam, "METHODS"), "the method registry (snnprune.reparam.METHODS) is missing"
    assert snnprune.reparam.METHODS["toy_test"] is Toy
    base = load_recipe("digits_ann_lats", ["epochs=1", "data.limit=64", "batch_size=32"]).model_dump()
    pruning = {"method": "toy_test", "scale": 2.0, "final_threshold": 0.05}
    recipe = load_recipe({**base, "pruning": pruning})
    assert recipe.pruning.label == "toy_test / lats"
    result = train(recipe, tmp_path)
    assert result.history[-1]["threshold"] == 0.05 and result.history[-1]["sparsity"] > 0
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["recipe"]["pruning"]["scale"] == 2.0

    with pytest.raises(RecipeError, match="unknown pruning method 'toy_tset' .*did you mean 'toy_test'"):
        load_recipe({**base, "pruning": {"method": "toy_tset", "final_threshold": 0.05}})


LEGACY = ROOT / "tests" / "fixtures" / "legacy_run"


def test_a_run_folder_made_before_the_method_configs_resumes(tmp_path, data_home):
    """recipe.json and last.pt of a run made at 7f94dc1 (flat pruning section with every old
    default, stopped after its first step): resumed, it ends with the weights of a whole run."""
    import shutil

    run = tmp_path / "legacy"
    shutil.copytree(LEGACY, run)
    recipe = load_recipe(run / "recipe.json")
    assert load_checkpoint(run / "last.pt")["recipe"]["pruning"]["s_init"] == -3200.0  # the old flat section
    resumed = train(recipe, run, resume=True)
    assert not resumed.interrupted and [m["epoch"] for m in resumed.history] == [1]
    assert load_checkpoint(run / "last.pt")["global_step"] == 2
    # The fixture's first step was taken on another machine; a CPU with other kernels rounds that step
    # differently (by an ulp). Where this machine reproduces it, the resumed run must end bit for bit
    # on the whole run; elsewhere within float rounding (a wrongly read old default moves it by far more).
    probe = train(recipe, tmp_path / "whole", stop_after_steps=1)
    assert probe.interrupted
    fixture = load_checkpoint(LEGACY / "last.pt")["model"]
    here = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    same_first_step = all(torch.equal(fixture[k], here[k]) for k in fixture)
    train(recipe, tmp_path / "whole", resume=True)
    a, b = weights(tmp_path / "whole"), weights(run)
    assert a.keys() == b.keys()
    for k in a:
        if same_first_step:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_model_geometry_comes_from_the_data_set(tmp_path, data_home):
    base = load_recipe("digits_snn_lats").model_dump()
    recipe = load_recipe({**base, "epochs": 1, "batch_size": 32, "data": {**base["data"], "limit": 32},
                          "model": {"name": "sew_digits"}})  # no in_channels / input_size in the recipe
    train(recipe, tmp_path)
    final = torch.load(tmp_path / "final_model.pt", weights_only=True)
    assert final["model_kwargs"] == {"num_classes": 10, "in_channels": 2, "input_size": 24, "T": 4}


def test_the_engine_prints_nothing_and_sinks_see_the_run(tmp_path, data_home, capsys):
    from snnprune.engine import Sink

    class Recorder(Sink):
        def __init__(self):
            self.calls = []

        def on_start(self, info):
            self.calls.append(("start", info["resume"]))

        def on_epoch_end(self, metrics):
            self.calls.append(("epoch", metrics["epoch"]))

        def on_event(self, kind, fields):
            self.calls.append(("event", kind))

        def on_end(self, result):
            self.calls.append(("end", result.interrupted))

    recorder = Recorder()
    train(load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"]), tmp_path, sinks=[recorder])
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert recorder.calls == [("start", False), ("event", "start"), ("epoch", 1), ("event", "end"), ("end", False)]


def test_fresh_replaces_a_run_and_run_status_tells_what_a_folder_holds(tmp_path, data_home):
    from snnprune.runs import run_status

    small = ["epochs=1", "data.limit=32", "batch_size=32"]
    recipe = load_recipe("digits_snn_lats", small)
    assert run_status(tmp_path, recipe) == "empty"
    train(recipe, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert run_status(tmp_path, recipe) == "same"
    other = load_recipe("digits_snn_lats", [*small, "optim.lr=0.05"])
    assert run_status(tmp_path, other) == "other"
    train(other, tmp_path, fresh=True)
    assert run_status(tmp_path, other) == "same"
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files were removed
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(l)["kind"] == "start" for l in lines) == 1


def cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "snnprune", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, **kwargs)


def weights(run: Path) -> dict:
    return torch.load(run / "final_model.pt", weights_only=True)["model"]


# Static digits through a Poisson encoder: every step draws random numbers, so resuming must
# restore the random state exactly, not only the weights.
RESUME_ARGS = ["train", "digits_snn_lats", "--set", "epochs=3", "--set", "data.limit=320", "--set", "batch_size=16",
               "--set", "data.name=digits", "--set", "model.kwargs={in_channels=1, input_size=8, encoder='poisson'}"]


def test_kill_9_or_sigterm_then_resume_equals_the_uninterrupted_run_bit_for_bit(tmp_path, data_home):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    whole = cli(*RESUME_ARGS, "--out", str(tmp_path / "whole"), env=env)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()

    for how in (signal.SIGKILL, signal.SIGTERM):
        out = tmp_path / how.name
        run = cli(*RESUME_ARGS, "--out", str(out), env=env)
        deadline = time.time() + 300
        while not (out / "last.pt").exists() and time.time() < deadline:  # first epoch done
            time.sleep(0.05)
        time.sleep(0.3)  # into the second epoch
        run.send_signal(how)
        code = run.wait(timeout=120)
        if how == signal.SIGTERM:
            assert code == 130, run.stderr.read()
            assert "--resume" in run.stderr.read()
            saved = load_checkpoint(out / "last.pt")
            assert 0 < saved["global_step"]
        else:
            assert code == -signal.SIGKILL
        assert not (out / "final_model.pt").exists()
        resumed = cli(*RESUME_ARGS, "--out", str(out), "--resume", env=env)
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
        a, b = weights(tmp_path / "whole"), weights(out)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (how.name, key)


def test_torchrun_two_processes_agree_and_match_one_process(tmp_path, data_home):
    args = ["--set", "epochs=2", "--set", "data.limit=256", "--set", "batch_size=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "snnprune", "train", "digits_snn_lats", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    one = cli("train", "digits_snn_lats", *args, "--out", str(tmp_path / "one"), env=env)
    assert one.wait(timeout=600) == 0, one.stderr.read()

    def epochs(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [l for l in map(json.loads, lines) if l["kind"] == "epoch"]

    for e_two, e_one in zip(epochs("two"), epochs("one")):
        assert len(set(e_two["threshold_per_rank"])) == 1  # the same threshold on both ranks
        assert len(set(e_two["sparsity_per_rank"])) == 1  # and the same masks
        assert e_two["threshold"] == pytest.approx(e_one["threshold"], rel=1e-12)
        assert e_two["sparsity"] == pytest.approx(e_one["sparsity"], abs=0.03)


# -- bad input: one line on stderr, exit 2, nothing overwritten --------------------------------
def run_main(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err.strip().splitlines()


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    code, lines = run_main(["train", "dvs_gesture_sew_lats", "--set", f"data.root={tmp_path}", "--out",
                            str(tmp_path / "run")], capsys)
    assert code == 2 and len(lines) == 1
    assert "DVSGesture" in lines[0] and "data/README.md" in lines[0]


def test_unknown_builder_keyword_is_one_line(tmp_path, capsys, data_home):
    args = ["train", "digits_snn_lats", "--set", "model.kwargs.widht=2", "--out", str(tmp_path)]
    code, lines = run_main(args, capsys)
    assert code == 2 and len(lines) == 1 and "model.kwargs" in lines[0] and "widht" in lines[0]
    assert not (tmp_path / "last.pt").exists()


def test_unreadable_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    code, lines = run_main(["train", "digits_snn_lats", "--out", str(tmp_path), "--resume"], capsys)
    assert code == 2 and len(lines) == 1 and f"{tmp_path / 'last.pt'} is not a checkpoint" in lines[0]


def test_existing_run_is_not_overwritten(tmp_path, capsys, data_home):
    recipe = load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"])
    train(recipe, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    code, lines = run_main(["train", "digits_snn_lats", "--out", str(tmp_path)], capsys)
    assert code == 2 and len(lines) == 1 and "--resume" in lines[0]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before


def test_resume_with_a_different_recipe_is_refused(tmp_path, capsys, data_home):
    train(load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"]), tmp_path)
    args = ["train", "digits_snn_lats", "--set", "epochs=5", "--out", str(tmp_path), "--resume"]
    code, lines = run_main(args, capsys)
    assert code == 2 and len(lines) == 1 and "different recipe" in lines[0]


def extending_example(name: str) -> str:
    """The python block of a section of docs/extending.md."""
    import re

    page = (ROOT / "docs" / "extending.md").read_text()
    section = page.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_docs_metric_and_callback_example_runs_and_logs_its_keys(tmp_path, monkeypatch, data_home, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(extending_example("A metric or a callback"), "docs/extending.md", "exec"), namespace)
    result = namespace["result"]
    history = result.history
    peaks = [m["peak_sparsity"] for m in history]
    assert peaks == [max(m["sparsity"] for m in history[: i + 1]) for i in range(len(history))]
    assert all(m["weight_norm"] > 0 for m in history)
    logged = [json.loads(line) for line in (tmp_path / "runs/digits_metrics/metrics.jsonl").read_text().splitlines()]
    assert [m["peak_sparsity"] for m in logged if m["kind"] == "epoch"] == peaks
    assert load_checkpoint(tmp_path / "runs/digits_metrics/last.pt")["callbacks"]["PeakSparsity"] == {"peak": peaks[-1]}
    assert capsys.readouterr().out.split() == [str(history[-1]["weight_norm"]), str(peaks[-1])]

    # the metric and the callback belonged to that run: the next one in this process has neither
    plain = train(load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"]), tmp_path / "plain")
    assert "weight_norm" not in plain.final and "peak_sparsity" not in plain.final


def test_a_callbacks_state_is_saved_and_given_back_on_resume(tmp_path, data_home):
    from snnprune.engine import Callback

    class Steps(Callback):
        """Counts the optimizer steps of the whole run, across resumes."""

        def __init__(self):
            self.steps, self.loaded = 0, None

        def on_step(self, run, loss):
            self.steps += 1

        def on_epoch_end(self, run, metrics):
            metrics["steps_seen"] = self.steps

        def state_dict(self):
            return {"steps": self.steps}

        def load_state_dict(self, state):
            self.steps = self.loaded = state["steps"]

    recipe = load_recipe("digits_snn_lats", ["epochs=2", "data.limit=64", "batch_size=32"])  # 2 steps per epoch
    whole = train(recipe, tmp_path / "whole", callbacks=[Steps()])
    assert [m["steps_seen"] for m in whole.history] == [2, 4]
    first = Steps()
    assert train(recipe, tmp_path / "cut", callbacks=[first], stop_after_steps=3).interrupted
    again = Steps()
    resumed = train(recipe, tmp_path / "cut", callbacks=[again], resume=True)
    assert again.loaded == 3 and again.steps == 4
    assert [m["steps_seen"] for m in resumed.history] == [2, 4]


def test_a_run_declares_its_fields(tmp_path, data_home):
    from snnprune.engine import Callback

    class Stash(Callback):
        def on_start(self, run):
            run.my_batch = None  # a field Run does not declare

    with pytest.raises(AttributeError, match="my_batch"):
        train(load_recipe("digits_snn_lats", ["epochs=1", "data.limit=32", "batch_size=32"]), tmp_path,
              callbacks=[Stash()])
