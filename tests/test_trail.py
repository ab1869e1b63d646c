"""The trail: each time the sparsity over the pruned layers passes a new 5% step, the run folder
gets a finalized model (the format of final_model.pt) and an entry in trail.json; resuming keeps
the listing of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from snnprune.engine import train
from snnprune.engine.trail import level, read_trail
from snnprune.metrics import sparsity
from snnprune.models import create_model
from snnprune.recipe import load_recipe

# l0 = 1: a strong push, so three short epochs pass several 5% steps
LTP = ["epochs=3", "data.limit=48", "batch_size=16", "pruning.l0=1.0"]


@pytest.fixture(scope="module", autouse=True)
def _private_data(data_home):  # tests/conftest.py
    return data_home


@pytest.fixture(scope="module")
def ltp_run(tmp_path_factory, data_home):
    out = tmp_path_factory.mktemp("ltp") / "whole"
    train(load_recipe("digits_snn_ltp", LTP), out)
    return out


def test_the_5_percent_steps():
    assert [level(s) for s in (0.0, 0.0499, 0.05, 0.15, 0.1999, 0.995)] == [0, 0, 5, 15, 15, 95]


def test_ltp_run_leaves_a_trail_of_ever_sparser_models(ltp_run):
    entries = read_trail(ltp_run)
    assert len(entries) >= 2
    levels = [e["level"] for e in entries]
    assert levels == sorted(set(levels)) and levels[0] >= 5
    assert [e["epoch"] for e in entries] == sorted({e["epoch"] for e in entries})
    history = {h["epoch"]: h for h in json.loads("[" + ",".join(
        line for line in (ltp_run / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line) + "]")}
    for e in entries:
        assert level(e["sparsity"]) == e["level"]
        assert e["test_acc"] == history[e["epoch"]]["test_acc"]
        assert e["step"] == 3 * e["epoch"]  # 48 samples, batch 16
        payload = torch.load(ltp_run / e["file"], weights_only=True)
        model = create_model(payload["model_name"], twin=payload["twin"], **payload["model_kwargs"])
        model.load_state_dict(payload["model"])  # strict
        # no layer kept dense: the pruned layers are every conv/linear weight
        assert sparsity(model).total == pytest.approx(e["sparsity"], abs=1e-12)
        assert payload["sparsity"] == e["sparsity_total"] == pytest.approx(e["sparsity"], abs=1e-12)
    final = torch.load(ltp_run / "final_model.pt", weights_only=True)
    assert set(final) <= set(torch.load(ltp_run / entries[0]["file"], weights_only=True))  # same format, and more
    events = [json.loads(line) for line in (ltp_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["level"] for e in events if e["kind"] == "trail"] == levels


def test_snnprune_report_and_export_read_a_trail_file(ltp_run, capsys, tmp_path):
    from snnprune.cli import main

    entry = read_trail(ltp_run)[-1]
    assert main(["report", str(ltp_run / entry["file"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sparsity"] == pytest.approx(entry["sparsity_total"], abs=1e-12)
    assert report["recipe"] == "digits_snn_ltp"
    assert report["test_acc"] == entry["test_acc"]  # the file's own epoch, not the run's last
    out = tmp_path / "picked.pt"
    assert main(["export", str(ltp_run / entry["file"]), "--format", "state_dict", "--out", str(out)]) == 0
    exported = torch.load(out, weights_only=True)
    picked = torch.load(ltp_run / entry["file"], weights_only=True)["model"]
    state = exported.get("model", exported)
    assert all(torch.equal(state[k], picked[k]) for k in picked)


def test_resume_keeps_the_trail_of_an_uninterrupted_run(ltp_run, tmp_path):
    recipe = load_recipe("digits_snn_ltp", LTP)
    cut = tmp_path / "cut"
    assert train(recipe, cut, stop_after_steps=4).interrupted  # in the second epoch
    # as if killed after the trail of epoch 2 was written and before its last.pt: a stale entry
    stale = {"level": 95, "epoch": 2, "step": 6, "sparsity": 0.95, "sparsity_total": 0.95, "test_acc": 0.0,
             "file": "trail/sparsity_95.pt"}
    listing = json.loads((cut / "trail.json").read_text())
    listing["entries"].append(stale)
    (cut / "trail.json").write_text(json.dumps(listing))
    (cut / stale["file"]).write_bytes(b"stale")
    train(recipe, cut, resume=True)
    assert read_trail(cut) == read_trail(ltp_run)
    assert not (cut / stale["file"]).exists()
    for entry in read_trail(cut):
        a = torch.load(cut / entry["file"], weights_only=True)["model"]
        b = torch.load(ltp_run / entry["file"], weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_trail_is_a_recipe_option_of_every_method(tmp_path):
    assert load_recipe("digits_snn_ltp").pruning.trail and not load_recipe("digits_ann_gmp").pruning.trail
    assert not load_recipe("digits_snn_ltp", ["pruning.trail=false"]).pruning.trail
    # off by default for the other methods: tests/test_method_runs.py checks their run folders
    gmp = ["epochs=2", "data.limit=48", "batch_size=16", "pruning.start_epoch=0", "pruning.end_epoch=2",
           "pruning.update_every=1", "pruning.trail=true"]
    train(load_recipe("digits_ann_gmp", gmp), tmp_path / "on")
    entries = read_trail(tmp_path / "on")
    assert entries and entries[-1]["level"] == level(entries[-1]["sparsity"]) >= 45
