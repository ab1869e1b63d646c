"""Where the learned soft masks' training-step overhead goes: ablations of their fused kernels.

The same training step as bench/overhead.py (zero_grad, forward, loss + ``pruner.regularization()``,
backward, optimizer step, pruner step, SNN reset), for dense training and for LTP and the smooth
threshold with their kernels swapped per variant, interleaved round by round in one process:

* ``ltp``, ``smooth_threshold`` — as shipped;
* ``*_previous`` — the kernels they replaced: backward compiled with inductor's default options
  (a reduction loop, then a storing loop), and for the smooth threshold unclamped sigmoids;
* ``*_noop`` — kernels that do nothing (the same Python, autograd nodes, buffers and calls):
  what is left is the cost of everything around the loops;
* ``ltp_recompute`` — the forward writes only ``v`` and the backward recomputes the mask from
  ``w`` (one weight-sized buffer and 12 bytes per weight less traffic, one sigmoid more).

Values are the median of per-round ratios to the dense step of the same round (and the median
extra milliseconds). Run:  python bench/overhead_ablations.py [--reps 25] [--models resnet18,...]
Writes bench/results/overhead_ablations.json and .md; ``--quick`` (2 rounds, nothing written)
only checks that every variant runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from snnprune.reparam import _kernels as K
from snnprune.reparam.ltp import LTP

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import overhead
    from kernels import _smooth_forward_unclamped
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"
_ZERO = torch.tensor(0.0)


def _ltp_forward_v(w, v, k, shift):
    m = torch.sigmoid(k * w * w + shift)
    v.copy_(w * m)
    return m.sum(), (m * (1 - m)).sum()


def _ltp_backward_recompute(w, g, k, shift, out):
    m = torch.sigmoid(k * w * w + shift)
    gm = g * m
    out.copy_(gm)
    return (gm * w * (1 - m)).sum()


class _Noop:
    """A kernel that writes nothing and returns zeros where the real one returns sums; taken for
    the layers the real kernel takes. The first call on each output buffer runs the real kernel,
    so the buffers hold finite values (stale from then on) and training stays finite."""

    fn = None

    def __init__(self, real: K.FusedKernel, results: int) -> None:
        self.real, self.results = real, results
        self.filled: set[int] = set()

    def usable(self, *tensors) -> bool:
        return self.real.usable(*tensors)

    def __call__(self, *args):
        out = args[1] if self.results != 1 else args[-1]  # a forward's v, a backward's gradient
        if out.data_ptr() not in self.filled:
            self.filled.add(out.data_ptr())
            return self.real(*args)
        return (_ZERO, _ZERO) if self.results == 2 else (_ZERO if self.results == 1 else None)


SHIPPED = {n: getattr(K, n) for n in ("ltp_forward", "ltp_backward", "smooth_forward", "smooth_backward")}
PREVIOUS = {**SHIPPED, "ltp_backward": K.FusedKernel(K._ltp_backward),
            "smooth_forward": K.FusedKernel(_smooth_forward_unclamped),
            "smooth_backward": K.FusedKernel(K._smooth_backward)}
NOOP = {n: _Noop(SHIPPED[n], r) for n, r in
        (("ltp_forward", 2), ("ltp_backward", 1), ("smooth_forward", 0), ("smooth_backward", 1))}
_FORWARD_V = K.FusedKernel(_ltp_forward_v)
_BACKWARD_RECOMPUTE = K.FusedKernel(_ltp_backward_recompute, K.ONE_LOOP)
_SHIPPED_EFFECTIVE = LTP.effective_weight


def _recompute_effective_weight(self: LTP, latent):
    if not self._fast(latent, self.tau) or not K.ltp_forward.usable(latent):
        return _SHIPPED_EFFECTIVE(self, latent)
    k, shift = self._kernel_scalars(latent)

    def fill(x, v):
        total, slope = _FORWARD_V(K.flat(x), K.flat(v), k, shift)
        self._sums = ((x.data_ptr(), x._version, self._token()), total, slope)

    (v,) = self._fused.get(latent, self._token(), 1, fill, self.right_inverse)
    return K.KernelWeight.apply(latent, self.tau, v, (k, shift), _BACKWARD_RECOMPUTE, -1.0 / self.temperature,
                                self._grad_buffer)


#: variant -> (method, kernels, LTP.effective_weight)
VARIANTS = {
    "dense": ("dense", SHIPPED, _SHIPPED_EFFECTIVE),
    "ltp": ("ltp", SHIPPED, _SHIPPED_EFFECTIVE),
    "ltp_previous": ("ltp", PREVIOUS, _SHIPPED_EFFECTIVE),
    "ltp_noop": ("ltp", NOOP, _SHIPPED_EFFECTIVE),
    "ltp_recompute": ("ltp", SHIPPED, _recompute_effective_weight),
    "smooth_threshold": ("smooth_threshold", SHIPPED, _SHIPPED_EFFECTIVE),
    "smooth_threshold_previous": ("smooth_threshold", PREVIOUS, _SHIPPED_EFFECTIVE),
    "smooth_threshold_noop": ("smooth_threshold", NOOP, _SHIPPED_EFFECTIVE),
}


def make_steps(model_name: str) -> dict:
    steps = {}
    for name, (method, kernels, effective) in VARIANTS.items():
        step = overhead.make_step(model_name, *overhead.make_variant(method, model_name))

        def run(step=step, kernels=kernels, effective=effective):
            for attr, kernel in kernels.items():
                setattr(K, attr, kernel)
            LTP.effective_weight = effective
            step()

        steps[name] = run
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="resnet18,sew_resnet18")
    parser.add_argument("--quick", action="store_true", help="2 rounds on resnet18, nothing written")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.models = 2, "resnet18"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = {}
    try:
        for model_name in args.models.split(","):
            steps = make_steps(model_name)
            names = list(steps)
            for step in steps.values():
                step()
                step()
            times = {n: [] for n in names}
            for rep in range(args.reps):
                for n in names[rep % len(names):] + names[: rep % len(names)]:
                    t0 = time.perf_counter()
                    steps[n]()
                    times[n].append(time.perf_counter() - t0)
            dense = times["dense"]
            results[model_name] = {
                n: {"ratio_to_dense": statistics.median(a / b for a, b in zip(v, dense)),
                    "extra_ms": 1e3 * (statistics.median(v) - statistics.median(dense)),
                    "median_s": statistics.median(v), "times_s": v}
                for n, v in times.items()
            }
            print(model_name, {n: round(r["ratio_to_dense"], 3) for n, r in results[model_name].items()})
    finally:  # the module state the variants swap
        for attr, kernel in SHIPPED.items():
            setattr(K, attr, kernel)
        LTP.effective_weight = _SHIPPED_EFFECTIVE
    if args.quick:
        return 0
    machine = {
        "cpu": overhead._cpu_model(), "nproc": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "threads": args.threads,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    command = f"python bench/overhead_ablations.py --reps {args.reps} --threads {args.threads} --models {args.models}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overhead_ablations.json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    lines = [
        "# Where the learned soft masks' step overhead goes (ratio to dense, median extra ms)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, Python {machine['python']}  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end",
        "",
        *overhead.ratio_table(results, "variant", VARIANTS,
                              lambda r: f"{r['ratio_to_dense']:.3f}x ({r['extra_ms']:+.1f} ms)"),
    ]
    dense = " | ".join(f"{r['dense']['median_s']:.3f} s" for r in results.values())
    lines += ["", f"Dense step: {dense}."]
    (RESULTS / "overhead_ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
