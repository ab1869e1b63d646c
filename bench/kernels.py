"""Time of the learned soft masks' fused kernels over ResNet-18's large layers, with ablations.

For LTP and the smooth threshold, one training step runs a forward kernel (the effective weight,
and what the backward needs) and a backward kernel (the weight's gradient, and the sum that is
the threshold's gradient) over every pruned layer of at least ``MIN_NUMEL`` weights (ResNet-18:
14 layers, 11.5 M weights). This bench times each kernel over all those layers, the shipped
version and the variant it replaced, interleaved round by round, against a copy of the same
weights (``copy``: 8 bytes per weight, the memory yardstick):

* ``ltp_backward`` (one loop: inductor's ``realize_reads_threshold=1``) against
  ``ltp_backward_default`` (inductor's defaults: a reduction loop, then a storing loop), and
  ``ltp_backward_over_gradient``, the form that writes θ's gradient over the incoming gradient
  (taken for a gradient the backward owns: 12 bytes per weight and no buffer of its own; the
  gradient it overwrites is refilled before each timed pass, untimed);
* ``smooth_forward`` (sigmoid arguments clamped to ±80) against ``smooth_forward_unclamped``;
* ``smooth_backward`` against ``smooth_backward_default``, as for LTP; ``ltp_forward`` as shipped.

Two states: ``init`` (the methods' starting thresholds) and ``trained`` (LTP's τ at the 80th
percentile of w², the smooth threshold at one RMS of the layer's weights).

Run:  python bench/kernels.py [--rounds 15] [--threads 2]
Writes bench/results/kernels.json and .md. ``--quick`` (two small layers, 2 rounds, nothing
written) only checks that every variant runs and agrees with the shipped kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.models import resnet18

from snnprune.reparam import _kernels as K

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    from overhead import machine_info  # the machine line of the benchmarks
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"


def _smooth_forward_unclamped(x, v, a_out, b_out, t, beta):
    a = torch.sigmoid(beta * (x - t))
    b = torch.sigmoid(beta * (-x - t))
    v.copy_(torch.relu(x - t) - torch.relu(-x - t) + t * (a - b))
    a_out.copy_(a)
    b_out.copy_(b)


def variants() -> dict[str, K.FusedKernel]:
    return {
        "ltp_forward": K.ltp_forward,
        "ltp_backward": K.ltp_backward,
        "ltp_backward_default": K.FusedKernel(K._ltp_backward),
        "ltp_backward_over_gradient": K.ltp_backward.over_gradient,
        "smooth_forward": K.smooth_forward,
        "smooth_forward_unclamped": K.FusedKernel(_smooth_forward_unclamped),
        "smooth_backward": K.smooth_backward,
        "smooth_backward_default": K.FusedKernel(K._smooth_backward),
    }


def layers(quick: bool) -> list[torch.Tensor]:
    if quick:
        torch.manual_seed(0)
        return [torch.randn(K.MIN_NUMEL) * 0.05, torch.randn(2 * K.MIN_NUMEL) * 0.02]
    model = resnet18(num_classes=1000)
    return [p.detach().clone().view(-1) for p in model.parameters() if p.dim() > 1 and p.numel() >= K.MIN_NUMEL]


def constants(w: torch.Tensor, state: str) -> tuple[torch.Tensor, ...]:
    """LTP's k = 1/(scale·T), shift = −τ/T (T = 0.1, scale = mean w²); the smooth threshold's t and β."""
    mean_sq = float(w.pow(2).mean())
    rms = mean_sq**0.5
    if state == "init":
        tau, t = 0.0, 0.05 * rms
    else:
        tau, t = float(w.pow(2).quantile(0.8)) / mean_sq, rms
    return (torch.tensor(1.0 / (mean_sq * 0.1)), torch.tensor(-tau / 0.1), torch.tensor(t), torch.tensor(50.0 / rms))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="two small layers, 2 rounds, nothing written")
    parser.add_argument("--name", default="kernels", help="results file name in bench/results (.json and .md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 2
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    kernels = variants()
    ws = layers(args.quick)
    gs = [torch.randn_like(w) * 1e-3 for w in ws]
    bufs = [[torch.empty_like(w) for _ in range(4)] for w in ws]

    def run(name: str, consts: list[tuple]) -> list:
        out = []
        for w, g, (v, a, b, o), (k, shift, t, beta) in zip(ws, gs, bufs, consts):
            fn = kernels[name] if name != "copy" else None
            if name == "copy":
                v.copy_(w)
            elif name.startswith("ltp_forward"):
                out.append(fn(w, v, a, k, shift))
            elif name == "ltp_backward_over_gradient":
                out.append(fn(w, o, a))  # o: a copy of g, written over (see refill)
            elif name.startswith("ltp_backward"):
                out.append(fn(w, g, a, o))
            elif name.startswith("smooth_forward"):
                fn(w, v, a, b, t, beta)
            else:
                out.append(fn(w, g, a, b, t, beta, o))
        return out

    names = ["copy", *kernels]
    results: dict[str, dict] = {}
    for state in ("init", "trained"):
        consts = [constants(w, state) for w in ws]
        for name in names:  # compile, warm up
            run(name, consts)
        _check_agreement(run, consts, bufs, gs)
        times: dict[str, list[float]] = {n: [] for n in names}
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            for name in order:
                # a backward reads the buffers of its own forward: refill them first (not timed)
                if name.startswith("ltp_backward"):
                    run("ltp_forward", consts)
                if name == "ltp_backward_over_gradient":
                    refill(bufs, gs)
                elif name.startswith("smooth_backward"):
                    run("smooth_forward", consts)
                t0 = time.perf_counter()
                run(name, consts)
                times[name].append(time.perf_counter() - t0)
        results[state] = {n: {"median_ms": 1e3 * statistics.median(v), "times_s": v} for n, v in times.items()}
        print(state, {n: round(r["median_ms"], 2) for n, r in results[state].items()})
    if args.quick:
        return 0

    machine = machine_info(args.threads, load_before, layers=len(ws), weights=sum(w.numel() for w in ws))
    command = f"python bench/kernels.py --rounds {args.rounds} --threads {args.threads}" + (
        f" --name {args.name}" if args.name != "kernels" else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    lines = [
        "# Fused kernels of the learned soft masks over ResNet-18's large layers (median ms per pass)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, Python {machine['python']}; "
        f"{machine['layers']} layers, {machine['weights']:,} weights  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end",
        "",
        "| kernel | init | trained |",
        "|---|---|---|",
    ]
    for name in names:
        init, trained = (results[state][name]["median_ms"] for state in ("init", "trained"))
        lines.append(f"| {name} | {init:.2f} | {trained:.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def refill(bufs, gs) -> None:
    """Put the incoming gradient into the buffer the over-gradient backward writes over."""
    for (_, _, _, o), g in zip(bufs, gs):
        o.copy_(g)


def _check_agreement(run, consts, bufs, gs=None) -> None:
    """The replaced variants compute what the shipped kernels compute (so the timings compare like with like)."""
    pairs = [("ltp_backward", "ltp_backward_default"), ("smooth_backward", "smooth_backward_default"),
             ("smooth_forward", "smooth_forward_unclamped")]
    if gs is not None:
        pairs.append(("ltp_backward", "ltp_backward_over_gradient"))
    for shipped, other in pairs:
        base = shipped.replace("backward", "forward") if "backward" in shipped else None
        results = []
        for name in (shipped, other):
            if base:
                run(base, consts)
            if name == "ltp_backward_over_gradient":
                refill(bufs, gs)
            sums = run(name, consts)
            slot = 3 if "backward" in name else 0  # the gradient, or the effective weight
            results.append(([b[slot].clone() for b in bufs], [float(s) for s in sums]))
        (x, sx), (y, sy) = results
        for a, b in zip(x, y):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        for a, b in zip(sx, sy):
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (shipped, other, a, b)


if __name__ == "__main__":
    raise SystemExit(main())
