"""Training-step overhead of every pruning method versus dense training and fixed masks.

Measures the median wall time of one full training step (zero_grad, forward, loss, backward,
optimizer step, pruner step, SNN reset) for

* SEW-ResNet-18 (SpikingJelly, IF neurons, ADD, multi-step), T=4, batch 8, 3x64x64 input;
* torchvision ResNet-18 (the ANN), batch 32, 3x64x64 (the same number of images through the convs);
* ``resnet18_224``: the same ANN at ImageNet resolution, batch 8, 3x224x224 (its training regime);

each in four variants, interleaved round-robin in one process so that machine noise hits all alike:

* ``dense``        — no pruning;
* ``snnprune``     — ``Pruner(model, "soft_threshold", LATS(l1=...))`` (the shipped fast path);
* ``torch_prune``  — ``torch.nn.utils.prune.global_unstructured`` 50 % L1 masks (a fixed mask);
* ``naive_param``  — a plain soft-threshold parametrization ``θ − clamp(θ, −d, d).detach()``;

and one variant per registered method through the Pruner, in the same round-robin (the loss adds
``pruner.regularization()`` where the method has one, as the engine does):

* ``ltp``, ``smooth_threshold``, ``str`` — learned thresholds, default options;
* ``magnitude``, ``random`` — ``prune_to(0.5)`` (a fixed mask); ``gmp`` — a cubic schedule to 90%
  whose masks are recomputed every 100 steps (so within the run, as in training, rarely).

``--solo``: every variant in a process of its own (holding only its model), the processes taking
turns round by round (one runs while the others wait), each turn ``--steps-per-turn`` steps back to
back of which all but the first are timed. The variants then share the machine's drift but not
its caches, heap and memory bandwidth with nine other models, as one training run would; the
ratio of a round is the variant's median turn step over dense's.

Run:  python bench/overhead.py [--reps 25] [--threads 2] [--solo]
Writes bench/results/overhead.json and bench/results/overhead.md (``--name``: another file name).
``--quick`` (3 rounds, one model, nothing written) only checks that every variant runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.utils.prune as torch_prune
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet
from torch import nn
from torch.nn.utils import parametrize
from torchvision.models import resnet18

from snnprune import LATS, Pruner, prunable_layers
from snnprune.schedules import Cubic

RESULTS = Path(__file__).resolve().parent / "results"
BASELINES = ["dense", "snnprune", "torch_prune", "naive_param"]
METHODS = ["ltp", "smooth_threshold", "magnitude", "gmp", "random", "str"]


class NaiveSoftThreshold(nn.Module):
    """The textbook parametrization: value S_d(θ), gradient 1, three unfused ops."""

    def __init__(self, d: float) -> None:
        super().__init__()
        self.register_buffer("d", torch.tensor(d))

    def forward(self, theta):
        return theta - torch.clamp(theta, -self.d, self.d).detach()


def build_snn():
    net = sew_resnet.sew_resnet18(
        num_classes=1000, cnf="ADD", spiking_neuron=neuron.IFNode,
        surrogate_function=surrogate.ATan(), detach_reset=True,
    )
    functional.set_step_mode(net, "m")
    return net


def make_variant(kind: str, model_name: str):
    torch.manual_seed(0)
    model = build_snn() if model_name == "sew_resnet18" else resnet18(num_classes=1000)  # also resnet18_224
    pruner = None
    if kind == "snnprune":
        pruner = Pruner(model, "soft_threshold", LATS(l1=1e-4))
    elif kind == "torch_prune":
        params = [(m, "weight") for _, m in prunable_layers(model)]
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.5)
    elif kind == "naive_param":
        for _, m in prunable_layers(model):
            parametrize.register_parametrization(m, "weight", NaiveSoftThreshold(1e-3))
    elif kind == "gmp":
        pruner = Pruner(model, "gmp", Cubic(final=0.9, start=0, end=100_000, every=100))
    elif kind in ("magnitude", "random"):
        pruner = Pruner(model, kind)
        pruner.prune_to(0.5)
    elif kind in METHODS:
        pruner = Pruner(model, kind)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, pruner


def make_step(model_name, model, optimizer, pruner):
    spiking = model_name == "sew_resnet18"
    gen = torch.Generator().manual_seed(1)
    if spiking:
        x = torch.rand(4, 8, 3, 64, 64, generator=gen)
    elif model_name == "resnet18_224":
        x = torch.rand(8, 3, 224, 224, generator=gen)
    else:
        x = torch.rand(32, 3, 64, 64, generator=gen)
    y = torch.randint(0, 1000, (x.shape[-4],), generator=gen)
    regularized = pruner is not None and pruner.has_regularization

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        if spiking:
            out = out.mean(0)
        loss = nn.functional.cross_entropy(out, y)
        if regularized:
            loss = loss + pruner.regularization()
        loss.backward()
        optimizer.step()
        if pruner is not None:
            pruner.step(optimizer)
        if spiking:
            functional.reset_net(model)

    return step


def _solo_worker(conn, kind: str, model_name: str, threads: int) -> None:
    """One variant in its own process: build, warm up, then run the steps asked for and send their times."""
    torch.set_num_threads(threads)
    serve_steps(conn, make_step(model_name, *make_variant(kind, model_name)))


def serve_steps(conn, step) -> None:
    """A solo worker's loop: warm up, then run the steps asked for and send their times."""
    step()
    step()
    conn.send("ready")
    while (n := conn.recv()) is not None:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        conn.send(times)


