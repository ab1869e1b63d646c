"""Result tables: the summary printed at the end of ``snnprune train`` and ``snnprune demo``."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

__all__ = ["print_summary", "make_console"]


def make_console(stderr: bool = False) -> Console:
    """A rich console; when the output is not a terminal (a log file, CI) tables get 160 columns
    instead of rich's 80 so that they are not folded."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


def method_label(recipe) -> str:
    """How a recipe prunes, in a few words: "dense", "str (learned)", "soft_threshold / lats"."""
    p = recipe.pruning
    if p.method == "none":
        return "dense"
    if p.method == "str":
        return "str (learned)"
    return f"{p.method} / {p.schedule}" + (" (fixed mask)" if recipe.family == "pruning_at_initialization" and p.fixed_mask else "")


def print_summary(runs, title: str = "result", console: Console | None = None) -> Table:
    """One row per ``(recipe, RunResult)``: final and best test accuracy, total sparsity (zeros
    over every conv/linear weight), final threshold and where the run lives."""
    table = Table(title=title)
    for column in ("recipe", "model", "family", "method", "test acc", "best acc", "sparsity", "threshold", "run"):
        table.add_column(column, justify="right" if column in ("test acc", "best acc", "sparsity", "threshold") else "left")
    for recipe, result in runs:
        final = result.final
        threshold = final.get("threshold")
        table.add_row(
            recipe.name,
            recipe.model.name + (" (ANN twin)" if recipe.model.twin else ""),
            recipe.family,
            method_label(recipe),
            f"{final.get('test_acc', float('nan')):.2%}",
            f"{result.best_acc:.2%}",
            f"{final.get('sparsity', float('nan')):.2%}",
            "—" if threshold is None else f"{threshold:.4g}",
            str(result.run_dir),
        )
    (console or make_console()).print(table)
    return table
