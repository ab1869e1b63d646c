"""The channel_pruning family end to end: sparsity training on the BN scales, the cut at
``channels.prune_epoch`` (logged), fine-tuning of the smaller model; the ChannelSpec in the
checkpoints and final_model.pt, so that --resume (also after kill -9 on either side of the cut),
report and export rebuild the shrunk model; the recipe rules."""

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

from snnprune.channels import ChannelSpec, prune_channels
from snnprune.cli import main
from snnprune.engine import train
from snnprune.metrics import count_ops
from snnprune.models import create_model
from snnprune.recipe import Recipe, RecipeError, load_recipe
from snnprune.runs import load_checkpoint, load_run_model

ROOT = Path(__file__).resolve().parent.parent
# two epochs, the cut at the start of the second: six steps of sparsity training are too few for
# Optimal Thresholding to find dead channels, so these runs cut half of them by network slimming
SMALL = ["epochs=2", "channels.prune_epoch=1", "data.limit=96", "batch_size=16", "channels.l1=0.3",
         "channels.criterion='slimming'", "channels.percent=0.5"]


@pytest.fixture(autouse=True)
def _private_data(data_home):  # conftest's: the embedded digits, generated once for this module
    return data_home


@pytest.fixture(scope="module")
def ann_run(tmp_path_factory, data_home):
    out = tmp_path_factory.mktemp("runs") / "ann"
    result = train(load_recipe("digits_ann_channels", SMALL), out)
    return out, result


def events(run: Path, kind: str) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == kind]


def test_the_cut_happens_at_prune_epoch_is_logged_and_the_model_shrinks(ann_run):
    run, result = ann_run
    (cut,) = events(run, "channel_prune")
    assert cut["epoch"] == 1 and cut["step"] == 6  # 96 samples / 16 per step, one epoch of sparsity training
    assert cut["parameters_after"] < cut["parameters_before"]
    assert cut["dense_macs_per_sample_after"] < cut["dense_macs_per_sample_before"]
    assert cut["layers"] and all(0 < kept < original for kept, original in cut["layers"].values())
    (replaced,) = events(run, "model_replaced")
    assert replaced["parameters"] == cut["parameters_after"]
    epochs = result.history
    assert epochs[1]["dense_macs_per_sample"] == pytest.approx(cut["dense_macs_per_sample_after"])
    assert epochs[0]["dense_macs_per_sample"] == pytest.approx(cut["dense_macs_per_sample_before"])
    # every checkpoint after the cut holds the spec; the spec matches the logged widths
    spec = ChannelSpec.from_state(load_checkpoint(run / "last.pt")["family"]["channel_spec"])
    assert {n: list(w) for n, w in spec.widths().items() if w[0] < w[1]} == cut["layers"]


def test_final_model_rebuilds_the_shrunk_model_from_create_model_and_the_spec(ann_run):
    run, _ = ann_run
    final = torch.load(run / "final_model.pt", weights_only=True)
    dense = create_model(final["model_name"], twin=final["twin"], **final["model_kwargs"])
    n_dense = sum(p.numel() for p in dense.parameters())
    with pytest.raises(RuntimeError):
        dense.load_state_dict(final["model"])  # the builder's shapes no longer fit
    model = ChannelSpec.from_state(final["channel_spec"]).apply(dense)
    model.load_state_dict(final["model"], strict=True)
    assert sum(p.numel() for p in model.parameters()) < n_dense
    # the last checkpoint, rebuilt from its recipe and its spec, is the same network
    from_ckpt, _ = load_run_model(run / "last.pt")
    model.eval()
    x = torch.rand(4, 4, 2, 24, 24)
    with torch.no_grad():
        assert torch.equal(model(x), from_ckpt(x))


