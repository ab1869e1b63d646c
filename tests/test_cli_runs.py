"""report, compare and export from the command line, on run folders made by short real runs."""

import json
import os

import pytest
import torch

from snnprune.cli import main
from snnprune.engine import train
from snnprune.recipe import load_recipe
from snnprune.report import PlotSink


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ("digits_snn_lats", "digits_ann_lats"):
        recipe = load_recipe(name, overrides=["epochs=1", "data.limit=96", "pruning.final_threshold=0.02"])
        out[name] = train(recipe, root / name, sinks=[PlotSink()]).run_dir  # as `snnprune train` does
    return out


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_counts_sops_for_the_snn_and_macs_for_its_twin(runs, capsys):
    code, out, _ = run_cli(capsys, "report", runs["digits_snn_lats"], "--json")
    snn = json.loads(out)
    assert code == 0 and snn["spiking"] and snn["sops"] > 0 and snn["macs"] == 0
    assert snn["layers"] and all(0 <= layer["sparsity"] <= 1 for layer in snn["layers"])
    code, out, _ = run_cli(capsys, "report", runs["digits_ann_lats"], "--json")
    ann = json.loads(out)
    assert not ann["spiking"] and ann["macs"] > 0 and ann["macs"] <= ann["dense_macs"]


def test_compare_gives_ratios_to_the_first_run_and_a_picture(runs, capsys, tmp_path):
    png = tmp_path / "cmp.png"
    code, out, _ = run_cli(capsys, "compare", runs["digits_snn_lats"], runs["digits_ann_lats"], "--json",
                           "--plot", png)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2
    assert rows[1]["energy_pj_ratio"] == pytest.approx(rows[1]["energy_pj"] / rows[0]["energy_pj"])
    assert rows[0]["sops_spike_ratio"] == rows[0]["sops_weight_ratio"] == 1.0  # the SNN against itself
    assert rows[1]["sops_spike_ratio"] is None  # an ANN has no SOPs to split
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.std() > 0


def assert_picture(png, min_height=200):
    """A PNG that matplotlib reads back, of a plausible size, with something drawn on it."""
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] >= min_height and image.shape[1] >= 600
    ink = (image[..., :3] < 0.9).any(-1).mean()  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.6, f"{png}: {ink:.1%} of the pixels are drawn on"


def test_a_run_folder_holds_its_training_curves_and_per_layer_sparsity(runs):
    for run_dir in runs.values():
        assert_picture(run_dir / "training_curves.png", min_height=500)
        assert_picture(run_dir / "layer_sparsity.png")
        assert not list(run_dir.glob(".*.tmp"))  # written through a temporary file, which is gone


def test_report_plot_draws_a_run_or_checkpoint_into_a_folder(runs, capsys, tmp_path):
    code, out, err = run_cli(capsys, "report", runs["digits_ann_lats"], "--plot", tmp_path / "pics", "--json")
    assert code == 0 and json.loads(out)["run"] == "digits_ann_lats" and "layer_sparsity.png" in err
    assert_picture(tmp_path / "pics" / "training_curves.png", min_height=500)
    assert_picture(tmp_path / "pics" / "layer_sparsity.png")
    code, out, _ = run_cli(capsys, "report", runs["digits_snn_lats"] / "last.pt", "--plot", tmp_path / "ckpt")
    assert code == 0 and (tmp_path / "ckpt" / "layer_sparsity.png").is_file()


def test_every_export_format_round_trips_or_names_the_layer(runs, capsys, tmp_path):
    from snnprune.export import load_sparse
    from snnprune.export.run import example_input
    from snnprune.models import create_model
    from snnprune.runs import load_run_model

    final = torch.load(runs["digits_snn_lats"] / "final_model.pt", weights_only=True)
    snn = runs["digits_snn_lats"]
    code, _, _ = run_cli(capsys, "export", snn, "--format", "state_dict", "--out", tmp_path / "a.pt")
    assert code == 0
    fresh = create_model(final["model_name"], twin=final["twin"], **final["model_kwargs"])
    fresh.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))  # strict
    trained, info = load_run_model(snn)
    x = example_input(info["recipe"], info["model_kwargs"])
    assert torch.equal(fresh.eval()(x), trained(x))
    code, out, _ = run_cli(capsys, "export", runs["digits_snn_lats"], "--format", "sparse", "--out", tmp_path / "b.pt")
    assert code == 0 and "of the dense state_dict" in out
    restored = load_sparse(tmp_path / "b.pt")
    assert all(torch.equal(restored[k], v) for k, v in final["model"].items())
    code, _, err = run_cli(capsys, "export", runs["digits_snn_lats"], "--format", "nir", "--out", tmp_path / "c.nir")
    import nir  # batch norm folded, max pooling as sum pools and thresholds: see tests/test_nir_interop.py

    assert code == 0 and {"features_0_conv", "features_2_sum", "fc"} <= set(nir.read(str(tmp_path / "c.nir")).nodes)


def test_a_checkpoint_that_runs_code_is_refused_everywhere(runs, capsys, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "model_name": "sew_digits"}, evil)
    for argv in (("report", evil), ("compare", evil), ("export", evil, "--format", "sparse", "--out", tmp_path / "x")):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and str(evil) in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_a_missing_run_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", tmp_path / "nothing")
    assert code == 2 and err.startswith("snnprune: no run folder")


def test_every_epoch_logs_operations_energy_and_firing_on_a_held_out_batch(runs):
    for name, key in (("digits_snn_lats", "sops_per_sample"), ("digits_ann_lats", "macs_per_sample")):
        lines = [json.loads(x) for x in (runs[name] / "metrics.jsonl").read_text().splitlines()]
        epoch = next(x for x in lines if x["kind"] == "epoch")
        assert epoch[key] > 0 and epoch["energy_pj_per_sample"] > 0 and "firing_rate" in epoch
        assert epoch["dense_macs_per_sample"] >= epoch["macs_per_sample"]
