"""Energy per sample of a pruned digits SNN against the same net trained dense (45 nm table).

Trains the recipe (default ``digits_snn_energy100``) and its dense twin: the same recipe with
``family = "dense"`` and ``pruning.method = "none"`` (same net, data, optimizer, epochs, seed),
then counts both on the whole digits test set with ``snnprune.report.runs.compare_runs`` (the
engine of ``snnprune compare``): energy = MACs x 4.6 pJ + SOPs x 0.9 pJ, the first layer's MACs on
the analog pixels included, and the SOP reduction split into its spike and weight parts.

Run:  OMP_NUM_THREADS=1 python bench/energy.py [--recipe NAME] [--set key=value ...] [--runs DIR]
Writes bench/results/<name>.json and .md (``--name``, default the recipe's name). Run folders
already finished under ``--runs`` (default /tmp/snnprune-energy) are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from snnprune.engine import train
from snnprune.recipe import load_recipe
from snnprune.report.runs import compare_runs
from snnprune.runs import FINAL, read_recipe, run_status

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    from overhead import _cpu_model  # the machine line of the benchmarks
finally:
    sys.path.pop(0)

RESULTS = Path(__file__).resolve().parent / "results"
TEST_SAMPLES = 360  # the whole digits test split


def dense_twin(recipe):
    """The recipe's net trained dense: same everything, no pruning."""
    data = recipe.model_dump(mode="json")
    data.update(name=f"{recipe.name}_dense", family="dense", pruning={"method": "none"},
                description=f"{recipe.name} trained dense (the reference of bench/energy.py)")
    for key in ("early_pruning", "sparsify_during_training", "pruning_at_initialization"):
        data.pop(key, None)
    return load_recipe(data)


def run(recipe, folder: Path) -> tuple[Path, float]:
    """Train ``recipe`` into ``folder`` unless a finished run of it is there; seconds spent."""
    if run_status(folder, recipe) == "same" and (folder / FINAL).is_file():
        return folder, 0.0
    start = time.perf_counter()
    train(recipe, folder, fresh=True)
    return folder, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits_snn_energy100")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/snnprune-energy"))
    parser.add_argument("--dense", type=Path, default=None,
                        help="a finished run folder of the dense twin (default: trained, or read back, under --runs)")
    parser.add_argument("--name", default=None, help="results file stem (default: the recipe's name)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    recipe = load_recipe(args.recipe, args.overrides)
    dense = dense_twin(recipe)
    tag = "-".join(o.replace("=", "_").replace("/", "_") for o in args.overrides)
    dense_dir, dense_s = (args.dense, 0.0) if args.dense else run(dense, args.runs / dense.name)
    if args.dense:  # another recipe's dense twin: it must be this one's, but for its name
        saved = read_recipe(args.dense)
        mine, theirs = dense.model_dump(mode="json"), saved.model_dump(mode="json") if saved else {}
        for d in (mine, theirs):
            d.pop("name", None), d.pop("description", None)
        if mine != theirs:
            raise SystemExit(f"--dense {args.dense}: not a run of this recipe's dense twin")
    pruned_dir, pruned_s = run(recipe, args.runs / (recipe.name + (f"-{tag}" if tag else "")))
    base, row = compare_runs([dense_dir, pruned_dir], batch=TEST_SAMPLES)
    result = {
        "command": "OMP_NUM_THREADS=1 python bench/energy.py "
                   + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "machine": {"cpu": _cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
        "recipe": recipe.model_dump(mode="json"),
        "seconds": {"dense": dense_s, "pruned": pruned_s},
        "dense_run": str(dense_dir), "dense": base, "pruned": row,
        "energy_reduction": 1 / row["energy_pj_ratio"],
        "sops_reduction": 1 / row["sops_ratio"] if row["sops_ratio"] else None,
        "accuracy_drop_points": 100 * (base["test_acc"] - row["test_acc"]),
    }
    name = args.name or recipe.name
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    d, p = r["dense"], r["pruned"]

    def line(label, row):
        return (f"| {label} | {100 * row['test_acc']:.2f} | {100 * row['sparsity']:.2f} | {row['nonzero_params']} | "
                f"{row['macs']:.4g} | {row['sops']:.4g} | {row['firing_rate']:.4f} | {row['energy_pj'] / 1e3:.4g} |")

    spike, weight = p["sops_spike_ratio"], p["sops_weight_ratio"]
    m = r["machine"]
    return "\n".join([
        f"# Energy per sample: `{r['recipe']['name']}` against the same net trained dense (`python bench/energy.py`)",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m['cpu']}, torch {m['torch']} ({m['threads']} threads), Python {m['python']}; "
        f"training {r['seconds']['dense']:.0f} s dense, {r['seconds']['pruned']:.0f} s pruned (0: read back).",
        "",
        f"Counted on the {TEST_SAMPLES} digits test samples, per sample, 45 nm table (MAC 4.6 pJ, SOP 0.9 pJ); the "
        "first layer's MACs on the analog pixels are included.",
        "",
        "| run | test acc. (%) | sparsity (%) | non-zero weights | MACs | SOPs | firing rate | energy (nJ) |",
        "|---|---|---|---|---|---|---|---|",
        line(f"dense ({d['recipe']})", d),
        line(r["recipe"]["name"], p),
        "",
        f"**Energy {r['energy_reduction']:.1f}x lower** at {r['accuracy_drop_points']:+.2f} points of accuracy "
        f"(dense minus pruned). SOPs {r['sops_reduction']:.1f}x lower = spikes {1 / spike:.2f}x x "
        f"kept synapses met {1 / weight:.1f}x (the spike part is {100 * p['sops_spike_share']:.0f}% of the "
        "log reduction; `snnprune compare`).",
    ])


if __name__ == "__main__":
    main()
