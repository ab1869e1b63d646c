"""The console: a rich progress bar per epoch and one table row per epoch, as a sink of
:func:`snnprune.engine.train` (the engine itself prints nothing).

Columns: the known metrics in :data:`EPOCH_COLUMNS` with their formats, then any other numeric
metric an epoch carries (a metric registered later shows up without a change here).

Example::

    >>> import io
    >>> from rich.console import Console
    >>> sink = ConsoleSink(Console(file=io.StringIO(), width=120))
    >>> sink.on_epoch_end({"epoch": 1, "train_loss": 0.5, "test_acc": 0.75, "macs": 1e6})
    >>> print(sink.console.file.getvalue().rstrip())
    epoch  train loss  test acc       macs
        1      0.5000    75.00%      1e+06
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

__all__ = ["ConsoleSink", "EPOCH_COLUMNS", "make_console"]

#: Columns of the per-epoch table: (metrics key, header, format).
EPOCH_COLUMNS = [
    ("epoch", "epoch", "{:d}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("train_acc", "train acc", "{:.2%}"),
    ("test_loss", "test loss", "{:.4f}"),
    ("test_acc", "test acc", "{:.2%}"),
    ("lr", "lr", "{:.4g}"),
    ("threshold", "threshold", "{:.4g}"),
    ("sparsity", "sparsity", "{:.2%}"),
    ("regrowth", "regrowth", "{:.3%}"),
    ("seconds", "time (s)", "{:.1f}"),
]


def make_console(stderr: bool = False) -> Console:
    """A rich console; when the output is not a terminal (a log file, CI) tables get 160 columns
    instead of rich's 80 so that they are not folded."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


class ConsoleSink:
    """Header line, a transient progress bar per epoch (on a terminal only), one aligned table row
    per epoch under a header printed once."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console()
        self._columns = None  # fixed at the first epoch, so the rows line up under one header
        self._progress = None
        self._task = None

    def on_start(self, info: dict) -> None:
        recipe, n = info["recipe"], info["world_size"]
        self.console.print(
            f"[bold]{recipe.name}[/bold] — {recipe.description or recipe.family} "
            f"({n} process{'es' * (n > 1)} on {info['device']}; run folder {info['run_dir']})"
        )

    def on_epoch_start(self, epoch: int, steps: int, done: int) -> None:
        self._stop_progress()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"epoch {epoch + 1}", total=steps, completed=done, info="")

    def on_step(self, epoch: int, step_in_epoch: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step_in_epoch, info=f"loss {loss:.3f}")

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_epoch_end(self, metrics: dict) -> None:
        self._stop_progress()
        first = self._columns is None
        if first:
            known = {k for k, _, _ in EPOCH_COLUMNS}
            self._columns = [(k, h, f) for k, h, f in EPOCH_COLUMNS if metrics.get(k) is not None]
            self._columns += [(k, k, "{:.4g}") for k, v in metrics.items()
                              if k not in known and isinstance(v, (int, float)) and not isinstance(v, bool)]
        table = Table(show_header=first, header_style="bold", box=None, pad_edge=False)
        for _, header, _ in self._columns:
            table.add_column(header, justify="right", min_width=max(len(header), 9))
        table.add_row(*["" if metrics.get(k) is None else fmt.format(metrics[k]) for k, _, fmt in self._columns])
        self.console.print(table)

    def on_event(self, kind: str, fields: dict) -> None:
        """One dim line for what changes the run's course: the channel cut, a frozen mask, a trail
        checkpoint, a skipped batch (the full fields are in metrics.jsonl)."""
        line = _event_line(kind, fields)
        if line is not None:
            self._stop_progress()
            self.console.print(f"[dim]{line}[/dim]")

    def on_end(self, result) -> None:
        self._stop_progress()

    def close(self) -> None:
        self._stop_progress()


def _event_line(kind: str, f: dict) -> str | None:
    """The console's words for an engine event, or None for the ones it does not show.

    Example::

        >>> _event_line("channel_prune", dict(epoch=2, criterion="optimal", parameters_before=30816,
        ...             parameters_after=15400, dense_macs_per_sample_before=2.0e6,
        ...             dense_macs_per_sample_after=1.0e6, layers={"a": [8, 16]}))
        'epoch 3: channels cut (optimal) in 1 layer: parameters 30816 -> 15400, dense MACs per sample x0.500'
    """
    if kind == "channel_prune":
        n = len(f.get("layers", {}))
        ratio = f["dense_macs_per_sample_after"] / max(f["dense_macs_per_sample_before"], 1)
        return (f"epoch {f['epoch'] + 1}: channels cut ({f['criterion']}) in {n} layer{'s' * (n != 1)}: parameters "
                f"{f['parameters_before']} -> {f['parameters_after']}, dense MACs per sample x{ratio:.3f}")
    if kind == "freeze":
        return f"epoch {f['epoch'] + 1}: mask frozen at sparsity {f['sparsity']:.2%}"
    if kind == "trail":
        acc = "" if f.get("test_acc") is None else f", test acc {f['test_acc']:.2%}"
        return f"trail: {f['file']} (sparsity {f['sparsity']:.2%}{acc})"
    if kind == "skipped_batch":
        return f"step {f['step']}: batch skipped ({f['problem']})"
    return None
