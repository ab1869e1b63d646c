"""Accuracy against sparsity: every pruning method of snnprune on the embedded digits, SNN and ANN twin.

The data set and model are those of the shipped ``digits_snn_lats`` / ``digits_ann_lats`` recipes
(``sew_digits`` on ``digits_dvs``, T=4 event frames 2x24x24; the ANN twin has ReLU instead of IF
neurons), with their optimizer (SGD 0.1, momentum 0.9, per-step cosine LR, batch 64). Every row
gets the same epoch budget and the same initial weights per seed. Rows and how each reaches the
target sparsity S (over every conv and linear weight; no layer is kept dense):

* ``dense`` -- no pruning (one run per seed, shown in every column);
* ``lats`` -- ``soft_threshold`` with ``TargetSparsity(S)`` (the LATS shape, λ set by the feedback
  controller, the last step lands on S);
* ``slats``, ``pgh`` (β=0.1), ``sine`` (STDS), ``linear`` -- ``soft_threshold`` with the closed-form
  shape and D = the final threshold the ``lats`` controller reached for the same model and S on the
  first seed (calibration); whatever sparsity that D gives, an exact projection at the last step
  (``pruner.prune_to(S)``: the smallest surviving weights go, no fine-tuning after it) brings the run
  to S; the sparsity before the projection is recorded (``pre_projection``);
* ``str``, ``ltp``, ``smooth_threshold`` -- ``target_sparsity=S``: a feedback on the regulariser's
  strength along a cubic ramp, and a projection onto S at the last step (STR has no regulariser: its
  row is the projection alone);
* ``gmp`` -- ``target_sparsity=S``: the cubic schedule ending at the last step, masks every 1% of the run;
* ``magnitude`` -- one-shot: dense training for the first half of the epochs, magnitude pruning to S
  (global), fine-tuning with the mask fixed for the second half.

The runs use the Python API (``Pruner`` and one shared training loop built from the engine's
``snnprune.engine.build`` helpers on the digits recipes; a recipe's ``pruning.target_sparsity`` builds
the same Pruner for the LATS, STR, LTP and smooth-threshold rows). Accuracy is that of the finalized model
(``pruner.finalize()``) on the 360 test samples after the last epoch; the measured sparsity is the
fraction of zeros over every conv and linear weight of the finalized model.

Run:   python bench/quality.py                  # the full grid (see --help), torch threads 1, 2 processes
       python bench/quality.py --quick          # 2 methods, 1 sparsity, 1 seed, 1 epoch, 128 samples
Writes bench/results/quality.{json,md,png} (``--quick`` writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["dense", "lats", "slats", "pgh", "sine", "linear", "str", "ltp", "smooth_threshold", "gmp", "magnitude"]
SHAPES = {"slats": "SLATS", "pgh": "PGH", "sine": "Sine", "linear": "Linear"}
LABELS = {
    "dense": "dense", "lats": "LATS (λ controller)", "slats": "S-LATS (D from LATS + projection)",
    "pgh": "PGH β=0.1 (D from LATS + projection)", "sine": "STDS sine (D from LATS + projection)",
    "linear": "linear (D from LATS + projection)", "str": "STR (+ projection)", "ltp": "LTP (target feedback)",
    "smooth_threshold": "smooth threshold (target feedback)", "gmp": "GMP (cubic)",
    "magnitude": "one-shot magnitude + fine-tune",
}
RECIPES = {"snn": "digits_snn_lats", "ann": "digits_ann_lats"}


# -- one run -----------------------------------------------------------------------------------
def _recipe(model: str, seed: int, epochs: int, limit: int | None):
    from snnprune.recipe import Recipe, load_recipe

    data = load_recipe(RECIPES[model]).model_dump()
    data.update(seed=seed, epochs=epochs, family="dense", pruning={"method": "none"})
    data["data"]["limit"] = limit
    return Recipe.model_validate(data)


_DATA: dict = {}


def _datasets(recipe):
    from snnprune.engine.build import build_datasets

    key = (recipe.data.name, recipe.data.limit, recipe.seed if recipe.data.limit else None)
    if key not in _DATA:
        _DATA[key] = build_datasets(recipe)
    return _DATA[key]


def run_one(task: dict) -> dict:
    """Train one (model, method, sparsity, seed) and return its record."""
    import torch
    from torch import nn

    from snnprune import Pruner, sparsity
    from snnprune import data as snn_data
    from snnprune import schedules as S
    from snnprune.engine.build import build_model, build_optimizer, build_scheduler, lr_probe
    from snnprune.engine.state import seed_everything

    torch.set_num_threads(task["threads"])
    started = time.perf_counter()
    model_kind, method, target, seed, epochs = (task[k] for k in ("model", "method", "sparsity", "seed", "epochs"))
    recipe = _recipe(model_kind, seed, epochs, task["limit"])
    train_set, test_set, info = _datasets(recipe)
    seed_everything(seed)
    model = build_model(recipe, info)
    train_loader = snn_data.make_loader(train_set, recipe.batch_size, train=True, seed=seed)
    test_loader = snn_data.make_loader(test_set, recipe.batch_size, train=False)
    spe = len(train_loader)
    total = epochs * spe

    pruner = None
    if method == "lats":
        pruner = Pruner(model, "soft_threshold", S.TargetSparsity(target, lr=lr_probe(recipe, spe)),
                        target_sparsity=target, total_steps=total)
    elif method in SHAPES:
        extra = {"beta": 0.1} if method == "pgh" else {}
        pruner = Pruner(model, "soft_threshold", getattr(S, SHAPES[method])(final=task["final_threshold"], **extra),
                        total_steps=total)
    elif method in ("str", "ltp", "smooth_threshold", "gmp"):
        pruner = Pruner(model, method, target_sparsity=target, total_steps=total)
    elif method == "magnitude":
        pruner = Pruner(model, "magnitude", S.OneShot(target, at=(epochs // 2) * spe))
    optimizer = build_optimizer(recipe, model, pruner)
    scheduler = build_scheduler(recipe, optimizer, spe)
    criterion = nn.CrossEntropyLoss()

    for epoch in range(epochs):
        model.train()
        train_loader.generator.manual_seed(seed + 1_000_003 * epoch)
        for x, y in train_loader:
            loss = criterion(model(x), y)
            if pruner is not None and pruner.has_regularization:
                loss = loss + pruner.regularization()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if pruner is not None:
                pruner.step(optimizer)
            scheduler.step()

    record = {k: task[k] for k in ("model", "method", "sparsity", "seed", "epochs", "limit")}
    if pruner is not None:
        record["threshold"] = pruner.threshold
        if method in SHAPES:
            record["final_threshold"] = task["final_threshold"]
            record["pre_projection"] = pruner.sparsity().total
            if abs(record["pre_projection"] - target) > 1e-4:
                pruner.prune_to(target)
        model = pruner.finalize()
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += int((model(x).argmax(1) == y).sum())
            seen += len(y)
    report = sparsity(model)
    layers = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    record.update(
        accuracy=correct / seen,
        measured=report.total,
        nonzero=report.numel - report.zeros,
        weights=report.numel,
        nnz_per_layer={n: int((w != 0).sum()) for n, w in layers},
        seconds=time.perf_counter() - started,
    )
    return record


# -- the grid ----------------------------------------------------------------------------------
class _Inline:
    """``procs=1``: the pool's interface, run in this process when the result is asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def apply_async(self, fn, args):
        return type("Later", (), {"get": lambda _: fn(*args)})()


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _key(t: dict) -> tuple:
    return (t["model"], t["method"], round(t["sparsity"], 6), t["seed"], t["epochs"], t["limit"])


