"""Run folders: the one place that writes and reads them (the engine, ``snnprune report``,
``compare`` and ``export`` all go through here).

A run folder holds

* ``recipe.json`` — the recipe, validated;
* ``metrics.jsonl`` — one line per epoch (``"kind": "epoch"``) and per event; ``tensorboard/``;
* ``last.pt`` / ``best.pt`` — everything to resume (model, optimizer, LR schedule, scaler, pruner,
  family and callback state, RNG states, where the run is); ``final_model.pt`` — the plain pruned
  model (:func:`final_payload`);
* ``trail/sparsity_<percent>.pt`` and ``trail.json`` — the trail of a learned-threshold run.

Every ``.pt`` file is written atomically with a checksum (:func:`atomic_save`) and read with
``torch.load(weights_only=True)`` (:func:`load_checkpoint`).

* :mod:`.checkpoint` — atomic writes, checksums, reading checkpoints;
* :mod:`.folder` — the file names, ``recipe.json``, ``metrics.jsonl``, ``trail.json``, what a
  folder holds;
* :mod:`.model` — a run's model as a file and back (:func:`load_run_model`).
"""

from .checkpoint import (
    CheckpointError,
    atomic_save,
    atomic_write,
    first_nonfinite,
    load_checkpoint,
    load_run_checkpoint,
)
from .folder import (
    BEST,
    FINAL,
    LAST,
    RUN_FILES,
    TRAIL_DIR,
    TRAIL_LISTING,
    JSONLSink,
    TensorBoardSink,
    clear_run,
    read_recipe,
    read_trail,
    run_history,
    run_status,
    write_trail_listing,
)
from .model import final_payload, load_run_model

__all__ = ["CheckpointError", "atomic_save", "atomic_write", "first_nonfinite", "load_checkpoint",
           "load_run_checkpoint", "LAST", "BEST", "FINAL", "RUN_FILES", "TRAIL_DIR", "TRAIL_LISTING", "JSONLSink",
           "TensorBoardSink", "clear_run", "read_recipe", "read_trail", "run_history", "run_status",
           "write_trail_listing", "final_payload", "load_run_model"]
