"""The files of a run folder, their names and formats: ``recipe.json``, ``metrics.jsonl``,
``tensorboard/``, the checkpoints, the trail's listing; what a folder holds (:func:`run_status`)
and how a run is cleared (:func:`clear_run`).

Example::

    >>> import tempfile
    >>> from snnprune.recipe import load_recipe
    >>> folder = Path(tempfile.mkdtemp())
    >>> run_status(folder, load_recipe("digits_snn_lats"))
    'empty'
    >>> log = JSONLSink(folder)
    >>> log.on_epoch_end({"epoch": 1, "test_acc": 0.5}); log.on_event("end", {}); log.close()
    >>> run_history(folder)
    [{'kind': 'epoch', 'epoch': 1, 'test_acc': 0.5}]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..recipe import Recipe
from .checkpoint import atomic_write

__all__ = ["RECIPE", "METRICS", "TENSORBOARD", "LAST", "BEST", "FINAL", "TRAIL_DIR", "TRAIL_LISTING", "RUN_FILES",
           "run_status", "same_recipe", "read_recipe", "write_recipe", "clear_run", "remove_stale_writes",
           "JSONLSink", "TensorBoardSink", "run_history", "read_trail", "write_trail_listing"]

RECIPE, METRICS, TENSORBOARD = "recipe.json", "metrics.jsonl", "tensorboard"
#: the checkpoints: everything to resume (last, best) and the plain pruned model (final)
LAST, BEST, FINAL = "last.pt", "best.pt", "final_model.pt"
TRAIL_DIR, TRAIL_LISTING = "trail", "trail.json"

#: what a run writes in its folder (``fresh=True`` removes these and nothing else)
RUN_FILES = (RECIPE, METRICS, TENSORBOARD, LAST, BEST, FINAL, TRAIL_DIR, TRAIL_LISTING)


# -- recipe.json and the folder as a whole ---------------------------------------------------
def same_recipe(saved: dict, recipe: Recipe) -> bool:
    """Compared as validated recipes, so that a key added to the schema later (with its default)
    does not orphan an older run."""
    try:
        return Recipe.model_validate(saved) == recipe
    except ValueError:
        return False


def run_status(run_dir: str | Path, recipe: Recipe) -> str:
    """What ``run_dir`` holds: ``"empty"``, ``"same"`` (a run of ``recipe``: resume it) or ``"other"``
    (a run of another recipe, or an unreadable one).

    Args:
        run_dir: the run folder.
        recipe: the recipe about to run there.

    Returns:
        ``"empty"``, ``"same"`` or ``"other"``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).exists() and not (run_dir / RECIPE).exists():
        return "empty"
    try:
        saved = json.loads((run_dir / RECIPE).read_text())
    except (OSError, ValueError):
        return "other"
    return "same" if (run_dir / LAST).exists() and same_recipe(saved, recipe) else "other"


def read_recipe(run_dir: str | Path) -> Recipe | None:
    """The validated recipe of ``run_dir/recipe.json`` (None: missing or unreadable)."""
    try:
        return Recipe.model_validate(json.loads((Path(run_dir) / RECIPE).read_text()))
    except (OSError, ValueError):
        return None


def write_recipe(run_dir: str | Path, recipe: Recipe) -> None:
    (Path(run_dir) / RECIPE).write_text(recipe.model_dump_json(indent=2))


def clear_run(run_dir: str | Path) -> None:
    """Remove the files a run writes (:data:`RUN_FILES`), nothing else."""
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def remove_stale_writes(run_dir: str | Path) -> None:
    """Delete the temporary files of writes that were killed before their rename."""
    for stale in Path(run_dir).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


# -- metrics.jsonl and tensorboard/ ------------------------------------------------------------
class JSONLSink:
    """``metrics.jsonl``: one JSON line per epoch (``"kind": "epoch"``) and per event; a sink of
    :func:`snnprune.engine.train`."""

    def __init__(self, run_dir: str | Path) -> None:
        path = Path(run_dir) / METRICS
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    def _write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def on_epoch_end(self, metrics: dict) -> None:
        self._write({"kind": "epoch", **metrics})

    def on_event(self, kind: str, fields: dict) -> None:
        self._write({"kind": kind, **fields})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def run_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch lines of ``metrics.jsonl`` (an empty list when there is none); a line that
    does not parse (a run killed while writing it) is passed over."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if entry.get("kind") == "epoch":
            lines.append(entry)
    return lines


class TensorBoardSink:
    """``tensorboard/``: every numeric epoch metric as a scalar, the epoch as the step."""

    def __init__(self, run_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD))

    def on_epoch_end(self, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, metrics["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# -- the trail's listing -----------------------------------------------------------------------
def read_trail(run_dir: str | Path) -> list[dict]:
    """The entries of a run folder's ``trail.json`` (an empty list when there is none)."""
    path = Path(run_dir) / TRAIL_LISTING
    if not path.is_file():
        return []
    return list(json.loads(path.read_text())["entries"])


def write_trail_listing(run_dir: str | Path, step: float, entries: list[dict]) -> None:
    """``trail.json``, rewritten atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"step": step, "entries": entries}, indent=1)
    atomic_write(run_dir / TRAIL_LISTING, lambda f: f.write(text.encode() + b"\n"))
