"""What a run measures and records: callbacks, called in one ordered list per run.

**Callbacks.** A callback is a :class:`~snnprune.engine.run.Callback` (or any object with some
of its methods; the loop calls those it has). The loop calls every callback of ``run.callbacks``,
in order, on every process (a callback may use collectives through ``run.ctx``; one that writes
files writes them where ``run.ctx.is_main``):

* ``on_start(run)`` — after the run is built or restored, before the first epoch;
* ``on_epoch_start(run, epoch)`` — ``epoch`` 0-based;
* ``on_step(run, loss)`` — after every optimizer step; ``loss`` is the running mean of the epoch;
* ``on_epoch_end(run, metrics)`` — after evaluation; a callback may add keys to ``metrics``;
* ``on_end(run)`` — once, however the run ends (``run.result`` says how);
* ``state_dict()`` / ``load_state_dict(state)`` — saved in every checkpoint, given back on resume.

A run's list, in order: the epoch metrics (:func:`epoch_metrics`), the caller's callbacks
(``train(..., callbacks=[...])``), :class:`CloseEpoch` (time, a finite model, the epoch counted),
the trail (:class:`~snnprune.engine.trail.Trail`), :class:`Checkpoints` and :class:`Sinks`. So a
key a caller's callback adds to ``metrics`` is in the history, the checkpoints, ``metrics.jsonl``,
TensorBoard and the console like the built-in ones.

**Sinks.** A sink receives what happens and nothing else (no run): the :class:`Sink` methods.
Only rank 0's sinks are called (a sink with ``all_ranks = True`` is called on every rank).
``train(..., sinks=[...])`` adds sinks to the run folder's own JSONL and TensorBoard sinks; the
console of ``snnprune train`` is one (:class:`snnprune.report.ConsoleSink`).

Example::

    >>> from types import SimpleNamespace
    >>> metrics = {"epoch": 1}
    >>> EpochMetric(lambda run: {"width": run.width}).on_epoch_end(SimpleNamespace(width=4), metrics)
    >>> metrics
    {'epoch': 1, 'width': 4}
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..data import first_samples
from ..metrics import regrowth, sparsity
from ..runs import BEST, FINAL, LAST, atomic_save, final_payload
from .run import Callback, Run
from .state import rng_state

__all__ = ["Sink", "Sinks", "EpochMetric", "epoch_metrics", "learning_rate", "weight_sparsity",
           "Operations", "pruner_metrics", "CloseEpoch", "Checkpoints", "save_checkpoint", "save_final",
           "run_final_payload", "OPS_BATCH"]


def callback_states(callbacks) -> dict:
    """``{key: state}`` of the callbacks with a state, keyed by class name (``Name:2`` for a second
    one of the same class)."""
    states = {key: cb.state_dict() for key, cb in _keyed(callbacks) if hasattr(cb, "state_dict")}
    return {key: state for key, state in states.items() if state}


def load_callback_states(callbacks, states: dict) -> None:
    """Give each callback its saved state (those :func:`callback_states` keyed); a callback without
    one (a checkpoint written before it was added) keeps its own."""
    for key, cb in _keyed(callbacks):
        if key in states and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(states[key])


def _keyed(callbacks):
    seen: dict[str, int] = {}
    for cb in callbacks:
        name = type(cb).__qualname__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}:{seen[name]}"), cb


# -- epoch metrics ---------------------------------------------------------------------------
class EpochMetric(Callback):
    """A function ``fn(run) -> dict`` whose keys join every epoch's metrics.

    Args:
        fn: called at the end of every epoch on every process, after evaluation.
    """

    def __init__(self, fn: Callable[[Run], dict]) -> None:
        self.fn = fn

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        metrics.update(self.fn(run))


def learning_rate(run: Run) -> dict:
    return {"lr": run.optimizer.param_groups[0]["lr"]}


def weight_sparsity(run: Run) -> dict:
    """Zeros over every conv/linear weight of the model (layers kept dense included)."""
    return {"sparsity": sparsity(run.model).total}


#: samples of the held-out batch the operations are counted on every epoch (the first of the test set)
OPS_BATCH = 32


class Operations(Callback):
    """SOPs (SNN) or MACs (ANN) per sample with the dense MACs beside, the mean firing rate and
    the energy per sample (45 nm table), on a fixed held-out batch: the first ``OPS_BATCH`` test
    samples. Counted without touching the random number streams, so resuming stays exact."""

    def __init__(self, samples: int = OPS_BATCH) -> None:
        self.samples = samples
        self.batch: torch.Tensor | None = None

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        if run.test_set is None or self.samples <= 0 or len(run.test_set) == 0:
            return
        from ..metrics import ops_metrics

        if self.batch is None:
            self.batch = first_samples(run.test_set, self.samples)
        with torch.random.fork_rng(devices=[]):
            values = ops_metrics(run.model, self.batch.to(run.ctx.device))
        metrics.update({key: values[key] for key in values if key.endswith("per_sample") or key == "firing_rate"})


def pruner_metrics(run: Run) -> dict:
    """Threshold, regrowth since the last epoch, a target's controller (λ or gain and how often it
    was set: :meth:`~snnprune.Pruner.target_metrics`), the activity penalty's mean over the epoch's
    steps and the training firing rate per neuron layer (``activity_penalty``, ``activity_rates``,
    with ``pruning.activity``); under torchrun, every rank's threshold and
    sparsity (the ranks must agree; recorded so that a divergence shows). Moves
    ``run.previous_masks`` to this epoch's masks."""
    if run.pruner is None:
        return {}
    masks = run.pruner.masks()
    out = {"threshold": run.pruner.threshold, "regrowth": regrowth(run.previous_masks, masks),
           **run.pruner.target_metrics()}
    if run.pruner.activity is not None:  # the epoch's firing-rate penalty and rates
        out.update(run.pruner.activity.metrics())
    run.previous_masks = masks
    if run.ctx.distributed:
        out["threshold_per_rank"] = run.ctx.all_gather(out["threshold"])
        out["sparsity_per_rank"] = run.ctx.all_gather(sparsity(run.model).total)
    return out


