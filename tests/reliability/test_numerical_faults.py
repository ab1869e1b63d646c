"""A NaN or infinite loss, gradient or threshold stops the run with one line naming the step and the
quantity and exit code 3, and no checkpoint ever holds a non-finite weight; ``on_nonfinite = "skip"``
skips such batches instead, counted and logged."""

from __future__ import annotations

import json
import math

import pytest
import torch
from faults import run_main

from snnprune.engine import NonFiniteError, train
from snnprune.engine import trainer as trainer_module
from snnprune.pruner import Pruner
from snnprune.recipe import load_recipe
from snnprune.runs import first_nonfinite, load_checkpoint

SMALL = ["epochs=2", "data.limit=64", "batch_size=16"]  # 4 optimizer steps per epoch


def all_finite(run_dir) -> None:
    for path in run_dir.glob("*.pt"):
        state = load_checkpoint(path)
        assert first_nonfinite(state["model"]) is None, path


class Snapshot:
    """A sink keeping the bytes of last.pt and best.pt as they are at the end of every epoch."""

    def __init__(self, run_dir):
        self.run_dir, self.epochs = run_dir, []

    def on_epoch_end(self, metrics):
        self.epochs.append({p.name: p.read_bytes() for p in self.run_dir.glob("*.pt")})


def poison_forward(monkeypatch, steps: set[int], how: str) -> None:
    """Make training step ``s`` (1-based, counted over the whole run) of ``steps`` go wrong:
    ``loss`` -> the loss is NaN, ``grad`` -> finite loss whose gradient is NaN, ``input`` -> the
    batch holds a NaN (the batch-norm running statistics see it too)."""
    original = trainer_module.forward
    count = {"n": 0}

    class NanGrad(torch.autograd.Function):  # adds 0 to the loss; its gradient is NaN everywhere
        @staticmethod
        def forward(ctx, x):
            ctx.shape = x.shape
            return x.sum() * 0

        @staticmethod
        def backward(ctx, grad):
            return torch.full(ctx.shape, math.nan)

    def forward(net, x, y, criterion, amp_dtype=None):
        if not net.training:
            return original(net, x, y, criterion, amp_dtype)
        count["n"] += 1
        bad = count["n"] in steps
        if bad and how == "input":
            x = x.clone()
            x.view(-1)[0] = math.nan
        out, loss = original(net, x, y, criterion, amp_dtype)
        if bad and how == "loss":
            loss = loss * math.nan
        if bad and how == "grad":
            loss = loss + NanGrad.apply(out)
        return out, loss

    monkeypatch.setattr(trainer_module, "forward", forward)


def test_lr_1e30_stops_at_the_step_it_diverges_with_exit_3_and_writes_no_checkpoint(tmp_path, capsys, data_home):
    out = tmp_path / "run"
    args = ["train", "digits_ann_lats", *[a for s in SMALL for a in ("--set", s)], "--set", "optim.lr=1e30"]
    code, lines = run_main([*args, "--out", out], capsys)
    assert code == 3 and len(lines) == 1, lines
    assert "step 2 (epoch 1): the loss is nan" in lines[0] and "no checkpoint was written" in lines[0]
    assert not list(out.glob("*.pt"))  # not last.pt, best.pt or final_model.pt
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "nonfinite" and "step 2" in events[-1]["message"]


@pytest.mark.parametrize("how, named", [("loss", "the loss is nan"), ("grad", "the gradient of 'body.")])
def test_a_nan_in_epoch_2_stops_there_and_the_epoch_1_checkpoints_stay_byte_for_byte(
        how, named, tmp_path, monkeypatch, data_home):
    poison_forward(monkeypatch, {6}, how)  # the second step of epoch 2
    snapshot = Snapshot(tmp_path)
    with pytest.raises(NonFiniteError) as info:
        train(load_recipe("digits_ann_lats", SMALL), tmp_path, sinks=[snapshot])
    message = str(info.value)
    assert "\n" not in message and message.startswith("step 6 (epoch 2): ") and named in message
    assert "last good checkpoint" in message and "(epoch 1)" in message
    assert len(snapshot.epochs) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == snapshot.epochs[0]  # nothing rewritten
    assert not (tmp_path / "final_model.pt").exists()
    all_finite(tmp_path)
    # and the run resumes from the last good checkpoint once the fault is gone
    monkeypatch.undo()
    result = train(load_recipe("digits_ann_lats", SMALL), tmp_path, resume=True)
    assert [m["epoch"] for m in result.history] == [1, 2] and (tmp_path / "final_model.pt").exists()


def test_an_infinite_threshold_stops_the_run(tmp_path, monkeypatch, data_home):
    real = Pruner.threshold

    def threshold(self):
        return math.inf if self.steps >= 3 else real.fget(self)

    monkeypatch.setattr(Pruner, "threshold", property(threshold))
    with pytest.raises(NonFiniteError, match=r"^step 3 \(epoch 1\): the pruning threshold is inf"):
        train(load_recipe("digits_ann_lats", SMALL), tmp_path)
    assert not list(tmp_path.glob("*.pt"))


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch, data_home):
    """Whatever slipped past the step checks, the check before every save catches it."""
    real = Pruner.step

    def step(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if self.steps == 4:  # the last step of epoch 1, just before its checkpoints
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = math.inf

    monkeypatch.setattr(Pruner, "step", step)
    with pytest.raises(NonFiniteError, match=r"^end of epoch 1: the model's '.*' is not finite, not saved"):
        train(load_recipe("digits_ann_lats", SMALL), tmp_path)
    assert not list(tmp_path.glob("*.pt"))


def test_skip_mode_skips_poisoned_batches_counts_and_logs_them(tmp_path, monkeypatch, data_home):
    poison_forward(monkeypatch, {2, 7}, "input")  # one batch in each epoch, NaN in the input
    recipe = load_recipe("digits_ann_lats", [*SMALL, "on_nonfinite='skip'"])
    result = train(recipe, tmp_path)
    assert [m["skipped_batches"] for m in result.history] == [1, 1]
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e["kind"] == "skipped_batch"]
    assert [(e["epoch"], e["step"]) for e in skipped] == [(1, 2), (2, 7)] and skipped[0]["problem"].startswith("the ")
    # the batch-norm statistics the poisoned forward touched were put back: everything finite
    all_finite(tmp_path)
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["test_loss"]) for m in result.history)
    assert load_checkpoint(tmp_path / "last.pt")["global_step"] == 8  # skipped batches still count as steps


def test_skip_mode_resumes_bit_for_bit(tmp_path, monkeypatch, data_home):
    recipe = load_recipe("digits_ann_lats", [*SMALL, "on_nonfinite='skip'"])
    poison_forward(monkeypatch, {3, 6}, "loss")
    train(recipe, tmp_path / "whole")
    poison_forward(monkeypatch, {3, 6}, "loss")  # a fresh count
    assert train(recipe, tmp_path / "cut", stop_after_steps=4).interrupted
    poison_forward(monkeypatch, {2}, "loss")  # step 6 of the run is the second of this call
    train(recipe, tmp_path / "cut", resume=True)
    a = torch.load(tmp_path / "whole" / "final_model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "final_model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stuck_run_in_skip_mode_still_stops(tmp_path, capsys, data_home):
    args = ["train", "digits_ann_lats", *[a for s in SMALL for a in ("--set", s)], "--set", "optim.lr=1e30",
            "--set", "on_nonfinite='skip'", "--out", tmp_path]
    code, lines = run_main(args, capsys)
    assert code == 3 and len(lines) == 1 and "every batch was skipped" in lines[0], lines
    all_finite(tmp_path)
