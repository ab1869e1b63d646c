"""The pictures: training curves of any history (dense, resumed, empty), the layers of a model, and
the curves a killed run leaves behind."""

import json

import matplotlib.image
import pytest
import torch

from snnprune.engine import train
from snnprune.models import create_model
from snnprune.recipe import load_recipe
from snnprune.report.plots import (
    CURVES_PNG,
    LAYERS_PNG,
    PlotSink,
    history_by_epoch,
    layer_rows,
    plot_layer_sparsity,
    plot_training,
)


def ink(png) -> float:
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    return float((image[..., :3] < 0.9).any(-1).mean())


def test_a_replayed_epoch_is_drawn_once_with_its_last_values():
    history = [{"epoch": 1, "test_acc": 0.1}, {"epoch": 2, "test_acc": 0.2}, {"epoch": 2, "test_acc": 0.3},
               {"epoch": 3, "test_acc": 0.4}]
    assert [h["test_acc"] for h in history_by_epoch(history)] == [0.1, 0.3, 0.4]


@pytest.mark.parametrize("history", [
    [],  # a run killed before its first epoch ended
    [{"epoch": e, "train_acc": 0.1 * e, "test_acc": 0.1 * e, "train_loss": 2 / e, "test_loss": 2 / e, "sparsity": 0.0,
      "sops_per_sample": 1e5 * e, "macs_per_sample": 0.0, "dense_macs_per_sample": 6e6} for e in (1, 2, 3)],  # dense
    [{"epoch": e, "test_acc": 0.5, "sparsity": 0.9, "threshold": None, "regrowth": 0.01,
      "macs_per_sample": float("nan")} for e in (1, 2)],  # a method without a threshold, a NaN
], ids=["empty", "dense", "no-threshold"])
def test_training_curves_draw_whatever_a_run_logged(history, tmp_path):
    out = plot_training(history, tmp_path / "c.png", title="t")
    assert out == tmp_path / "c.png" and ink(out) > 0.01


def test_layer_sparsity_lists_every_conv_and_linear_layer(tmp_path):
    model = create_model("sew_digits")
    with torch.no_grad():
        model.body.fc.weight.zero_()
    rows = layer_rows(model)
    assert [r["name"] for r in rows][-1] == "body.fc" and rows[-1]["sparsity"] == 1.0
    assert rows[-1]["shape"] == list(model.body.fc.weight.shape) and all(r["sparsity"] == 0 for r in rows[:-1])
    assert ink(plot_layer_sparsity(rows, tmp_path / "l.png")) > 0.02


@pytest.mark.slow  # three short runs of the digits SNN
def test_a_killed_run_keeps_the_curves_of_its_finished_epochs_and_resuming_redraws_them(tmp_path):
    recipe = load_recipe("digits_snn_lats", overrides=["epochs=2", "data.limit=96"])  # 2 steps an epoch
    run = tmp_path / "run"
    result = train(recipe, run, sinks=[PlotSink()], stop_after_steps=3)
    assert result.interrupted and not (run / "final_model.pt").exists()
    assert ink(run / CURVES_PNG) > 0.02
    assert ink(run / LAYERS_PNG) > 0.02  # drawn from last.pt
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [1]

    def drawn():
        return {png: (run / png).stat().st_mtime_ns for png in (CURVES_PNG, LAYERS_PNG)}

    killed = drawn()
    assert not train(recipe, run, resume=True, sinks=[PlotSink()]).interrupted
    finished = drawn()
    assert all(finished[png] > killed[png] for png in killed)  # epoch 2 and the final model drawn
    train(recipe, run, resume=True, sinks=[PlotSink()])  # complete already: trains nothing, draws nothing
    assert drawn() == finished


def test_a_picture_that_cannot_be_drawn_warns_and_the_run_goes_on(tmp_path):
    sink = PlotSink()
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "epoch", "epoch": 1, "test_acc": 0.5}) + "\n")
    (tmp_path / CURVES_PNG).mkdir()  # a folder where the picture should go
    sink.on_start({"run_dir": tmp_path, "recipe": load_recipe("digits_snn_lats")})
    with pytest.warns(UserWarning, match="could not draw training_curves.png"):
        sink.on_epoch_end({"epoch": 1})
