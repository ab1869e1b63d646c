"""Every script in examples/ runs on tiny settings and does what its docstring says."""

import runpy
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *argv):
    """Import ``examples/<name>.py`` and call its ``main`` with ``argv``; return what it returns."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"](list(argv))


def test_every_example_is_tested_and_shown_in_the_docs():
    scripts = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    tested = Path(__file__).read_text()
    page = (EXAMPLES.parent / "docs" / "examples.md").read_text()
    for name in scripts:
        assert f'run_example("{name}"' in tested, name
        assert f"../examples/{name}.py" in page, name


@pytest.mark.slow
def test_a_wrapped_spikingjelly_model_ends_at_the_sparsity_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_example("wrap_spikingjelly_model", "--steps", "2", "--sparsity", "0.5")
    assert result["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert 0.0 <= result["test_acc"] <= 1.0


@pytest.mark.slow
def test_ltp_raises_its_thresholds_and_prunes_an_ann(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_example("prune_ann_ltp", "--steps", "2")
    assert all(tau > 0 for tau in result["thresholds"].values())  # from tau_init = 0, pushed up by the L0 term
    assert 0.0 < result["sparsity"] < 1.0


@pytest.mark.slow
def test_the_snn_counts_synaptic_operations_and_its_twin_macs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = run_example("snn_vs_twin", "--steps", "2")
    snn, twin = rows["SNN"], rows["ANN twin"]
    assert snn["sops"] > 0 and twin["sops"] == 0 and twin["macs"] > 0
    assert twin["energy_pj"] > snn["energy_pj"]


@pytest.mark.slow
def test_channel_pruning_shrinks_the_model_and_the_export_reloads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_example("channel_prune_export", "--steps", "2", "--criterion", "slimming", "--out", str(tmp_path))
    assert result["params_after"] < result["params_before"]
    model, fresh = result["model"].eval(), result["fresh"].eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(result["example"]), model(result["example"]))
    assert result["onnx"].is_file() and (tmp_path / "sew_digits.sparse.pt").is_file()


@pytest.mark.slow
def test_the_amp_and_ema_loop_prunes_the_model_and_its_average(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_example("amp_ema_loop", "--steps", "2", "--accumulate", "2")
    assert result["sparsity"] == pytest.approx(0.8, abs=0.01)  # the target, over every layer (none kept dense)
    assert result["ema_sparsity"] >= result["sparsity"]          # the live masks, on the average's own zeros
