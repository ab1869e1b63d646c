"""Cost of counting operations: ``count_ops`` against one plain forward of the same model.

Model: ``create_model("sew_resnet18", num_classes=10, T=4)`` (SEW-ResNet-18, IF, ADD, direct
coding), batch 8, 3x64x64, eval mode, with batch-norm shifts that make it fire (as a trained net
does; a freshly initialised one is nearly silent). Variants, interleaved round-robin in one process
so that machine noise hits all alike:

* ``forward``   — ``model(x)`` under ``torch.no_grad()`` (what ``count_ops`` runs once);
* ``count_ops`` — ``snnprune.metrics.count_ops(model, x)``: the forward plus the per-layer counts;
* ``sj_synop``  — SpikingJelly's ``SynOpCounter`` in a ``DispatchCounterMode`` (dense counts, no
  per-step split): the aten-level alternative, for reference.

The quoted figure is the median over rounds of ``count_ops`` time / forward time of the same round
(target <= 3x). A second series times the same variants on 1 thread by the CPU time of that thread,
which other jobs on a shared machine barely change.

Run:  python bench/ops.py [--reps 15] [--threads 2]       (--quick: a tiny net, seconds)
Writes bench/results/ops.json and bench/results/ops.md (or into --out).
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
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

from snnprune.metrics import count_ops
from snnprune.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    from overhead import _cpu_model  # the machine line of the benchmarks
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"


def build(quick: bool):
    torch.manual_seed(0)
    if quick:
        model, x = create_model("sew_digits", T=2), torch.rand(2, 1, 8, 8)
    else:
        model, x = create_model("sew_resnet18", num_classes=10, T=4), torch.rand(8, 3, 64, 64)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.uniform_(0.2, 0.6)
                m.running_var.fill_(0.5)
    return model.eval(), x


def variants(model: nn.Module, x: torch.Tensor):
    def forward():
        with torch.no_grad():
            model(x)

    def sj_synop():
        counter = SynOpCounter()
        with torch.no_grad(), DispatchCounterMode([counter]):
            model(x)
        return counter.get_total()

    return {"forward": forward, "count_ops": lambda: count_ops(model, x), "sj_synop": sj_synop}


def timed(runs: dict, reps: int, clock) -> dict[str, list[float]]:
    """``reps`` interleaved rounds of every variant (who goes first rotates), timed by ``clock``."""
    kinds = list(runs)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(reps):
        for k in kinds[rep % len(kinds):] + kinds[: rep % len(kinds)]:
            t0 = clock()
            runs[k]()
            times[k].append(clock() - t0)
    return times


def ratios_to_forward(times: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of each variant's time / the forward's time of the same round."""
    return {k: statistics.median(a / b for a, b in zip(v, times["forward"])) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="timed rounds (after 1 warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-reps", type=int, default=10, help="rounds timed by thread CPU time on 1 thread")
    parser.add_argument("--quick", action="store_true", help="tiny net (sew_digits, T=2, batch 2), 3 rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for ops.json and ops.md")
    args = parser.parse_args(argv)
    reps, cpu_reps = (3, 3) if args.quick else (args.reps, args.cpu_reps)
    model, x = build(args.quick)
    runs = variants(model, x)
    torch.set_num_threads(args.threads)
    for run in runs.values():  # warm-up
        run()
    times = timed(runs, reps, time.perf_counter)
    # The CPU time of the one computing thread: what the work costs, whatever else runs on the machine.
    torch.set_num_threads(1)
    cpu = timed(runs, cpu_reps, time.thread_time)
    torch.set_num_threads(args.threads)
    ratios, cpu_ratios = ratios_to_forward(times), ratios_to_forward(cpu)
    report = count_ops(model, x)
    sj_total = runs["sj_synop"]()
    machine = {"cpu": _cpu_model(), "nproc": os.cpu_count(), "torch": torch.__version__,
               "python": platform.python_version(), "threads": args.threads}
    model_desc = ("sew_digits, T=2, batch 2, 1x8x8" if args.quick
                  else "sew_resnet18 (num_classes=10, T=4), batch 8, 3x64x64")
    command = ("python bench/ops.py --quick" if args.quick
               else f"python bench/ops.py --reps {reps} --threads {args.threads} --cpu-reps {cpu_reps}")
    result = {
        "machine": machine, "command": command, "model": model_desc, "reps": reps,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio_to_forward": ratios, "cpu_ratio_to_forward_1_thread": cpu_ratios, "times_s": times,
        "cpu_s_1_thread": cpu, "cpu_reps": cpu_reps,
        "counts": {**report.to_dict(), "sj_synop_dense": sj_total},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ops.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Cost of count_ops (median of per-round time ratios to one plain forward, interleaved in one run)",
        "",
        f"Command: `{command}`  ",
        (f"Machine: {machine['cpu']}, {args.threads} threads ({machine['nproc']} CPUs), torch {machine['torch']}, "
        f"Python {machine['python']}  "),
        f"Model: {model_desc}, {reps} rounds",
        "",
        "| time | forward (s) | count_ops | SpikingJelly SynOpCounter (dense, for reference) |",
        "|---|---|---|---|",
        (f"| wall clock | {result['median_s']['forward']:.3f} | **{ratios['count_ops']:.2f}x** "
         f"| {ratios['sj_synop']:.2f}x |"),
        (f"| CPU time of 1 thread ({cpu_reps} rounds) | {statistics.median(cpu['forward']):.3f} "
         f"| {cpu_ratios['count_ops']:.2f}x | {cpu_ratios['sj_synop']:.2f}x |"),
        "",
        (f"Counts of that batch: {report}; SOPs with every weight counted {report.dense_sops:.4g}; "
        f"SpikingJelly SynOps {sj_total:.4g} (binary-input layers only)."),
    ]
    (args.out / "ops.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
