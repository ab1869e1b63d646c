"""The ``snnprune`` command line (also ``python -m snnprune``).

    snnprune train RECIPE [--set key=value ...] [--out DIR] [--resume] [--smoke]
    snnprune recipes
    snnprune demo
    snnprune report RUN_DIR|CHECKPOINT [--json|--markdown] [--plot [DIR]]
    snnprune compare RUN_DIR ... [--json|--markdown] [--plot FILE.png]
    snnprune export RUN_DIR|CHECKPOINT --format state_dict|sparse|onnx|nir --out FILE
    snnprune sensitivity RUN_DIR|CHECKPOINT|RECIPE [--out DIR] [--sparsities S ...] [--batches N] [--smoke]

Bad input (unknown recipe key, wrong type, value out of range, missing data folder, unreadable
checkpoint, a run folder that already holds a run) prints one line on stderr and exits with code 2;
nothing is overwritten. A run stopped by a NaN or infinite loss, gradient, threshold or weight
prints one line naming the step and exits with code 3 (its checkpoints are the last good ones);
under torchrun, a process that died or hung past ``SNNPRUNE_DIST_TIMEOUT`` ends the others with one
line and code 4; an interrupted run (SIGINT, SIGTERM) saves and exits with code 130. Output piped into
a reader that stops early (``| head``) ends quietly with code 141, as a program killed by SIGPIPE.
``SNNPRUNE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3  # a NaN or infinity stopped the run (the checkpoints are the last good ones)
EXIT_DISTRIBUTED = 4  # under torchrun: another process died or hung (resume from the last checkpoint)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what the shell sees from a program whose reader went away


class UsageError(ValueError):
    """A command-line argument that cannot be used (``--out`` naming a folder, an unwritable place)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="snnprune", description="Soft-threshold pruning of spiking and ordinary networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="run a recipe", description="Train and prune with a recipe.")
    train.add_argument("recipe", help="a recipe file (.toml/.json) or the name of a shipped recipe")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set optim.lr=0.05 (repeatable)")
    train.add_argument("--out", type=Path, default=None, help="run folder (default runs/<recipe name>)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in the run folder")
    train.add_argument("--smoke", action="store_true",
                       help="a smoke test: each phase of the recipe one epoch of one small batch (default run folder "
                            "runs/smoke/<recipe>, replaced each time); a data set not on this machine is replaced "
                            "by a small random stand-in in its layout")

    sub.add_parser("recipes", help="list the shipped recipes", description="List the shipped recipes.")

    report = sub.add_parser("report", help="what a trained run costs, layer by layer",
                            description="Per-layer sparsity, SOPs/MACs and firing of a run, and a summary.")
    report.add_argument("run", type=Path, help="a run folder or one of its .pt files")
    report.add_argument("--plot", type=Path, nargs="?", const=_RUN_FOLDER, default=None, metavar="DIR",
                        help="write training_curves.png and layer_sparsity.png (default: into the run folder)")
    compare = sub.add_parser("compare", help="runs side by side (an SNN and its ANN twin, methods)",
                             description="Accuracy, sparsity, parameters, operations and energy of runs, with ratios.")
    compare.add_argument("runs", type=Path, nargs="+", help="run folders or .pt files; ratios are to the first")
    compare.add_argument("--plot", type=Path, default=None, help="write a PNG: accuracy against sparsity, energy")
    for p in (report, compare):
        fmt = p.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true", help="print JSON")
        fmt.add_argument("--markdown", action="store_true", help="print a markdown table")

    export = sub.add_parser("export", help="take the pruned model away", description="Export a run's model.")
    export.add_argument("run", type=Path, help="a run folder or one of its .pt files")
    export.add_argument("--format", required=True, choices=("state_dict", "sparse", "onnx", "nir"))
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    export.add_argument("--fuse-bn", action="store_true", help="NIR: fold batch norm into the convolutions first")

    sens = sub.add_parser("sensitivity", help="accuracy as each layer alone is pruned (one-shot magnitude)",
                          description="Prune one layer at a time over a grid of sparsities (one-shot magnitude, no "
                                      "training) and measure the accuracy on a validation split carved from the "
                                      "training data; writes sensitivity.json and sensitivity.png "
                                      "(Pruner(allocation='sensitivity:PATH') reads the JSON).")
    sens.add_argument("source", help="a run folder or one of its .pt files (its final, else best, else last model), "
                                     "or a recipe file or shipped recipe name (its model as initialised)")
    sens.add_argument("--out", type=Path, default=None,
                      help="folder to write into (default: the run folder; runs/sensitivity/<recipe> for a recipe)")
    sens.add_argument("--sparsities", type=float, nargs="+", default=None, metavar="S",
                      help="the grid, each in (0, 1) (default 0.3 0.5 0.7 0.8 0.9 0.95 0.98 0.99)")
    sens.add_argument("--batches", type=int, default=None, help="measure on the first N validation batches only")
    sens.add_argument("--smoke", action="store_true",
                      help="a quick check: the recipe's smoke version, the grid 0.5 0.9 (unless given), 2 batches")

    demo = sub.add_parser("demo", help="the digits SNN and its ANN twin, dense and LATS-pruned, compared",
                          description="Train the embedded-digits SNN and its ANN twin, dense and with LATS; compare.")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the four runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that went away shows here, inside the handler below
        return code
    except BrokenPipeError:
        # The reader of our output (`| head`, `| less`) stopped early: nothing is wrong. Python would
        # still try to flush stdout at exit and print an error; point stdout at devnull first
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        codes = _exit_codes()
        kind = next((k for k in codes if isinstance(exc, k)), None)
        if kind is None or os.environ.get("SNNPRUNE_DEBUG"):
            raise
        print(f"snnprune: {_one_line(exc)}", file=sys.stderr)
        return codes[kind]


