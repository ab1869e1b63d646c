"""The trail: a finalized model each time the sparsity passes a new 5% step, so a user can pick one.

A learned-threshold method (LTP above all: Azarian et al. 2020 describe a *trail* of ever sparser
models) moves through many sparsities in one run; the end of the run is only one of them. With
``pruning.trail = true`` (the default for ``ltp``; any method can turn it on), at the end of every
epoch, after evaluation, the engine measures the sparsity over the pruned layers; when it has
passed a multiple of :data:`TRAIL_STEP` above every one recorded so far, it writes

* ``trail/sparsity_<percent>.pt`` — the model finalized at that moment, in the format of
  ``final_model.pt`` (``model``, ``model_name``, ``twin``, ``model_kwargs``, ``sparsity`` over
  every conv/linear weight), plus ``recipe``, ``epoch``, ``step``, ``test_acc`` and
  ``sparsity_pruned``, so ``snnprune report`` / ``export`` read the file on its own; written
  atomically, loadable with ``torch.load(weights_only=True)``;
* ``trail.json`` — the listing, rewritten atomically: one entry per file (``epoch``, ``step``,
  ``sparsity`` over the pruned layers, ``sparsity_total``, ``test_acc``, ``file``).

``<percent>`` is the highest 5% step passed (a jump from 12% to 27% in one epoch writes
``sparsity_25.pt``). Sparsity that falls back (regrowth) and rises again writes nothing until it
passes a step above the highest one recorded.

Resume: the listing is the trail's state. The trail is written before ``last.pt``, and a resumed
(or restarted) run first drops the entries of epochs after the checkpoint it continues from, with
their files; the replayed epoch then writes them again, so a run killed at any moment ends with
the listing of an uninterrupted run and no duplicate.

Example::

    >>> level(0.0999), level(0.10), level(0.4321)
    (5, 10, 40)
"""

from __future__ import annotations

import math
from pathlib import Path

from ..runs import TRAIL_DIR, TRAIL_LISTING, atomic_save, read_trail, write_trail_listing
from .callbacks import run_final_payload
from .run import Callback, Run

__all__ = ["Trail", "TRAIL_STEP", "TRAIL_DIR", "TRAIL_LISTING", "level", "read_trail"]

#: the sparsity step between two models of the trail (a fraction)
TRAIL_STEP = 0.05


def level(sparsity: float, step: float = TRAIL_STEP) -> int:
    """The highest multiple of ``step`` that ``sparsity`` has reached, in percent."""
    # the small slack keeps 0.15 (0.1499999... in binary) on its own step
    return int(math.floor(sparsity / step + 1e-9) * round(step * 100))


class Trail(Callback):
    """The trail of one run folder, a callback (rank 0 writes it; :meth:`of` gives the other ranks
    none)."""

    def __init__(self, run_dir, step: float = TRAIL_STEP) -> None:
        self.run_dir = Path(run_dir)
        self.step = step
        self.entries: list[dict] = []

    @classmethod
    def of(cls, run: Run) -> Trail | None:
        """The trail of ``run`` if its recipe asks for one (``pruning.trail``), else ``None``."""
        if run.pruner is None or not getattr(run.recipe.pruning, "trail", False) or not run.ctx.is_main:
            return None
        return cls(run.run_dir)

    @property
    def highest(self) -> int:
        return max((e["level"] for e in self.entries), default=0)

    def on_start(self, run: Run) -> None:
        self.resume(run.state.epoch)

    def resume(self, epochs_done: int) -> None:
        """Keep the entries of the first ``epochs_done`` epochs (those the checkpoint the run
        continues from has seen); drop the others and their files."""
        listed = read_trail(self.run_dir)
        self.entries = [e for e in listed if e["epoch"] <= epochs_done]
        for entry in listed[len(self.entries):]:  # the listing is in epoch order
            (self.run_dir / entry["file"]).unlink(missing_ok=True)
        if len(self.entries) != len(listed):
            write_trail_listing(self.run_dir, self.step, self.entries)

    def on_epoch_end(self, run: Run, metrics: dict) -> dict | None:
        """After evaluation: write the model and its entry (and emit a ``trail`` event) when a new
        step has been passed. Returns the entry (or ``None``)."""
        report = run.pruner.sparsity()
        reached = level(report.pruned, self.step)
        if reached <= self.highest:
            return None
        name = f"{TRAIL_DIR}/sparsity_{reached}.pt"
        payload = run_final_payload(run)
        entry = {"level": reached, "epoch": metrics["epoch"], "step": run.state.global_step,
                 "sparsity": report.pruned, "sparsity_total": payload["sparsity"],
                 "test_acc": metrics.get("test_acc"), "file": name}
        payload.update(recipe=run.recipe.model_dump(mode="json"), epoch=entry["epoch"], step=entry["step"],
                       test_acc=entry["test_acc"], sparsity_pruned=report.pruned)
        atomic_save(payload, self.run_dir / name)
        self.entries.append(entry)
        write_trail_listing(self.run_dir, self.step, self.entries)
        run.emit("trail", **entry)
        return entry
