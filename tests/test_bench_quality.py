"""The accuracy-against-sparsity benchmark's quick path runs end to end and writes its three files."""

from __future__ import annotations

import json

import pytest


def test_quality_bench_quick_path_runs(tmp_path, monkeypatch, load_bench):
    monkeypatch.setenv("SNNPRUNE_DATA", str(tmp_path / "data"))
    bench = load_bench("quality")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "quality.json").read_text())
    runs = result["runs"]
    assert {r["method"] for r in runs} == {"lats", "magnitude"}
    for r in runs:  # the target is met exactly, over every conv and linear weight
        assert abs(r["measured"] - 0.9) < 2e-3
        assert r["nonzero"] == sum(r["nnz_per_layer"].values())
        assert "at_reach" in r and r["reach_step"] <= r["total_steps"]  # the mask was frozen at the reach step
    assert "| LATS (λ controller) | " in (tmp_path / "quality.md").read_text()
    assert (tmp_path / "quality.png").stat().st_size > 1000
    # --resume takes the runs from the journal instead of training again
    journal = (tmp_path / "quality_runs.jsonl").read_text().splitlines()
    assert len(journal) == 2
    monkeypatch.setattr(bench, "run_one", lambda task: (_ for _ in ()).throw(AssertionError("ran again")))
    assert bench.main(["--quick", "--out", str(tmp_path), "--resume"]) == 0
    again = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in runs]
    # a journaled run is matched on its whole setting: another learning rate is another run
    with pytest.raises(AssertionError, match="ran again"):
        bench.main(["--quick", "--out", str(tmp_path), "--resume", "--lr", "0.02"])


def test_quality_bench_per_net_options(tmp_path, load_bench):
    bench = load_bench("quality")
    assert bench.per_model(["snn=adamw", "ann=sgd"], str, "--opt") == {"snn": "adamw", "ann": "sgd"}
    assert bench.per_model(["0.1", "snn=0.01"], float, "--lr") == {"snn": 0.01, "ann": 0.1}
    assert bench.keywords(["width=2", "neuron=lif"]) == {"width": 2, "neuron": "lif"}
    with pytest.raises(SystemExit, match="no value for ann"):
        bench.per_model(["snn=adamw"], str, "--opt")