def run_grid(args, journal: Path | None = None) -> list[dict]:
    """Every run of the grid; each record is appended to ``journal`` (JSON lines) as it arrives,
    and with ``args.resume`` the runs already there are not run again."""
    base = dict(epochs=args.epochs, limit=args.limit, threads=args.threads)
    seeds, models, sparsities = args.seeds, args.models, args.sparsities
    pruned = [m for m in args.methods if m != "dense"]
    independent = [m for m in pruned if m not in SHAPES]
    calib_seed = seeds[0]
    # the LATS runs of the calibration seed first: the closed-form rows take their D from them
    first = [dict(base, model=mo, method="lats", sparsity=s, seed=calib_seed) for mo in models for s in sparsities
             if "lats" in pruned or any(m in SHAPES for m in pruned)]
    rest = [dict(base, model=mo, method=me, sparsity=s, seed=sd) for sd in seeds for mo in models
            for me in independent for s in sparsities if not (me == "lats" and sd == calib_seed)]
    rest += [dict(base, model=mo, method="dense", sparsity=0.0, seed=sd) for sd in seeds for mo in models
             if "dense" in args.methods]
    # the heavy SNN runs early, so the two processes end together
    rest.sort(key=lambda t: (t["model"] != "snn", t["seed"]))
    records: list[dict] = []
    done = 0
    n_shapes = len([m for m in pruned if m in SHAPES]) * len(models) * len(sparsities) * len(seeds)
    n_total = len(first) + len(rest) + n_shapes
    started = time.perf_counter()

    journaled = {}
    if journal is not None and args.resume and journal.exists():
        for line in journal.read_text().splitlines():
            rec = json.loads(line)
            journaled[_key(rec)] = rec

    def submit(pool, task):
        rec = journaled.get(_key(task))
        if rec is not None:
            return type("Done", (), {"get": lambda _: dict(rec, journaled=True)})()
        return pool.apply_async(run_one, (task,))

    def log(rec):
        nonlocal done
        done += 1
        records.append(rec)
        reused = rec.pop("journaled", False)
        rec["reused"] = reused  # read back from the journal (--resume), not run now
        if journal is not None and not reused:
            with journal.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        print(f"[{done}/{n_total} {time.perf_counter() - started:6.0f}s] {rec['model']} {rec['method']:16s} "
              f"S={rec['sparsity']:.3f} seed={rec['seed']} acc={rec['accuracy']:.3f} "
              f"measured={rec['measured']:.4f} ({rec['seconds']:.0f}s)", flush=True)

    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with (ctx.Pool(args.procs, initializer=_init, initargs=(args.threads,)) if args.procs > 1 else _Inline()) as pool:
        calib = [submit(pool, t) for t in first]
        pending = [submit(pool, t) for t in rest]
        shapes = []
        for t, res in zip(first, calib):
            rec = res.get()
            if "lats" in pruned:
                log(rec)
            for me in (m for m in pruned if m in SHAPES):
                for sd in seeds:
                    shapes.append(submit(pool, dict(base, model=t["model"], method=me, sparsity=t["sparsity"],
                                                    seed=sd, final_threshold=rec["threshold"])))
        for res in pending + shapes:
            log(res.get())
    return records


