"""The training engine: run a recipe on one process or many (torchrun), with atomic checkpoints,
exact resume and JSONL/TensorBoard logs. It prints nothing: a caller that wants a console passes
a sink (``train(recipe, sinks=[snnprune.report.ConsoleSink()])``).

* :mod:`.build` — recipe -> data, model, optimizer, LR schedule, pruner;
* :mod:`.state` — run state and RNG capture/restore;
* :mod:`.families` — dense, sparsify during training, early pruning, pruning at initialization;
* :mod:`.callbacks` — sinks, checkpoints, per-epoch metrics;
* :mod:`.trainer` — :func:`train` and the loop.
"""

from .callbacks import EPOCH_METRICS, Sink, register_epoch_metric
from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .families import FAMILIES, Family
from .trainer import Run, RunExistsError, RunResult, run_status, train

__all__ = ["train", "RunResult", "RunExistsError", "run_status", "Run", "Sink", "EPOCH_METRICS",
           "register_epoch_metric", "Family", "FAMILIES", "atomic_save", "load_checkpoint", "CheckpointError"]
