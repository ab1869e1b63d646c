"""Training-step overhead of every pruning method against dense training and torch's own mask.

One full training step (zero_grad, forward, loss + ``pruner.regularization()``, backward,
optimizer step, pruner step, SNN reset) of SpikingJelly's SEW-ResNet-18 (IF neurons, ADD,
multi-step), timed for these variants, all in one process and interleaved round-robin (the order
shuffled every round) so that the noise of a shared machine hits all alike:

* ``dense`` — no pruning; ``torch_prune`` — ``torch.nn.utils.prune.global_unstructured`` 50% L1
  masks (torch's ``weight_orig * weight_mask``);
* one per method through the Pruner: ``soft_threshold`` (LATS λ-form), ``str``, ``ltp``,
  ``smooth_threshold`` (default options), ``magnitude``/``random`` (``prune_to(0.5)``), ``gmp``
  (a cubic to 90% updating every 100 steps);
* ``<method>@0.8`` — ``Pruner(model, method, target_sparsity=0.8, total_steps=...)``, what users
  write: the target controllers' per-step work is part of the step;
* ``<variant>:reference`` / ``<variant>:fast`` (``--variants`` only) — the variant with the
  operators of :mod:`snnprune._ops` in their reference or fast form, switched around each of its
  steps: an A/B of the fast forms in one run, e.g. ``--variants str:reference,str:fast``.

Each round times one step per variant; a variant's ratio is the median over rounds of its step
time over dense's in the same round. Rows:

* ``bench``: T=4, batch 8, 3x64x64 (every variant);
* ``small``: T=2, batch 2, 3x32x32, where fixed costs weigh most. Its extra time per step is also
  given in units of one copy of all prunable weights (``torch.cat`` of them, timed in the same
  rounds): the memory traffic a reparameterization of every weight cannot avoid;
* ``first step``: each variant's first step on the bench size (a fresh model; torch itself warmed
  up by one dense step before), against dense's.

Run:  python bench/overhead.py [--reps 15] [--threads 2]
Writes bench/results/overhead.json and .md. ``--quick`` (2 rounds of the small row, a few
variants, nothing written) checks that the variants run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.utils.prune as torch_prune
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet
from torch import nn

from snnprune import LATS, Pruner, _ops, prunable_layers
from snnprune.schedules import Cubic

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["soft_threshold", "magnitude", "gmp", "random", "str", "ltp", "smooth_threshold"]
TARGETS = ["soft_threshold@0.8", "gmp@0.8", "str@0.8", "ltp@0.8", "smooth_threshold@0.8"]
VARIANTS = ["dense", "torch_prune", *METHODS, *TARGETS]
SIZES = {"bench": (4, 8, 64), "small": (2, 2, 32)}  # T, batch, side
FORMS = ("reference", "fast")  # of the operators in snnprune._ops: <variant>:<form>
TOTAL_STEPS = 10_000  # of a target: far beyond the steps timed, so the controller runs, never the projection


def build_snn() -> nn.Module:
    net = sew_resnet.sew_resnet18(
        num_classes=1000, cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(),
        detach_reset=True,
    )
    functional.set_step_mode(net, "m")
    return net


def make_variant(kind: str):
    """``(model, optimizer, pruner)`` of a variant (the same initial weights for all)."""
    torch.manual_seed(0)
    model = build_snn()
    pruner = None
    kind = kind.partition(":")[0]
    method, _, target = kind.partition("@")
    if kind == "torch_prune":
        params = [(m, "weight") for _, m in prunable_layers(model)]
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.5)
    elif target:
        pruner = Pruner(model, method, target_sparsity=float(target), total_steps=TOTAL_STEPS)
    elif kind == "soft_threshold":
        pruner = Pruner(model, kind, LATS(l1=1e-4))
    elif kind == "gmp":
        pruner = Pruner(model, kind, Cubic(final=0.9, start=0, end=100_000, every=100))
    elif kind in ("magnitude", "random"):
        pruner = Pruner(model, kind)
        pruner.prune_to(0.5)
    elif kind != "dense":
        pruner = Pruner(model, kind)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), pruner


def make_step(size: str, model, optimizer, pruner):
    T, batch, side = SIZES[size]
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(T, batch, 3, side, side, generator=gen)
    y = torch.randint(0, 1000, (batch,), generator=gen)
    regularized = pruner is not None and pruner.has_regularization

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).mean(0), y)
        if regularized:
            loss = loss + pruner.regularization()
        loss.backward()
        optimizer.step()
        if pruner is not None:
            pruner.step(optimizer)
        functional.reset_net(model)

    return step


def with_form(kind: str, step):
    """``step`` run with the operators' form a ``<variant>:<form>`` kind names (as set, without one)."""
    form = kind.partition(":")[2]
    if not form:
        return step

    def switched() -> None:
        previous = _ops.use_fast(form == FORMS[1])
        try:
            step()
        finally:
            _ops.use_fast(previous)

    return switched