# -- results -----------------------------------------------------------------------------------
def summarise(records: list[dict], sparsities: list[float]) -> dict:
    """(model, method) -> sparsity -> mean/std of accuracy and measured sparsity."""
    cells: dict = {}
    for r in records:
        cols = sparsities if r["method"] == "dense" else [r["sparsity"]]
        for s in cols:
            cells.setdefault(r["model"], {}).setdefault(r["method"], {}).setdefault(f"{s:g}", []).append(r)
    out: dict = {}
    for model, methods in cells.items():
        for method, cols in methods.items():
            for s, rs in cols.items():
                acc = [r["accuracy"] for r in rs]
                meas = [r["measured"] for r in rs]
                cell = {"acc_mean": statistics.fmean(acc), "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                        "measured_mean": statistics.fmean(meas), "measured_min": min(meas),
                        "measured_max": max(meas), "n": len(rs)}
                pre = [r["pre_projection"] for r in rs if "pre_projection" in r]
                if pre:
                    cell["pre_projection_mean"] = statistics.fmean(pre)
                out.setdefault(model, {}).setdefault(method, {})[s] = cell
    return out


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def markdown(summary: dict, args, info: dict, wall: float) -> str:
    cols = [f"{s:g}" for s in args.sparsities]
    lines = [
        "# Accuracy against sparsity on the embedded digits (`python bench/quality.py`)",
        "",
        f"Command: `{info['command']}`",
        "",
        f"Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores (shared), torch "
        f"{info['machine']['torch']}, Python {info['machine']['python']}; torch threads {args.threads} per process, "
        f"{args.procs} processes; wall time {wall / 60:.1f} min"
        + (f" for the {info['made']} runs made now (--resume: {info['reused']} read back from quality_runs.jsonl, "
           "made by earlier invocations)." if info.get("reused") else "."),
        "",
        f"Model / data: `sew_digits` on `digits_dvs` (T=4, 2x24x24 event frames, 1437 train / 360 test"
        f"{'' if args.limit is None else f', limited to {args.limit} samples per split'}), the data and model of "
        "`recipes/digits_snn_lats.toml` and `digits_ann_lats.toml` (SGD lr 0.1, momentum 0.9, per-step cosine, "
        f"batch 64). Every row: {args.epochs} epochs (the recipes train 12; cut to fit the time budget), "
        f"seeds {', '.join(map(str, args.seeds))}; same initial weights for every method of a seed.",
        "",
        "Cell: test accuracy mean ± std over the seeds (%) / measured sparsity (mean over the seeds, %, zeros over "
        "every conv and linear weight of the finalized model, 30 816 weights). How each row reaches the target: see "
        "the docstring of `bench/quality.py`; in short LATS = the λ controller (`target_sparsity`), the closed-form "
        "shapes = D from the LATS run of the first seed, then an exact projection onto the target at the last step "
        "(their sparsity before it is in the JSON, `pre_projection`), STR/LTP/smooth threshold = `target_sparsity` "
        "(regulariser feedback + projection at the last step), GMP = cubic to the last step, magnitude = one-shot at "
        "half the epochs then fine-tuning.",
    ]
    for model in ("snn", "ann"):
        if model not in summary:
            continue
        lines += ["", f"## {'SNN (IF neurons, T=4)' if model == 'snn' else 'ANN twin (ReLU)'}", "",
                  "| method | " + " | ".join(f"{float(c) * 100:g}%" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for method in METHODS:
            row = summary[model].get(method)
            if row is None:
                continue
            cells = []
            for c in cols:
                cell = row.get(c)
                cells.append("–" if cell is None else
                             f"{100 * cell['acc_mean']:.1f} ± {100 * cell['acc_std']:.1f} / "
                             f"{100 * cell['measured_mean']:.2f}")
            lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Raw records (per run: accuracy, measured sparsity, non-zeros per layer, final threshold, "
              "seconds): `quality.json`. Plot: `quality.png`.", ""]
    return "\n".join(lines)


def plot(summary: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("snn", "ann") if m in summary]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 6.2), sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    x = list(range(len(args.sparsities)))
    for ax, model in zip(axes[0], models):
        for i, method in enumerate(METHODS):
            row = summary[model].get(method)
            if row is None:
                continue
            ys = [100 * row[f"{s:g}"]["acc_mean"] if f"{s:g}" in row else math.nan for s in args.sparsities]
            es = [100 * row[f"{s:g}"]["acc_std"] if f"{s:g}" in row else math.nan for s in args.sparsities]
            style = dict(lw=2.6, color="black") if method == "lats" else dict(lw=1.4, color=cmap(i))
            if method == "dense":
                style = dict(lw=1.2, color="grey", ls="--")
            ax.errorbar(x, ys, yerr=es, marker="o", ms=4, capsize=3, label=LABELS[method], **style)
        ax.set_xticks(x, [f"{100 * s:g}%" for s in args.sparsities])
        ax.set_xlabel("target sparsity (conv + linear weights)")
        ax.set_title(f"{'SNN (sew_digits, IF, T=4)' if model == 'snn' else 'ANN twin (ReLU)'} on digits_dvs, "
                     f"{args.epochs} epochs, {len(args.seeds)} seeds")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["snn", "ann"], choices=["snn", "ann"])
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.99, 0.995])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="samples per split (data.limit)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--procs", type=int, default=2, help="processes over the grid")
    p.add_argument("--quick", action="store_true", help="lats and magnitude, 90%%, seed 0, 1 epoch, 128 samples, SNN")
    p.add_argument("--resume", action="store_true", help="skip the runs already in <out>/quality_runs.jsonl")
    p.add_argument("--replot", type=Path, default=None, help="only redraw the plot from this quality.json")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results; --quick: none)")
    args = p.parse_args(argv)
    if args.quick:
        args.methods, args.sparsities, args.seeds, args.epochs = ["lats", "magnitude"], [0.9], [0], 1
        args.limit, args.procs, args.models = args.limit or 128, 1, ["snn"]
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if args.replot is not None:
        saved = json.loads(args.replot.read_text())
        for key in ("sparsities", "seeds", "epochs"):
            setattr(args, key, saved["config"][key])
        plot(saved["summary"], args, (out or RESULTS) / "quality.png")
        return 0
    started = time.perf_counter()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (out / "quality_runs.jsonl").unlink(missing_ok=True)
    records = run_grid(args, None if out is None else out / "quality_runs.jsonl")
    wall = time.perf_counter() - started
    summary = summarise(records, args.sparsities)
    info = {"command": "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(), "wall_seconds": wall, "reused": sum(r["reused"] for r in records),
            "made": sum(not r["reused"] for r in records),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(markdown(summary, args, info, wall))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.json").write_text(json.dumps({**info, "summary": summary, "runs": records}, indent=1))
        (out / "quality.md").write_text(markdown(summary, args, info, wall))
        plot(summary, args, out / "quality.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
