"""The accuracy-against-sparsity benchmark: its quick path tunes every row on a validation split,
runs torchao's PAT through its own API and writes its files; a journaled run is not run again."""

from __future__ import annotations

import json

import pytest


def _own(knobs: dict) -> dict:
    """A row's knobs without the D it takes from the LATS row."""
    return {k: v for k, v in knobs.items() if k != "lats_threshold"}


@pytest.mark.slow  # importing torchao takes seconds
def test_quality_bench_quick_path_runs(tmp_path, monkeypatch, load_bench):
    monkeypatch.setenv("SNNPRUNE_DATA", str(tmp_path / "data"))
    bench = load_bench("quality")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "quality.json").read_text())
    runs = result["runs"]
    tune = [r for r in runs if r["phase"] == "tune"]
    final = [r for r in runs if r["phase"] == "final"]
    assert {r["method"] for r in final} == {"lats", "magnitude", "pat"}
    # the budget: two settings of each row's own knobs, scored on the validation split
    for method in ("lats", "magnitude", "pat"):
        tried = [r for r in tune if r["method"] == method]
        assert [_own(r["knobs"]) for r in tried] == bench.GRIDS[method][:2]
        assert all(0 <= r["val_accuracy"] <= 1 for r in tried)
        (row,) = [r for r in final if r["method"] == method]
        assert row["knobs"] == bench.choose(tried, 0.9)["knobs"]  # reported at the setting chosen on val
    for r in final:
        if r["method"] != "pat":  # the snnprune rows meet the target exactly, over every conv and linear weight
            assert abs(r["measured"] - 0.9) < 2e-3
        assert r["nonzero"] == sum(r["nnz_per_layer"].values())
        assert r["ops_per_sample"] > 0 and r["energy_pj_per_sample"] > 0
        assert "at_reach" in r and r["reach_step"] <= r["total_steps"]  # the mask was frozen at the reach step
    # PAT: λ is LATS's threshold over the learning rates summed to the reach step; its own sparsity is reported
    (pat,) = [r for r in final if r["method"] == "pat"]
    assert pat["reg_lambda"] > 0 and 0.0 < pat["measured"] < 1.0
    md = (tmp_path / "quality.md").read_text()
    assert "| LATS (λ controller) | " in md and "| torchao PAT (ProxLasso, λ from LATS) | " in md
    assert "## Tuning" in md
    for png in ("quality.png", "quality_pareto.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # --resume takes the runs from the journal instead of training again
    journal = (tmp_path / "quality_runs.jsonl").read_text().splitlines()
    assert len(journal) == len(runs) == 9
    monkeypatch.setattr(bench, "run_one", lambda task: (_ for _ in ()).throw(AssertionError("ran again")))
    assert bench.main(["--quick", "--out", str(tmp_path), "--resume"]) == 0
    again = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in runs]
    # a journaled run is matched on its whole setting: another learning rate is another run
    with pytest.raises(AssertionError, match="ran again"):
        bench.main(["--quick", "--out", str(tmp_path), "--resume", "--lr", "0.02"])


def test_quality_bench_chooses_on_target_by_validation(load_bench):
    bench = load_bench("quality")
    runs = [{"knobs": {"a": 1}, "measured": 0.99, "val_accuracy": 0.80},
            {"knobs": {"a": 2}, "measured": 0.97, "val_accuracy": 0.95},  # better, but off target: not chosen
            {"knobs": {"a": 3}, "measured": 0.9899, "val_accuracy": 0.85},  # within ON_TARGET
            {"knobs": {"a": 4}, "measured": 0.991, "val_accuracy": 0.85}]  # a tie goes to the earlier setting
    assert bench.choose(runs, 0.99)["knobs"] == {"a": 3}
    # none on target: the best of the sparsest (a schedule that falls short by the same amount in every setting)
    short = [{"knobs": {"a": 5}, "measured": 0.9866, "val_accuracy": 0.70},
             {"knobs": {"a": 6}, "measured": 0.9866, "val_accuracy": 0.86},
             {"knobs": {"a": 7}, "measured": 0.97, "val_accuracy": 0.95}]
    assert bench.choose(short, 0.99)["knobs"] == {"a": 6}


def test_quality_bench_validation_split_is_held_out(tmp_path, monkeypatch, load_bench):
    monkeypatch.setenv("SNNPRUNE_DATA", str(tmp_path / "data"))
    bench = load_bench("quality")
    data = bench.load_data("digits", 4, None)
    (x, y), (xf, yf), (xv, yv) = data["train"], data["fit"], data["val"]
    assert len(yf) + len(yv) == len(y) and abs(len(yv) / len(y) - bench.VAL_FRACTION) < 0.01
    # every validation sample is a training sample that the fit split does not hold
    train = {tuple(v.flatten().tolist()) for v in x}
    fit = {tuple(v.flatten().tolist()) for v in xf}
    assert all(tuple(v.flatten().tolist()) in train for v in xv)
    assert not any(tuple(v.flatten().tolist()) in fit for v in xv)
    assert set(yv.tolist()) == set(y.tolist())  # stratified: every class in both


def test_quality_bench_per_net_options(tmp_path, load_bench):
    bench = load_bench("quality")
    assert bench.per_model(["snn=adamw", "ann=sgd"], str, "--opt") == {"snn": "adamw", "ann": "sgd"}
    assert bench.per_model(["0.1", "snn=0.01"], float, "--lr") == {"snn": 0.01, "ann": 0.1}
    assert bench.keywords(["width=2", "neuron=lif"]) == {"width": 2, "neuron": "lif"}
    with pytest.raises(SystemExit, match="no value for ann"):
        bench.per_model(["snn=adamw"], str, "--opt")
    # every row has a budget of the same size, its default first
    sizes = {len(grid) for method, grid in bench.GRIDS.items() if method != "dense"}
    assert sizes == {4}


@pytest.mark.slow
def test_quality_bench_sensitivity_row_probes_on_validation(tmp_path, monkeypatch, load_bench):
    monkeypatch.setenv("SNNPRUNE_DATA", str(tmp_path / "data"))
    bench = load_bench("quality")
    assert bench.main(["--out", str(tmp_path), "--methods", "lats_sens", "--epochs", "1", "--limit", "128",
                       "--seeds", "0", "--sparsities", "0.9", "--models", "ann", "--procs", "1", "--budget", "1"]) == 0
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    (probe,) = [r for r in runs if r["method"] == "dense"]
    assert probe["phase"] == "tune" and "val_accuracy" in probe  # trained on the fit split, probed on val
    sens = json.loads((tmp_path / "quality_sensitivity_ann" / "sensitivity.json").read_text())
    assert sens["baseline"] == pytest.approx(probe["val_accuracy"])
    (row,) = [r for r in runs if r["method"] == "lats_sens"]
    assert row["knobs"]["allocation"] == f"sensitivity:{probe['sensitivity_json']}"
    assert row["measured"] > 0.85
