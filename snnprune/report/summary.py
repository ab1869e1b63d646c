"""Result tables: the summary printed at the end of ``snnprune train`` and ``snnprune demo``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .console import make_console

__all__ = ["print_summary", "method_label"]


def method_label(recipe) -> str:
    """How a recipe prunes, in a few words: "dense", "str (learned)", "soft_threshold / lats" (the
    method config's own label), "(fixed mask)" for a mask set at initialization and kept, and
    "channels / optimal" for the channel family.

    Example::

        >>> from snnprune.recipe import load_recipe
        >>> method_label(load_recipe("digits_snn_pai")), method_label(load_recipe("imagenet_resnet50_str"))
        ('soft_threshold / lats (fixed mask)', 'str (learned)')
        >>> method_label(load_recipe("digits_snn_channels"))
        'channels / optimal'
    """
    p = recipe.pruning
    if recipe.family == "channel_pruning":
        return f"channels / {recipe.channels.criterion}"
    fixed = recipe.family == "pruning_at_initialization" and getattr(p, "fixed_mask", False)
    return p.label + (" (fixed mask)" if fixed else "")


def print_summary(runs, title: str = "result", console: Console | None = None) -> Table:
    """One row per ``(recipe, RunResult)``: final and best test accuracy, total sparsity (zeros
    over every conv/linear weight), final threshold and where the run lives."""
    table = Table(title=title)
    right = ("test acc", "best acc", "sparsity", "threshold")
    for column in ("recipe", "model", "family", "method", *right, "run"):
        table.add_column(column, justify="right" if column in right else "left")
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
