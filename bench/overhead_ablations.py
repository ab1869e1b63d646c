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
  ``w`` (one weight-sized buffer and 12 bytes per weight less traffic, one sigmoid more);
* ``*_recycled`` (LTP, the smooth threshold, magnitude) — θ's gradient always written into the
  layer's recycled buffer, never over a gradient the backward owns (``owned_gradient`` turned
  off: the code before it), so the convolution's weight gradient is freed mid-backward.

Values are the median of per-round ratios to the dense step of the same round (and the median
extra milliseconds). Run:  python bench/overhead_ablations.py [--reps 25] [--models resnet18,...]
``--solo``: every variant in a process of its own, the processes taking turns (bench/overhead.py's
``--solo``: a process holds one model, as a training run does; the heap and the allocator's
state are then the variant's own). Writes bench/results/overhead_ablations.json and .md
(``--name``: another file name); ``--quick`` (2 rounds, nothing written) only checks that every
variant runs.
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

from snnprune.reparam import _cache
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

    def __init__(self, real: K.FusedKernel, results: int, out: int | None = None) -> None:
        self.real, self.results = real, results
        self.out = (1 if results != 1 else -1) if out is None else out  # a forward's v, a backward's gradient
        self.filled: set[int] = set()
        self.over_gradient = _Noop(real.over_gradient, results, 1) if real.over_gradient is not None else None

    def usable(self, *tensors) -> bool:
        return self.real.usable(*tensors)

    def __call__(self, *args):
        out = args[self.out]
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


_cache.calibrate()
_OWNED_REFS = _cache._HANDED_REFS  # owned_gradient's yardstick; 0 turns it off

#: variant -> (method, kernels, LTP.effective_weight, whether owned gradients are written over)
VARIANTS = {
    "dense": ("dense", SHIPPED, _SHIPPED_EFFECTIVE, True),
    "ltp": ("ltp", SHIPPED, _SHIPPED_EFFECTIVE, True),
    "ltp_previous": ("ltp", PREVIOUS, _SHIPPED_EFFECTIVE, True),
    "ltp_noop": ("ltp", NOOP, _SHIPPED_EFFECTIVE, True),
    "ltp_recompute": ("ltp", SHIPPED, _recompute_effective_weight, True),
    "ltp_recycled": ("ltp", SHIPPED, _SHIPPED_EFFECTIVE, False),
    "smooth_threshold": ("smooth_threshold", SHIPPED, _SHIPPED_EFFECTIVE, True),
    "smooth_threshold_previous": ("smooth_threshold", PREVIOUS, _SHIPPED_EFFECTIVE, True),
    "smooth_threshold_noop": ("smooth_threshold", NOOP, _SHIPPED_EFFECTIVE, True),
    "smooth_threshold_recycled": ("smooth_threshold", SHIPPED, _SHIPPED_EFFECTIVE, False),
    "magnitude": ("magnitude", SHIPPED, _SHIPPED_EFFECTIVE, True),
    "magnitude_recycled": ("magnitude", SHIPPED, _SHIPPED_EFFECTIVE, False),
}


def make_variant_step(name: str, model_name: str):
    """The variant's training step, which first puts the module state it swaps in place."""
    method, kernels, effective, owned = VARIANTS[name]
    step = overhead.make_step(model_name, *overhead.make_variant(method, model_name))

    def run():
        for attr, kernel in kernels.items():
            setattr(K, attr, kernel)
        LTP.effective_weight = effective
        _cache._HANDED_REFS = _OWNED_REFS if owned else 0
        step()

    return run


def make_steps(model_name: str) -> dict:
    return {name: make_variant_step(name, model_name) for name in VARIANTS}


def restore() -> None:
    """The module state the variants swap, as shipped."""
    for attr, kernel in SHIPPED.items():
        setattr(K, attr, kernel)
    LTP.effective_weight = _SHIPPED_EFFECTIVE
    _cache._HANDED_REFS = _OWNED_REFS


def _solo_worker(conn, name: str, model_name: str, threads: int) -> None:
    torch.set_num_threads(threads)
    overhead.serve_steps(conn, make_variant_step(name, model_name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="resnet18,sew_resnet18")
    parser.add_argument("--quick", action="store_true", help="2 rounds on resnet18, nothing written")
    parser.add_argument("--solo", action="store_true", help="every variant in a process of its own, taking turns")
    parser.add_argument("--steps-per-turn", type=int, default=3, help="with --solo: steps per turn (the first untimed)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="the variants to run (dense is always one)")
    parser.add_argument("--name", default="overhead_ablations", help="results file name in bench/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.models = 2, "resnet18"
    names = ["dense"] + [n for n in args.variants.split(",") if n and n != "dense"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = {}
    try:
        for model_name in args.models.split(","):
            if args.solo:
                times = overhead.time_solo(model_name, names, args.reps, args.threads, args.steps_per_turn,
                                           worker=_solo_worker)
            else:
                steps = {n: make_variant_step(n, model_name) for n in names}
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
    finally:
        restore()
    if args.quick:
        return 0
    machine = overhead.machine_info(args.threads, load_before)
    command = (f"python bench/overhead_ablations.py --reps {args.reps} --threads {args.threads} --models {args.models}"
               + (f" --variants {','.join(names[1:])}" if names != ["dense", *[n for n in VARIANTS if n != "dense"]]
                  else "")
               + (f" --solo --steps-per-turn {args.steps_per_turn}" if args.solo else "")
               + (f" --name {args.name}" if args.name != "overhead_ablations" else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    mode = f"every variant in a process of its own, {args.steps_per_turn} steps a turn" if args.solo else (
        "interleaved in one process")
    lines = [
        "# Where the learned soft masks' step overhead goes (ratio to dense, median extra ms)",
        "",
        f"Mode: {mode}  ",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, Python {machine['python']}  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end",
        "",
        *overhead.ratio_table(results, "variant", names,
                              lambda r: f"{r['ratio_to_dense']:.3f}x ({r['extra_ms']:+.1f} ms)"),
    ]
    dense = " | ".join(f"{r['dense']['median_s']:.3f} s" for r in results.values())
    lines += ["", f"Dense step: {dense}."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