def copy_unit(model: nn.Module):
    """One copy of all prunable weights (``torch.cat``): the unit of the small row's extra time."""
    weights = [m.weight.detach() for _, m in prunable_layers(model)]
    return lambda: torch.cat([w.reshape(-1) for w in weights])


def time_interleaved(steps: dict, reps: int) -> dict[str, list[float]]:
    """Per variant, the time of one call per round, every variant once a round, in an order shuffled
    every round (seeded): a rotation would give each variant the same predecessor in every round, and
    what a step leaves in the caches is charged to the next one."""
    kinds = list(steps)
    times = {k: [] for k in kinds}
    order = random.Random(0)
    for _ in range(reps):
        for k in order.sample(kinds, len(kinds)):
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def steady_row(size: str, kinds: list[str], reps: int, with_unit: bool) -> dict:
    steps = {k: with_form(k, make_step(size, *make_variant(k))) for k in kinds}
    if with_unit:
        steps["copy"] = copy_unit(make_variant("dense")[0])
    for step in steps.values():  # warm-up
        step()
        step()
    times = time_interleaved(steps, reps)
    dense = times["dense"]
    row = {}
    for k, v in times.items():
        ratio = statistics.median(a / b for a, b in zip(v, dense))
        row[k] = {"median_s": statistics.median(v), "ratio_to_dense": ratio, "times_s": v}
        if with_unit and k not in ("dense", "copy"):  # the extra time of each round, in copies of that round
            row[k]["extra_in_copies"] = statistics.median((a - b) / c for a, b, c in zip(v, dense, times["copy"]))
    return row


def first_steps(kinds: list[str]) -> dict[str, float]:
    """Each variant's first step on the bench size, a fresh model each (torch warmed up first)."""
    warm = make_step("bench", *make_variant("dense"))
    warm()
    out = {}
    for k in kinds:
        step = with_form(k, make_step("bench", *make_variant(k)))
        t0 = time.perf_counter()
        step()
        out[k] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="timed rounds per row (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="besides dense (always timed)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of the small row, nothing written")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = ["dense"] + [k for k in args.variants.split(",") if k and k != "dense"]
    bad = next((k for k in kinds if k.partition(":")[2] not in ("", *FORMS)), None)
    if bad:
        parser.error(f"variant {bad!r}: the form after ':' is 'reference' or 'fast'")
    if args.quick:
        row = steady_row("small", kinds, 2, with_unit=True)
        print("small", {k: round(r["ratio_to_dense"], 3) for k, r in row.items()})
        return
    load_before = os.getloadavg()
    results = {"bench": steady_row("bench", kinds, args.reps, with_unit=False)}
    print("bench", {k: round(r["ratio_to_dense"], 3) for k, r in results["bench"].items()}, flush=True)
    results["small"] = steady_row("small", kinds, args.reps * 2, with_unit=True)
    print("small", {k: round(r["ratio_to_dense"], 3) for k, r in results["small"].items()}, flush=True)
    results["first_step_s"] = first_steps(kinds)
    machine = machine_info(args.threads, load_before, commit=_commit(), mode="interleaved in one process")
    command = f"python bench/overhead.py --reps {args.reps} --threads {args.threads}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps({"machine": machine, "command": command, "results": results},
                                                      indent=1))
    text = report(results, kinds, machine, command)
    (RESULTS / "overhead.md").write_text(text)
    print(text)


def report(results: dict, kinds: list[str], machine: dict, command: str) -> str:
    bench, small, first = results["bench"], results["small"], results["first_step_s"]
    lines = [
        "# Training-step overhead (SEW-ResNet-18, median of per-round ratios to dense, interleaved in one run)",
        "",
        f"Command: `{command}` at commit {machine['commit']}  ",
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"Python {machine['python']}  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end "
        f"({machine['nproc']} cores)",
        "",
        f"bench: T=4, batch 8, 64x64, dense {bench['dense']['median_s']:.3f} s a step; small: T=2, batch 2, 32x32, "
        f"dense {small['dense']['median_s'] * 1e3:.1f} ms a step, one copy of all prunable weights "
        f"{small['copy']['median_s'] * 1e3:.2f} ms; first step: dense {first['dense']:.2f} s.",
        "",
        "| variant | bench | small | small: extra time in weight copies | first step (s) | first step - dense's (s) |",
        "|---|---|---|---|---|---|",
    ]
    for k in kinds:
        extra = small[k].get("extra_in_copies")
        lines.append(
            f"| {k} | {bench[k]['ratio_to_dense']:.3f}x | {small[k]['ratio_to_dense']:.3f}x | "
            f"{'' if extra is None else f'{extra:.1f}'} | {first[k]:.2f} | {first[k] - first['dense']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(threads: int, load_before, **extra) -> dict:
    """The machine line of every benchmark's results: CPU, cores, torch, Python, threads, ``extra``,
    and the 1/5/15-minute load averages when the run started and ended (the machine is shared)."""
    return {
        "cpu": _cpu_model(), "nproc": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "threads": threads, **extra,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