def epoch_metrics() -> list[Callback]:
    """The metrics every run logs, as fresh callbacks (each run owns its list): ``lr``,
    ``sparsity``, the operations on the held-out batch, the pruner's."""
    return [EpochMetric(learning_rate), EpochMetric(weight_sparsity), Operations(), EpochMetric(pruner_metrics)]


# -- the end of an epoch -------------------------------------------------------------------
class CloseEpoch(Callback):
    """Where the epoch's measurements end and its records begin: adds ``skipped_batches`` (with
    ``on_nonfinite = "skip"``) and ``seconds``, refuses a model holding a NaN or an infinity
    (nothing after it saves one), and counts the epoch done in ``run.state`` (its history)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        if run.recipe.on_nonfinite == "skip":
            metrics["skipped_batches"] = run.state.skipped_in_epoch
        metrics["seconds"] = time.perf_counter() - self.started
        run.check_finite(f"end of epoch {metrics['epoch']}")
        run.state.end_epoch(metrics)


# -- checkpoints -----------------------------------------------------------------------------
def save_checkpoint(run: Run, name: str) -> None:
    """``last.pt`` / ``best.pt``: everything to resume. A collective: every rank calls it (each
    rank's RNG state is gathered); rank 0 writes."""
    rng = run.ctx.all_gather(rng_state())
    if not run.ctx.is_main:
        return
    payload = {
        "recipe": run.recipe.model_dump(mode="json"),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "pruner": run.pruner.state_dict() if run.pruner is not None else None,
        "masks": {k: v.cpu() for k, v in run.previous_masks.items()},
        "family": run.family.state_dict(),
        "callbacks": callback_states(run.callbacks),
        "rng": rng,
        **run.state.state_dict(),
    }
    atomic_save(payload, run.run_dir / name)


def run_final_payload(run: Run) -> dict:
    """:func:`~snnprune.runs.final_payload` of the run's model as it is now (the channels kept, if
    the family cut some)."""
    return final_payload(run.model, run.recipe, run.model_kwargs, run.family.channel_spec)


def save_final(run: Run) -> None:
    """``final_model.pt``: the plain model (rank 0 only)."""
    atomic_save(run_final_payload(run), run.run_dir / FINAL)


class Checkpoints(Callback):
    """At the end of every epoch: ``best.pt`` when the test accuracy is the best so far (first:
    a run killed in between replays this epoch), then ``last.pt``."""

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        if metrics["test_acc"] >= run.state.best_acc:
            run.state.best_acc = metrics["test_acc"]
            save_checkpoint(run, BEST)
        save_checkpoint(run, LAST)


# -- sinks -----------------------------------------------------------------------------------
class Sink:
    """The sink protocol, with no-op methods (subclassing is optional)."""

    #: called on every rank, not only on rank 0
    all_ranks: bool = False

    def on_start(self, info: dict) -> None:
        """``info``: recipe, run_dir, world_size, device, resume."""

    def on_epoch_start(self, epoch: int, steps: int, done: int) -> None:
        """Epoch ``epoch`` (0-based) of ``steps`` optimizer steps begins, ``done`` of them already
        done (a resumed epoch)."""

    def on_step(self, epoch: int, step_in_epoch: int, loss: float) -> None:
        """After every optimizer step; ``loss`` is the running mean of the epoch on this rank."""

    def on_epoch_end(self, metrics: dict) -> None:
        """Every epoch's metrics (``epoch`` is 1-based)."""

    def on_event(self, kind: str, fields: dict) -> None:
        """Anything else worth a line: start, freeze, interrupted, end, families' own events."""

    def on_end(self, result) -> None:
        """The :class:`~snnprune.engine.RunResult` (also after an interruption)."""

    def close(self) -> None:
        pass


class Sinks(Callback):
    """The callback that tells the run's sinks (``run.sinks``) what happens; last in the list, so
    they see an epoch once it is recorded."""

    @staticmethod
    def _call(run: Run, name: str, *args) -> None:
        for sink in run.sinks:
            method = getattr(sink, name, None)
            if method is not None:
                method(*args)

    def on_start(self, run: Run) -> None:
        self._call(run, "on_start", {"recipe": run.recipe, "run_dir": run.run_dir, "world_size": run.ctx.world_size,
                                     "device": str(run.ctx.device), "resume": run.resumed})

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        self._call(run, "on_epoch_start", epoch, run.steps_per_epoch, run.state.step_in_epoch)

    def on_step(self, run: Run, loss: float) -> None:
        self._call(run, "on_step", run.state.epoch, run.state.step_in_epoch, loss)

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        self._call(run, "on_epoch_end", metrics)

    def on_end(self, run: Run) -> None:
        self._call(run, "on_end", run.result)
        self._call(run, "close")