def time_solo(model_name: str, kinds: list[str], reps: int, threads: int, steps_per_turn: int,
              worker=_solo_worker) -> dict:
    """Per variant and round, the median of a turn's timed steps (all but the first), each variant
    in a process of its own (``worker(conn, kind, model_name, threads)``), the processes taking
    turns in a rotating order."""
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    try:
        for k in kinds:  # built one after the other: two builds at once would share the cores
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, k, model_name, threads), daemon=True)
            proc.start()
            if parent.recv() != "ready":
                raise RuntimeError(f"the {k} worker did not start")
            workers[k] = (proc, parent)
        times = {k: [] for k in kinds}
        for rep in range(reps):
            for k in kinds[rep % len(kinds):] + kinds[: rep % len(kinds)]:
                conn = workers[k][1]
                conn.send(steps_per_turn)
                turn = conn.recv()
                times[k].append(statistics.median(turn[1:] if len(turn) > 1 else turn))
        return times
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def time_interleaved(model_name: str, kinds: list[str], reps: int) -> dict:
    """Per variant and round, one step's time, every variant in this process, round-robin."""
    steps = {k: make_step(model_name, *make_variant(k, model_name)) for k in kinds}
    for step in steps.values():  # warm-up
        step()
        step()
    times = {k: [] for k in kinds}
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[: rep % len(kinds)]  # rotate who goes first
        for k in order:
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=25, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="sew_resnet18,resnet18,resnet18_224")
    parser.add_argument("--methods", default=",".join(METHODS), help="registered methods to time besides the baselines")
    parser.add_argument("--quick", action="store_true", help="3 rounds on resnet18, nothing written: a smoke run")
    parser.add_argument("--name", default="overhead", help="results file name in bench/results (.json and .md)")
    parser.add_argument("--solo", action="store_true", help="every variant in a process of its own, taking turns")
    parser.add_argument("--steps-per-turn", type=int, default=3, help="with --solo: steps per turn (the first untimed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.models = 3, "resnet18"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    methods = [m for m in args.methods.split(",") if m]
    kinds = BASELINES + methods
    results = {}
    for model_name in args.models.split(","):
        if args.solo:
            times = time_solo(model_name, kinds, args.reps, args.threads, args.steps_per_turn)
        else:
            times = time_interleaved(model_name, kinds, args.reps)
        # Paired ratios: each round's step time over the dense step of the same round, so that
        # slow drifts of a shared machine cancel; the median of those is what we quote.
        results[model_name] = {
            k: {
                "median_s": statistics.median(v),
                "ratio_to_dense": statistics.median(a / b for a, b in zip(v, times["dense"])),
                "times_s": v,
            }
            for k, v in times.items()
        }
        print(model_name, {k: round(r["ratio_to_dense"], 3) for k, r in results[model_name].items()})
    if args.quick:
        return

    machine = machine_info(
        args.threads, load_before, fused_kernels=os.environ.get("SNNPRUNE_FUSED_KERNELS", "auto"),
        mode=f"solo, {args.steps_per_turn} steps per turn" if args.solo else "interleaved in one process")
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = (f"python bench/overhead.py --reps {args.reps} --threads {args.threads} --models {args.models} "
               f"--methods {','.join(methods)}" + (f" --name {args.name}" if args.name != "overhead" else "")
               + (f" --solo --steps-per-turn {args.steps_per_turn}" if args.solo else ""))
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    lines = [
        "# Training-step overhead (median of per-round step-time ratios to dense, variants "
        + ("in processes of their own, taking turns)" if args.solo else "interleaved in one run)"),
        "",
        f"Mode: {machine['mode']}  ",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, Python {machine['python']}, "
        f"SNNPRUNE_FUSED_KERNELS={machine['fused_kernels']}  ",
        f"Load average (1, 5, 15 min): {machine['load_before']} at the start, {machine['load_after']} at the end "
        f"({machine['nproc']} cores)",
        "",
        "| model | dense (s) | snnprune soft threshold | torch.prune 50% mask | naive parametrization |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['dense']['median_s']:.3f} | {r['snnprune']['ratio_to_dense']:.3f}x "
            f"| {r['torch_prune']['ratio_to_dense']:.3f}x | {r['naive_param']['ratio_to_dense']:.3f}x |"
        )
    lines += [
        "",
        "Per method (`Pruner(model, <method>)`, the loss adds `pruner.regularization()` where there is one):",
        "",
        *ratio_table(results, "method", methods, lambda r: f"{r['ratio_to_dense']:.3f}x"),
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def ratio_table(results: dict, header: str, rows, cell) -> list[str]:
    """A markdown table: one column per model of ``results``, one row per name in ``rows``, each
    cell ``cell(results[model][row])``."""
    lines = [f"| {header} | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(cell(r[row]) for r in results.values()) + " |")
    return lines


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