def _one_line(exc: Exception) -> str:
    """The first line of the message; for an error a DataLoader worker re-raised ("Caught X in
    DataLoader worker process 0." and the worker's traceback), the worker's own message."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0] and len(lines) > 1:
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def _exit_codes() -> dict[type[Exception], int]:
    """Errors with a one-line message and their exit codes: the user's input (2), a run that
    diverged (3), a process of a distributed run that died or hung (4)."""
    from .engine.distributed import DistributedError
    from .engine.trainer import NonFiniteError

    return {NonFiniteError: EXIT_NONFINITE, DistributedError: EXIT_DISTRIBUTED,
            **dict.fromkeys(_user_errors(), EXIT_BAD_INPUT)}


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose one-line message tells the user what to fix (everything else is a bug and
    keeps its traceback)."""
    from .data import DatasetNotFoundError
    from .data.neuromorphic import CorruptRecordingError
    from .engine.trainer import RunExistsError
    from .export import ExportError
    from .recipe import RecipeError
    from .runs import CheckpointError

    return (RecipeError, RunExistsError, CheckpointError, DatasetNotFoundError, CorruptRecordingError, ExportError,
            UsageError)


def _train(args) -> int:
    from .engine import train
    from .recipe import load_recipe
    from .report import ConsoleSink, PlotSink, print_summary

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file: the run folder is a folder (an existing one, or a new name)")
    recipe = load_recipe(args.recipe, args.overrides, smoke=args.smoke)
    out, fresh = args.out, False
    if args.smoke:
        recipe = _smoke_data(recipe)
        if out is None:  # the smoke runs' own folder: a smoke run replaces the last one
            out, fresh = Path("runs") / "smoke" / recipe.name, not args.resume
    result = train(recipe, out, resume=args.resume, fresh=fresh, sinks=[ConsoleSink(), PlotSink()])
    if result.interrupted:
        print(f"snnprune: interrupted; saved {result.run_dir / 'last.pt'} — continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.is_main:  # under torchrun, one table
        print_summary([(recipe, result)])
    return 0


def _smoke_data(recipe):
    """The data of a smoke run: large images cut small (:func:`~snnprune.recipe.smoke.smoke_image_size`),
    and a data set this machine does not have replaced by its stand-in
    (:mod:`snnprune.data.standin`: random samples in the real layout, read by the real loader),
    said in one line."""
    from .build import call_with_kwargs
    from .data import DatasetNotFoundError, create_dataset, dataset_info, default_root
    from .data.standin import STANDINS, write_standin
    from .recipe.smoke import smoke_image_size

    d = recipe.data
    info = call_with_kwargs("data.name", dataset_info, d.name)  # an unknown name: one line
    update = {}
    size = smoke_image_size(info.sample_shape, info.events, d.kwargs)
    if size is not None:
        update["kwargs"] = {**d.kwargs, "image_size": size}
    if d.name in STANDINS:
        try:
            create_dataset(d.name, d.root, "test")
        except DatasetNotFoundError:
            update["root"] = str(write_standin(d.name))
            print(f"smoke: {d.name} is not in {d.root or default_root()}: training on a stand-in of random samples "
                  f"in its layout ({update['root']}); give data.root or SNNPRUNE_DATA to smoke-test the real files")
    return recipe.model_copy(update={"data": d.model_copy(update=update)}) if update else recipe


def _recipes(args) -> int:
    from rich.table import Table

    from .recipe import list_recipes, load_recipe
    from .report import make_console, method_label

    table = Table(title="shipped recipes (snnprune train NAME)")
    for column in ("name", "family", "model", "data", "method / schedule", "epochs"):
        table.add_column(column)
    for path in list_recipes():
        r = load_recipe(path)
        table.add_row(path.stem, r.family, r.model.name + (" (twin)" if r.model.twin else ""), r.data.name,
                      method_label(r), str(r.epochs))
    make_console().print(table)
    make_console().print(_methods_table())
    return 0


def _methods_table():
    """The registered methods (a user's too, once imported): what ``pruning.method`` may name."""
    from rich.table import Table

    from .recipe.methods import PruningMethodConfig
    from .reparam import list_methods

    table = Table(title="pruning methods (pruning.method)")
    for column in ("method", "control", "keys of its own", "what it is"):
        table.add_column(column)
    shared = set(PruningMethodConfig.model_fields)
    for m in list_methods():
        keys = [k for k in m.config.model_fields if k not in shared]
        table.add_row(m.name, m.control, ", ".join(keys), m.description)
    return table


def _demo(args) -> int:
    from .engine import train
    from .recipe import load_recipe
    from .report import ConsoleSink, PlotSink, make_console
    from .report.runs import compare_runs, compare_table, plot_compare
    from .runs import run_status

    runs = []
    for name in ("digits_snn_dense", "digits_snn_lats", "digits_ann_dense", "digits_ann_lats"):
        recipe = load_recipe(name)
        out = args.out / name
        status = run_status(out, recipe)  # the demo's own folders: continue the same run, else start afresh
        result = train(recipe, out, resume=status == "same", fresh=status == "other",
                       sinks=[ConsoleSink(), PlotSink()])
        if result.interrupted:
            print("snnprune: interrupted; run `make demo` again to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        runs.append(result)
    if runs[-1].is_main:
        rows = compare_runs([r.run_dir for r in runs])
        png = plot_compare(rows, args.out / "compare.png")
        table = compare_table(rows)
        table.title = "embedded digits: the SNN and its ANN twin, dense and LATS-pruned (ratios to the dense SNN)"
        make_console().print(table)
        print(f"picture: {png}")
    return 0


_RUN_FOLDER = Path("<run folder>")  # `report --plot` without a directory


def _check_exists(*paths: Path) -> None:
    from .runs import CheckpointError

    for path in paths:
        if not path.exists():
            raise CheckpointError(f"no run folder or checkpoint at {path}")


def _check_writable_file(path: Path, flag: str, example: str) -> None:
    """Refuse, before any work, a file argument that names a folder or a place no file can be
    written: one line naming the flag and the fix. The test writes (and removes) an empty file
    next to ``path``, so it holds for every user, root included, and every file system."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: name the file to write, e.g. {flag} {path / example}")
    folder = path.parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"{flag} {path}: {blocking} is a file, not a folder: give a {flag} in a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{flag} {path}: cannot write in {exc.filename or folder} ({reason}): "
                         f"give a {flag} in a folder you can write") from None


def _report(args) -> int:
    from .report import make_console
    from .report.plots import write_run_plots
    from .report.runs import dumps, report_table, run_report, to_markdown

    _check_exists(args.run)
    result = run_report(args.run)
    pngs = write_run_plots(args.run, None if args.plot is _RUN_FOLDER else args.plot) if args.plot else []
    if args.json:
        print(dumps(result))
    elif args.markdown:
        columns = [("name", ""), ("sparsity", "pct"), ("kind", ""), ("sops", ""), ("macs", ""), ("input_rate", "")]
        print(to_markdown(result["layers"], columns))
    else:
        make_console().print(report_table(result))
    if pngs:  # on stderr under --json/--markdown, which stay machine-readable
        print("wrote " + ", ".join(map(str, pngs)), file=sys.stderr if args.json or args.markdown else sys.stdout)
    return 0


def _compare(args) -> int:
    from .report import make_console
    from .report.runs import compare_runs, compare_table, dumps, plot_compare, to_markdown

    _check_exists(*args.runs)
    if args.plot is not None:
        _check_writable_file(args.plot, "--plot", "compare.png")
    rows = compare_runs(args.runs)
    if args.plot is not None:
        plot_compare(rows, args.plot)
    if args.json:
        print(dumps(rows))
    elif args.markdown:
        print(to_markdown(rows))
    else:
        make_console().print(compare_table(rows))
    return 0


def _export(args) -> int:
    from .export import ExportError
    from .export.run import export_run

    _check_exists(args.run)
    _check_writable_file(args.out, "--out", f"model{_SUFFIXES[args.format]}")
    try:
        summary = export_run(args.run, args.format, args.out, fuse_bn=args.fuse_bn)
    except ValueError as exc:  # a layer the format cannot express, named in the message
        raise ExportError(str(exc).strip().splitlines()[0]) from None
    ratio = f", {summary['ratio']:.3f} of the dense state_dict" if "ratio" in summary else ""
    print(f"wrote {summary['out']} ({summary['format']}, {summary['size_bytes']} bytes{ratio})")
    return 0


def _sensitivity(args) -> int:
    import torch
    from rich.progress import Progress
    from rich.table import Table

    from .build import build_model, build_validation_set
    from .data import dataset_info, make_loader
    from .recipe import load_recipe
    from .report import make_console
    from .report.sensitivity import write_sensitivity
    from .runs import CheckpointError, load_run_model
    from .sensitivity import DEFAULT_SPARSITIES, sensitivity

    grid = args.sparsities or ((0.5, 0.9) if args.smoke else DEFAULT_SPARSITIES)
    bad = next((s for s in grid if not 0.0 < s < 1.0), None)
    if bad is not None:
        raise UsageError(f"--sparsities {bad}: each sparsity must be in (0, 1), e.g. --sparsities 0.5 0.9 0.99")
    if args.batches is not None and args.batches < 1:
        raise UsageError(f"--batches {args.batches}: give a number of batches >= 1")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file: name a folder to write sensitivity.json and .png into")
    source = Path(args.source)
    if source.is_dir() or (source.suffix == ".pt" and source.exists()):
        model, info = load_run_model(source)
        recipe = info["recipe"]
        if recipe is None:
            raise CheckpointError(f"{source}: no recipe saved with the run, so its data is unknown")
        read = Path(info["path"])
        what, out = f"run {read.parent.name}/{read.name}", args.out or (source if source.is_dir() else source.parent)
    else:
        recipe = load_recipe(args.source, smoke=args.smoke)
        if args.smoke:
            recipe = _smoke_data(recipe)
        torch.manual_seed(recipe.seed)  # the model as initialised, seeded by the recipe
        model = build_model(recipe, dataset_info(recipe.data.name)).eval()
        what, out = f"recipe {recipe.name} (untrained)", args.out or Path("runs") / "sensitivity" / recipe.name
    batches = args.batches if args.batches is not None else (2 if args.smoke else None)
    val_set = build_validation_set(recipe)
    loader, samples = make_loader(val_set, recipe.batch_size, train=False, workers=recipe.data.workers), len(val_set)
    console = make_console()
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("probing layers", total=None)
        result = sensitivity(model, loader, sparsities=grid, batches=batches,
                             progress=lambda name, done, total: bar.update(task, completed=done, total=total,
                                                                           description=name))
    written = write_sensitivity(result, out, title=f"sensitivity of {recipe.name} ({what})")
    shown = min(samples, batches * recipe.batch_size) if batches else samples
    table = Table(title=f"{what}: accuracy with one layer pruned (validation split, {shown} "
                        f"sample{'s' * (shown != 1)}; unpruned {result['baseline']:.2%})")
    table.add_column("layer")
    table.add_column("weights", justify="right")
    for s in result["sparsities"]:
        table.add_column(f"{s:.0%}" if 100 * s == int(100 * s) else f"{s:.1%}", justify="right")
    for name, row in result["layers"].items():
        cells = [f"{a:.2%}" if result["baseline"] - a <= 0.01 else f"[red]{a:.2%}[/red]" for a in row["accuracy"]]
        table.add_row(name, f"{row['numel']:,}", *cells)
    table.caption = "red: more than 1 point below the unpruned accuracy"
    console.print(table)
    console.print(f"wrote {written[0]}, {written[1]}")
    return 0


_SUFFIXES = {"state_dict": ".pt", "sparse": ".sparse.pt", "onnx": ".onnx", "nir": ".nir"}  # file-name examples

_COMMANDS = {"train": _train, "recipes": _recipes, "demo": _demo, "report": _report, "compare": _compare,
             "export": _export, "sensitivity": _sensitivity}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