def test_the_family_cuts_what_optimal_thresholding_says_on_the_weights_before_the_cut(tmp_path):
    recipe = load_recipe("digits_ann_channels", [*SMALL[:4], "channels.l1=2.0"])  # strong: OT finds dead channels
    assert recipe.channels.criterion == "optimal"
    assert train(recipe, tmp_path / "run", stop_after_steps=6).interrupted  # the last step before the cut
    before, _ = load_run_model(tmp_path / "run" / "last.pt")
    expected = prune_channels(before, torch.zeros(4, 1, 2, 24, 24), "optimal", delta=recipe.channels.delta)[1]
    assert 0 < len(expected)
    train(recipe, tmp_path / "run", resume=True)
    final = torch.load(tmp_path / "run" / "final_model.pt", weights_only=True)
    assert ChannelSpec.from_state(final["channel_spec"]).layers == expected.layers


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_and_export_read_the_shrunk_model(ann_run, capsys, tmp_path):
    run, _ = ann_run
    final = torch.load(run / "final_model.pt", weights_only=True)
    code, out, err = run_cli(capsys, "report", run, "--json")
    assert code == 0, err
    report = json.loads(out)
    shapes = {layer["name"]: layer["shape"] for layer in report["layers"]}
    assert shapes == {k[: -len(".weight")]: list(v.shape) for k, v in final["model"].items()
                      if k[: -len(".weight")] in shapes and k.endswith(".weight")}
    dense = create_model(final["model_name"], twin=final["twin"], **final["model_kwargs"])
    assert report["dense_macs"] < count_ops(dense, torch.zeros(4, 1, 2, 24, 24)).dense_macs
    code, _, err = run_cli(capsys, "export", run, "--format", "state_dict", "--out", tmp_path / "a.pt")
    assert code == 0, err
    exported = torch.load(tmp_path / "a.pt", weights_only=True)
    assert exported.keys() == final["model"].keys()
    assert all(torch.equal(exported[k], final["model"][k]) for k in exported)
    code, _, err = run_cli(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "a.onnx")
    assert code == 0, err
    assert (tmp_path / "a.onnx").stat().st_size > 0


def test_in_process_resume_on_either_side_of_the_cut_is_bit_for_bit(tmp_path):
    recipe = load_recipe("digits_ann_channels", [*SMALL, "epochs=3"])
    whole = train(recipe, tmp_path / "whole")
    a = torch.load(tmp_path / "whole" / "final_model.pt", weights_only=True)
    for stop in (3, 9):  # in the epoch before the cut; in the first fine-tuning epoch
        out = tmp_path / f"stop{stop}"
        assert train(recipe, out, stop_after_steps=stop).interrupted
        train(recipe, out, resume=True)
        b = torch.load(out / "final_model.pt", weights_only=True)
        assert a["channel_spec"] == b["channel_spec"]
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), stop
    assert whole.history[-1]["epoch"] == 3


def test_restart_lr_runs_the_schedule_afresh_in_each_phase_and_resumes_exactly(tmp_path):
    recipe = load_recipe("digits_ann_channels", [*SMALL, "epochs=3", "channels.restart_lr=true"])
    whole = train(recipe, tmp_path / "whole")
    lr = [h["lr"] for h in whole.history]  # cosine over 1 epoch, then afresh over 2 (12 steps)
    assert lr == pytest.approx([0.0, 0.05, 0.0], abs=1e-12)
    assert train(recipe, tmp_path / "cut", stop_after_steps=9).interrupted  # in the fine-tuning phase
    resumed = train(recipe, tmp_path / "cut", resume=True)
    assert [h["lr"] for h in resumed.history] == lr
    a = torch.load(tmp_path / "whole" / "final_model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "final_model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# The SNN on event frames, through the command line: killed with SIGKILL once before the cut
# (resumes from a checkpoint of the full model and makes the cut itself) and once after it
# (resumes from a checkpoint of the shrunk model, rebuilt from create_model + spec).
KILL_SETTINGS = ["epochs=4", "channels.prune_epoch=2", "data.limit=64", "batch_size=16", "data.T=2", *SMALL[4:]]
KILL_ARGS = ["train", "digits_snn_channels", *[x for s in KILL_SETTINGS for x in ("--set", s)]]


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, "-m", "snnprune", *KILL_ARGS, *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(run: Path, epoch: int, proc) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run / "last.pt").exists():
            try:
                if load_checkpoint(run / "last.pt")["epoch"] >= epoch:
                    return
            except ValueError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {run}")


