"""The fused-kernel benchmark's quick path runs every variant, and the variants it compares agree."""

from __future__ import annotations

import pytest
import torch


def test_kernel_bench_quick_path_runs(capsys, load_bench):
    assert load_bench("kernels").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for state in ("init", "trained"):
        assert f"{state} {{'copy'" in out
    for name in ("ltp_backward_default", "smooth_forward_unclamped", "smooth_backward_default"):
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
    from snnprune.reparam import _kernels
    from snnprune.reparam.ltp import LTP

    shipped = (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward,
               LTP.effective_weight)
    bench = load_bench("overhead_ablations")
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in bench.VARIANTS:
        assert f"'{name}'" in out
    assert (_kernels.ltp_forward, _kernels.ltp_backward, _kernels.smooth_forward, _kernels.smooth_backward,
            LTP.effective_weight) == shipped
