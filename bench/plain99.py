"""The plain user loop at 99% sparsity, with the Pruner's defaults only.

What a user who follows the README writes: ``Pruner(net, "soft_threshold", target_sparsity=0.99,
total_steps=N)``, SGD lr 0.1 momentum 0.9 with a per-step cosine schedule, ``optimizer.step();
pruner.step(optimizer); scheduler.step()``, 20 epochs, batch 64, then ``pruner.finalize()``. No
floors, reach or freeze is set by hand: whatever the defaults do is what is measured. The nets are
those of the tests (``tests/test_methods.py``): ``ann`` (a 4-channel conv and a linear readout,
2596 prunable weights) and ``snn`` (``sew_digits``, T=2); ``twin`` is the ANN twin of ``snn``.
The data are scikit-learn's digits (``snnprune.data.Digits``: 1437 train, 360 test images 1x8x8),
held in memory. Accuracy is on the test split after the last epoch, sparsity on the finalized model.

Run:   OMP_NUM_THREADS=1 python bench/plain99.py                 # ann and snn, seeds 0 1 2
       python bench/plain99.py --nets ann --seeds 0 --reach 1.0   # the behaviour before reach
       python bench/plain99.py --quick                            # 1 epoch, 256 samples, ann only
Writes bench/results/<name>.{json,md} (``--name``, default ``plain99``; ``--quick`` writes nothing
unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from snnprune import Pruner
from snnprune.data.digits import Digits
from snnprune.metrics.sparsity import sparsity
from snnprune.models import create_model

RESULTS = Path(__file__).resolve().parent / "results"


def ann() -> nn.Module:
    """``tests/test_methods.py``'s ANN."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


NETS = {"ann": ann, "snn": lambda: create_model("sew_digits", T=2),
        "twin": lambda: create_model("sew_digits", T=2, twin=True)}


def data(limit: int | None) -> tuple[torch.Tensor, ...]:
    train, test = Digits("train"), Digits("test")
    xs, ys = train.images, torch.tensor(train.targets)
    if limit:
        xs, ys = xs[:limit], ys[:limit]
    return xs, ys, test.images, torch.tensor(test.targets)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = int((model(x).argmax(1) == y).sum())
    model.train()
    return correct / len(y)


def run(net: str, seed: int, epochs: int, target: float, reach: float | None, limit: int | None,
        method: str = "soft_threshold") -> dict:
    """One plain-loop run; ``reach=None`` leaves the Pruner's default."""
    xs, ys, xt, yt = data(limit)
    torch.manual_seed(seed)
    model = NETS[net]()
    batch = 64
    steps_per_epoch = -(-len(xs) // batch)
    total = epochs * steps_per_epoch
    extra = {} if reach is None else {"reach": reach}
    pruner = Pruner(model, method, target_sparsity=target, total_steps=total, **extra)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    gen = torch.Generator().manual_seed(seed)
    trail = []
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        for i in range(0, len(xs), batch):
            idx = order[i:i + batch]
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.step(opt)
            sched.step()
        trail.append(round(pruner.sparsity().pruned, 4))
    seconds = time.perf_counter() - start
    model = pruner.finalize()
    return {"net": net, "method": method, "seed": seed, "epochs": epochs, "total_steps": total,
            "reach_step": pruner.reach_step,
            "accuracy": accuracy(model, xt, yt), "sparsity": _pruned(model),
            "sparsity_per_epoch": trail, "seconds": round(seconds, 1)}


def _pruned(model: nn.Module) -> float:
    return round(sparsity(model).total, 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["ann", "snn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--method", default="soft_threshold", help="the pruning method (default soft_threshold)")
    parser.add_argument("--reach", type=float, default=None, help="Pruner(reach=...); default: the Pruner's own")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 256 samples, ann, seed 0; writes nothing")
    parser.add_argument("--name", default="plain99")
    parser.add_argument("--note", default="", help="a paragraph added to the markdown (what else was measured)")
    parser.add_argument("--out", default=None, help="folder for the results (default bench/results)")
    args = parser.parse_args(argv)
    limit = None
    if args.quick:
        args.nets, args.seeds, args.epochs, limit = ["ann"], [0], 1, 256
    torch.set_num_threads(1)
    rows = []
    for net in args.nets:
        for seed in args.seeds:
            row = run(net, seed, args.epochs, args.target, args.reach, limit, args.method)
            rows.append(row)
            print(f"{net} seed {seed}: accuracy {row['accuracy']:.2%} at sparsity {row['sparsity']:.2%} "
                  f"({row['seconds']} s)", flush=True)
    summary = {}
    for net in args.nets:
        accs = [r["accuracy"] for r in rows if r["net"] == net]
        summary[net] = {"mean": statistics.fmean(accs), "min": min(accs), "max": max(accs), "n": len(accs)}
        print(f"{net}: mean accuracy {summary[net]['mean']:.2%} over {len(accs)} seeds")
    if args.quick and args.out is None:
        return 0
    folder = Path(args.out) if args.out else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    command = "python bench/plain99.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, "
               f"torch {torch.__version__}, Python {platform.python_version()}")
    (folder / f"{args.name}.json").write_text(json.dumps(
        {"command": command.strip(), "machine": machine, "target": args.target, "reach": args.reach,
         "summary": summary, "runs": rows}, indent=1) + "\n")
    lines = [f"# The plain loop at {args.target:.0%} with the Pruner's defaults (`bench/plain99.py`)", "",
             f"Command: `{command.strip()}`", "", f"Machine: {machine}", "", *([args.note, ""] if args.note else []),
             "| net | seeds | accuracy mean (min-max) | sparsity |", "|---|---|---|---|"]
    for net in args.nets:
        s = summary[net]
        sp = statistics.fmean(r["sparsity"] for r in rows if r["net"] == net)
        lines.append(f"| {net} | {s['n']} | {s['mean']:.2%} ({s['min']:.2%}-{s['max']:.2%}) | {sp:.2%} |")
    (folder / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
