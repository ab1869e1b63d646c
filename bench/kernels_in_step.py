"""The learned soft masks' fused kernels inside a training step, against the same calls back to back.

bench/kernels.py times each kernel over all large layers in a row. In a training step each call
comes after a convolution (its forward or its backward) and Python code instead, and that costs
a call more than the bytes it moves. This bench measures the difference on the shipped code:

* ``in a step``: one full training step of ``Pruner(model, <method>)`` (as in bench/overhead.py:
  zero_grad, forward, loss with ``pruner.regularization()``, backward, optimizer step, pruner
  step), with the time inside every forward and backward kernel call summed per step;
* ``back to back``: right after that step, the same calls again (the same weights, the same
  constants and the layer's own saved buffers; written results go to buffers of their own), one
  after the other with nothing in between.

Per round: one step, then the replay; median over rounds. ``extra per call`` is (in a step −
back to back) / calls. Run:  python bench/kernels_in_step.py [--rounds 20] [--threads 2]
Writes bench/results/kernels_in_step.json and .md; ``--quick`` (2 rounds, ResNet-18, LTP,
nothing written) only checks that it runs.
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

from snnprune.reparam import _kernels as K

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import overhead
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"
#: per kernel: the argument positions it writes (replayed into buffers of their own) and whether
#: argument 1 is the incoming gradient (replayed from a random tensor: the real one is gone)
KERNELS = {
    "ltp_forward": ((1, 2), False),
    "ltp_backward": ((3,), True),
    "smooth_forward": ((1, 2, 3), False),
    "smooth_backward": ((6,), True),
}


class Timed:
    """A shipped kernel that sums the time of its calls and records them for a replay (the
    tensors it only reads; ``None`` in the places it writes and for the incoming gradient). A
    backward's form that writes over the incoming gradient (``over_gradient``) is timed and
    recorded with it."""

    def __init__(self, name: str, real=None, parent: Timed | None = None) -> None:
        self.name, self.real = name, getattr(K, name) if real is None else real
        self.writes, self.grad = KERNELS[name] if parent is None else ((1,), True)
        self.record = self if parent is None else parent
        self.elapsed, self.calls = 0.0, []
        over = getattr(self.real, "over_gradient", None)
        self.over_gradient = Timed(name, over, self) if over is not None and parent is None else None

    def usable(self, *tensors) -> bool:
        return self.real.usable(*tensors)

    @property
    def fn(self):
        return self.real.fn

    def __call__(self, *args):
        kept = tuple(None if i in self.writes or (self.grad and i == 1) else a for i, a in enumerate(args))
        self.record.calls.append((self.real, kept))
        t0 = time.perf_counter()
        out = self.real(*args)
        self.record.elapsed += time.perf_counter() - t0
        return out

    def reset(self) -> None:
        self.elapsed, self.calls = 0.0, []


class Replay:
    """The recorded calls with buffers of their own (kept from round to round) for what they
    write and for the gradient."""

    def __init__(self) -> None:
        self.spare: dict[tuple, torch.Tensor] = {}

    def __call__(self, kernel: Timed) -> float:
        calls = []
        for n, (real, call) in enumerate(kernel.calls):
            args = []
            for i, a in enumerate(call):
                if a is None:
                    key = (kernel.name, n, i)
                    if key not in self.spare:
                        self.spare[key] = torch.randn(call[0].numel()) * 1e-3
                    a = self.spare[key]
                    if kernel.grad and i == 1:  # a gradient written over in place: fresh values each time
                        a.normal_(0.0, 1e-3)
                args.append(a)
            calls.append((real, args))
        t0 = time.perf_counter()
        with torch.no_grad():
            for real, args in calls:
                real(*args)
        return time.perf_counter() - t0


def measure(model_name: str, method: str, rounds: int) -> dict:
    shipped = {name: getattr(K, name) for name in KERNELS}
    timed = {name: Timed(name) for name in KERNELS if name.startswith(method.split("_")[0])}
    try:
        for name, t in timed.items():
            setattr(K, name, t)
        step = overhead.make_step(model_name, *overhead.make_variant(method, model_name))
        step()
        step()
        fwd_name, bwd_name = (n for n in timed)
        rows = {k: [] for k in ("step_s", "fwd_in_step", "bwd_in_step", "fwd_back_to_back", "bwd_back_to_back")}
        calls, replay = 0, Replay()
        for t in timed.values():  # warm-up: the replay's own buffers made and its calls run once
            t.reset()
        step()
        for t in timed.values():
            replay(t)
        for _ in range(rounds):
            for t in timed.values():
                t.reset()
            t0 = time.perf_counter()
            step()
            rows["step_s"].append(time.perf_counter() - t0)
            rows["fwd_in_step"].append(timed[fwd_name].elapsed)
            rows["bwd_in_step"].append(timed[bwd_name].elapsed)
            calls = len(timed[fwd_name].calls) + len(timed[bwd_name].calls)
            rows["fwd_back_to_back"].append(replay(timed[fwd_name]))
            rows["bwd_back_to_back"].append(replay(timed[bwd_name]))
    finally:
        for name, kernel in shipped.items():
            setattr(K, name, kernel)
    out = {k: statistics.median(v) for k, v in rows.items()}
    out["calls_per_step"] = calls
    extra = (out["fwd_in_step"] + out["bwd_in_step"]) - (out["fwd_back_to_back"] + out["bwd_back_to_back"])
    out["extra_per_call_us"] = 1e6 * extra / max(calls, 1)
    out["times"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="resnet18,sew_resnet18")
    parser.add_argument("--methods", default="ltp,smooth_threshold")
    parser.add_argument("--quick", action="store_true", help="2 rounds, ResNet-18, LTP, nothing written")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.models, args.methods = 2, "resnet18", "ltp"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    for model_name in args.models.split(","):
        for method in args.methods.split(","):
            r = measure(model_name, method, args.rounds)
            results[f"{model_name}/{method}"] = r
            print(model_name, method, {k: round(1e3 * v, 2) for k, v in r.items() if k in r["times"]},
                  f"calls {r['calls_per_step']}, extra per call {r['extra_per_call_us']:.0f} us")
    if args.quick:
        return 0
    machine = overhead.machine_info(args.threads, load_before)
    command = (f"python bench/kernels_in_step.py --rounds {args.rounds} --threads {args.threads} "
               f"--models {args.models} --methods {args.methods}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kernels_in_step.json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    lines = [
        "# The learned soft masks' kernels in a training step against the same calls back to back (median ms per step)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, Python {machine['python']}  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end",
        "",
        "| model / method | step (s) | calls | forward in a step | back to back | backward in a step | back to back "
        "| extra per call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        lines.append(
            f"| {key} | {r['step_s']:.3f} | {r['calls_per_step']} | {1e3 * r['fwd_in_step']:.2f} | "
            f"{1e3 * r['fwd_back_to_back']:.2f} | {1e3 * r['bwd_in_step']:.2f} | {1e3 * r['bwd_back_to_back']:.2f} | "
            f"{r['extra_per_call_us']:.0f} µs |")
    (RESULTS / "kernels_in_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
