"""The training engine: run a recipe on one process or many (torchrun), with atomic checkpoints,
exact resume and JSONL/TensorBoard logs. It prints nothing: a caller that wants a console passes
a sink (``train(recipe, sinks=[snnprune.report.ConsoleSink()])``).

* :mod:`.run` — :class:`Run`, everything a running recipe holds, :class:`RunResult` and the
  :class:`Callback` protocol;
* :mod:`.families` — dense, sparsify during training, early pruning, pruning at initialization,
  channel pruning: when a run prunes;
* :mod:`.callbacks` — the callbacks every run has: epoch metrics, checkpoints, sinks;
* :mod:`.trail` — a finalized model at every new 5% of sparsity;
* :mod:`.state` — run state and RNG capture/restore;
* :mod:`.trainer` — :func:`train` and the loop.

The run folder's files (checkpoints, logs, what a folder holds) are written and read by
:mod:`snnprune.runs`; the recipe becomes data,
model, optimizer and pruner in :mod:`snnprune.build`.
"""

from .callbacks import EpochMetric, Sink
from .families import FAMILIES, Family
from .run import Callback, NonFiniteError, Run, RunResult
from .trainer import RunExistsError, train

__all__ = ["train", "RunResult", "RunExistsError", "NonFiniteError", "Run", "Callback", "EpochMetric", "Sink",
           "Family", "FAMILIES"]
