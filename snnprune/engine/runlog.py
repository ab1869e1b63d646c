"""The run folder's logs: JSONL metrics, TensorBoard scalars and rich tables on the console.

Only the main process (rank 0) writes; other ranks get a logger that does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..report import make_console

__all__ = ["RunLog", "EPOCH_COLUMNS"]

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


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.console = console or make_console()
        self._jsonl = None
        self._tb = None
        self._columns = None  # fixed at the first epoch, so the rows line up under one header
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def progress(self) -> Progress:
        """A progress display for one epoch (shown on a terminal only)."""
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.enabled or not self.console.is_terminal,
        )

    def print(self, *args, **kwargs) -> None:
        if self.enabled:
            self.console.print(*args, **kwargs)

    def epoch(self, metrics: dict) -> None:
        """Write one epoch's metrics to JSONL and TensorBoard and print them as a table row."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"kind": "epoch", **metrics}) + "\n")
        step = metrics["epoch"]
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()
        first = self._columns is None
        if first:
            self._columns = [(k, h, f) for k, h, f in EPOCH_COLUMNS if metrics.get(k) is not None]
        table = Table(show_header=first, header_style="bold", box=None, pad_edge=False)
        for _, header, _ in self._columns:
            table.add_column(header, justify="right", min_width=max(len(header), 9))
        table.add_row(*["" if metrics.get(k) is None else fmt.format(metrics[k]) for k, _, fmt in self._columns])
        self.console.print(table)

    def event(self, kind: str, **fields) -> None:
        if self.enabled:
            self._jsonl.write(json.dumps({"kind": kind, **fields}) + "\n")

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

