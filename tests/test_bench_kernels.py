"""The fused-kernel benchmark's quick path runs every variant, and the variants it compares agree."""

from __future__ import annotations

import pytest
import torch


def test_kernel_bench_quick_path_runs(capsys, load_bench):
    assert load_bench("kernels").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for state in ("init", "trained"):
        assert f"{state} {{'copy'" in out
    for name in ("ltp_backward_default", "ltp_backward_over_gradient", "smooth_forward_unclamped",
                 "smooth_backward_default"):
        assert f"'{name}'" in out


def test_kernel_bench_refuses_a_variant_that_computes_something_else(load_bench):
    bench = load_bench("kernels")
    ws = [torch.randn(bench.K.MIN_NUMEL)]
    bufs = [[torch.empty_like(w) for _ in range(4)] for w in ws]
    consts = [bench.constants(w, "trained") for w in ws]
    g = torch.randn_like(ws[0])

    def run(name, consts):  # the "default" backward returns another gradient
        v, a, b, o = bufs[0]
        k, shift, t, beta = consts[0]
        if name.startswith("ltp_forward"):
            return [bench.K._ltp_forward(ws[0], v, a, k, shift)[0]]
        if name.startswith("smooth_forward"):
            bench.K._smooth_forward(ws[0], v, a, b, t, beta)
            return []
        if name == "ltp_backward_default":
            o.copy_(g)
            return [torch.tensor(0.0)]
        if name.startswith("ltp_backward"):
            return [bench.K._ltp_backward(ws[0], g, a, o)]
        return [bench.K._smooth_backward(ws[0], g, a, b, t, beta, o)]

    with pytest.raises(AssertionError):
        bench._check_agreement(run, consts, bufs)


def test_overhead_ablation_bench_quick_path_runs_and_restores_the_kernels(capsys, load_bench):
    from snnprune.reparam import _cache, _kernels
    from snnprune.reparam.ltp import LTP

    _cache.calibrate()  # as the first GradBuffer does
    shipped = (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward,
               LTP.effective_weight, _cache._HANDED_REFS)
    bench = load_bench("overhead_ablations")
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in bench.VARIANTS:
        assert f"'{name}'" in out
    assert (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward,
            LTP.effective_weight, _cache._HANDED_REFS) == shipped
    assert shipped[-1] > 0  # owned gradients are written over, as shipped


def test_overhead_ablation_bench_recycled_variants_turn_owned_gradients_off(load_bench):
    from snnprune.reparam import _cache

    bench = load_bench("overhead_ablations")
    seen = {}
    for name in ("ltp", "ltp_recycled"):
        step = bench.make_variant_step(name, "resnet18")
        step()
        seen[name] = _cache._HANDED_REFS
    bench.restore()
    assert seen["ltp"] > 0 and seen["ltp_recycled"] == 0


def test_overhead_ablation_bench_quick_solo_path_runs():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(root / "bench" / "overhead_ablations.py"), "--quick", "--solo",
           "--variants", "ltp,ltp_recycled"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("resnet18 {"))
    assert "'dense': 1.0" in line and "'ltp'" in line and "'ltp_recycled'" in line


def test_in_step_kernel_bench_quick_path_runs_and_restores_the_kernels(capsys, load_bench):
    from snnprune.reparam import _kernels

    shipped = (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward)
    assert load_bench("kernels_in_step").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "resnet18 ltp {'step_s'" in out and "calls 28," in out  # ResNet-18's 14 large layers, both directions
    assert (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward) == shipped