@pytest.mark.slow
def test_a_digits_snn_channel_run_resumes_exactly_after_kill_9_on_either_side_of_the_cut(tmp_path):
    whole = _cli("--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    assert "epoch 3: channels cut (slimming)" in whole.stdout.read()  # the console says when the model shrank
    a = torch.load(tmp_path / "whole" / "final_model.pt", weights_only=True)
    assert a["channel_spec"] is not None
    for after_epoch, side in ((1, "before"), (3, "after")):
        out = tmp_path / side
        run = _cli("--out", str(out))
        _wait_for_checkpoint(out, after_epoch, run)  # then at once: in the next epoch
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=60) == -signal.SIGKILL
        assert not (out / "final_model.pt").exists()
        saved = load_checkpoint(out / "last.pt")
        assert (saved["family"]["channel_spec"] is None) == (side == "before")
        resumed = _cli("--out", str(out), "--resume")
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
        b = torch.load(out / "final_model.pt", weights_only=True)
        assert a["channel_spec"] == b["channel_spec"]
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (side, key)
        assert events(out, "channel_prune")[-1]["layers"] == events(tmp_path / "whole", "channel_prune")[0]["layers"]


def test_subgradient_mode_adds_the_l1_term_to_the_loss(tmp_path):
    base = ["epochs=2", "channels.prune_epoch=1", "data.limit=48", "batch_size=16"]
    gammas = {}
    for mode, l1 in (("none", 0.0), ("subgradient", 0.05)):
        recipe = load_recipe("digits_ann_channels", [*base, "channels.proximal=false", f"channels.l1={l1}"])
        train(recipe, tmp_path / mode, stop_after_steps=3)
        state = load_checkpoint(tmp_path / mode / "last.pt")["model"]
        gammas[mode] = sum(v.abs().sum() for k, v in state.items() if k.endswith("bn.weight"))
    assert gammas["subgradient"] < gammas["none"]


BASE = {"name": "x", "family": "channel_pruning", "epochs": 3, "batch_size": 8, "model": {"name": "sew_digits"},
        "data": {"name": "digits_dvs"}}


@pytest.mark.parametrize("change, message", [
    ({"channels": None}, "needs a channels section"),
    ({"pruning": {"method": "soft_threshold", "final_threshold": 0.1}},
     "pruning.method='soft_threshold' prunes, family 'channel_pruning' does not"),
    ({"channels": {"prune_epoch": 3}}, "channels.prune_epoch=3 must be smaller than epochs=3 .* add --set "
                                       "channels.prune_epoch=2"),
    ({"channels": {"prune_epoch": 1, "criterion": "slimming"}}, "needs channels.percent"),
    ({"channels": {"prune_epoch": 1, "percent": 0.5}}, "goes with channels.criterion='slimming'"),
    ({"family": "dense", "pruning": {"method": "none"}},
     "the channels section belongs to family 'channel_pruning', not 'dense'"),
    ({"channels": {"prune_epoch": 2, "restart_lr": True}, "lr_schedule": {"warmup_epochs": 1}},
     "than each phase with channels.restart_lr"),
])
def test_recipe_rules_of_the_channel_family(change, message):
    data = {**BASE, "channels": {"prune_epoch": 1}, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        Recipe.model_validate(data)
    ok = Recipe.model_validate({**BASE, "channels": {"prune_epoch": 1}})
    assert ok.pruning.method == "none" and ok.channels.criterion == "optimal" and ok.channels.delta == 1e-3


def test_weight_pruning_on_the_channel_family_is_one_line_from_the_command_line(capsys):
    code = main(["train", "digits_snn_channels", "--set", "pruning={method='soft_threshold', final_threshold=0.1}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "family 'channel_pruning' does not" in err and "add --set 'pruning={method=\"none\"}'" in err
    with pytest.raises(RecipeError):
        load_recipe("digits_snn_channels", ["channels.prune_epoch=12"])


@pytest.mark.slow
def test_under_torchrun_both_ranks_make_the_same_cut_and_ddp_is_rebuilt(tmp_path):
    # DDP checks at construction that every rank's parameters have the same shapes: a rank that cut
    # differently would fail the rebuild after the cut
    sets = ["epochs=2", "channels.prune_epoch=1", "data.limit=128", "batch_size=32", *SMALL[4:]]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523",
         "-m", "snnprune", "train", "digits_ann_channels", *[x for s in sets for x in ("--set", s)],
         "--out", str(tmp_path / "two")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    (cut,) = events(tmp_path / "two", "channel_prune")
    assert cut["parameters_after"] < cut["parameters_before"]
    model, info = load_run_model(tmp_path / "two")
    assert sum(p.numel() for p in model.parameters()) == cut["parameters_after"]
