"""The digits SNN at 99% through the library's own target path (``Pruner(target_sparsity=...)``).

``lab.py`` measured the collapse with its own loop; this script asks the same question of what a
user gets: ``Pruner(model, "soft_threshold", target_sparsity=S, total_steps=N, min_weights=K)`` on
``sew_digits`` (static scikit-learn digits, 1x8x8, direct coding, T=4, IF; or ``--data digits_dvs``),
SGD 0.1 + momentum 0.9 or Adam, per-step cosine LR, batch 64. Options: ``--reach`` ends the target
at that fraction of the run and fine-tunes the rest with the mask frozen (``pruner.freeze()``;
with ``--hold_threshold`` the Pruner keeps stepping instead: straight-through, the controller
re-aims at S every step); ``--readout_scale`` multiplies the logits by a constant (the readout of
spike counts needs large weights otherwise); ``--width`` multiplies every layer's channels of
``sew_digits`` (``repro_width.sh``: width 3 meets both 99% targets). Accuracy and sparsity are
those of the finalized model (zeros over every conv and linear weight). One JSON line per run on
stdout (and appended to ``--out``).

    python bench/snn99/target99.py --seed 0 --min_weights 40 --opt adam --lr 0.01
    python bench/snn99/target99.py --seed 0 --width 3 --min_weights 40 --opt adam --lr 0.01 --reach 0.75 [--twin]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def load(name: str, T: int):
    from snnprune.data import create_dataset

    out = {}
    for split in ("train", "test"):
        ds = create_dataset(name, None, split, **({"n_time_bins": T} if name == "digits_dvs" else {}))
        xs, ys = zip(*[ds[i] for i in range(len(ds))])
        out[split] = (torch.stack([torch.as_tensor(x) for x in xs]).float(), torch.tensor(ys))
    return out


def run(a) -> dict:
    from snnprune import Pruner, sparsity
    from snnprune.models import create_model
    from snnprune.schedules import TargetSparsity

    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load(a.data, a.T)
    torch.manual_seed(a.seed)
    kw = {"in_channels": 2, "input_size": 24} if a.data == "digits_dvs" else {}
    model = create_model("sew_digits", twin=a.twin, T=a.T, width=a.width, neuron=a.neuron, **kw)
    x, y = data["train"]
    spe = math.ceil(len(y) / a.bs)
    total = spe * a.epochs
    reach = max(1, round(total * a.reach))
    lrs = [a.lr * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    pruner = None
    if a.target > 0:
        pruner = Pruner(model, "soft_threshold", TargetSparsity(a.target, lr=lrs[:reach]), target_sparsity=a.target,
                        total_steps=reach, min_weights=a.min_weights, scope=a.scope, reach=1.0)
    opt = (torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9) if a.opt == "sgd"
           else torch.optim.Adam(model.parameters(), lr=a.lr))
    gen = torch.Generator().manual_seed(a.seed)
    step = 0
    for _ in range(a.epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(a.bs):
            for g in opt.param_groups:
                g["lr"] = lrs[step]
            loss = F.cross_entropy(model(x[idx]) * a.readout_scale, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if pruner is not None and not pruner.frozen:
                pruner.step(opt)
                if step == reach and reach < total and not a.hold_threshold:
                    pruner.freeze()
    if pruner is not None:
        model = pruner.finalize()
    model.eval()
    xt, yt = data["test"]
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    layers = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return {"args": vars(a), "test_acc": acc, "sparsity": sparsity(model).total,
            "nnz": {n: int((w != 0).sum()) for n, w in layers}, "seconds": time.perf_counter() - started}


def summary(path: str) -> str:
    """Markdown: per tag, test accuracy mean ± std over the seeds and the non-zeros per layer."""
    import statistics

    groups: dict = {}
    for line in open(path):
        r = json.loads(line)
        groups.setdefault(r["args"]["tag"], []).append(r)
    rows = ["| run (tag) | seeds | SNN/ANN test acc. % | sparsity % | non-zeros per layer (first run) |",
            "|---|---|---|---|---|"]
    for tag, rs in groups.items():
        acc = [100 * r["test_acc"] for r in rs]
        std = f" ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else ""
        rows.append(f"| {tag} | {', '.join(str(r['args']['seed']) for r in rs)} | {statistics.fmean(acc):.1f}{std} "
                    f"({', '.join(f'{a:.1f}' for a in acc)}) | {100 * rs[0]['sparsity']:.2f} | "
                    f"{' '.join(map(str, rs[0]['nnz'].values()))} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", choices=["digits", "digits_dvs"])
    p.add_argument("--twin", action="store_true", help="the ANN twin (ReLU)")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--width", type=int, default=1, help="channel multiplier of sew_digits (c16w, c32w)")
    p.add_argument("--neuron", default="if", choices=["if", "lif", "plif"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--opt", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--target", type=float, default=0.99, help="0: dense")
    p.add_argument("--min_weights", type=int, default=None, help="default: the Pruner's, default_floor()")
    p.add_argument("--scope", default="global", choices=["global", "layer"])
    p.add_argument("--reach", type=float, default=1.0, help="fraction of the run where the target is reached")
    p.add_argument("--hold_threshold", action="store_true",
                   help="after --reach keep the threshold (straight-through, weights may regrow) instead of freezing")
    p.add_argument("--readout_scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out", default="")
    p.add_argument("--summary", default="", help="only print the table of this JSON-lines file")
    a = p.parse_args(argv)
    if a.summary:
        print(summary(a.summary))
        return 0
    line = json.dumps(run(a))
    print(line, flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
