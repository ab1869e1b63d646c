"""What a run writes and measures: sinks (JSONL, TensorBoard, anything a caller adds), the
checkpoints, and the metrics computed at the end of every epoch.

**Sinks.** A sink is any object with some of the :class:`Sink` methods; the loop calls those it
has. Only rank 0's sinks are called (a sink with ``all_ranks = True`` is called on every rank).
``train(..., sinks=[...])`` adds sinks to the run folder's own JSONL and TensorBoard sinks; the
console of ``snnprune train`` is one (:class:`snnprune.report.ConsoleSink`).

**Epoch metrics.** A function ``metric(run) -> dict`` registered with :func:`register_epoch_metric`
adds its keys to every epoch's metrics (JSONL line, TensorBoard scalars, console table, history).
It runs on every rank (it may use collectives through ``run.ctx``).

Example::

    >>> class Printer(Sink):
    ...     def on_epoch_end(self, metrics):
    ...         print(metrics["epoch"], metrics["test_acc"])
    >>> Sinks([Printer()]).on_epoch_end({"epoch": 1, "test_acc": 0.5})
    1 0.5
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..data import first_samples
from ..metrics import regrowth, sparsity
from ..pruner import bake
from .checkpoint import atomic_save
from .state import rng_state

if TYPE_CHECKING:
    from .trainer import Run

__all__ = ["Sink", "Sinks", "JSONLSink", "TensorBoardSink", "Checkpoints", "EPOCH_METRICS", "register_epoch_metric",
           "final_payload", "LAST", "BEST", "FINAL"]

LAST, BEST, FINAL = "last.pt", "best.pt", "final_model.pt"


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


class Sinks:
    """Fan-out to several sinks, calling only the methods each one has."""

    def __init__(self, sinks) -> None:
        self.sinks = list(sinks)

    def _call(self, name: str, *args) -> None:
        for sink in self.sinks:
            method = getattr(sink, name, None)
            if method is not None:
                method(*args)

    def on_start(self, info):
        self._call("on_start", info)

    def on_epoch_start(self, epoch, steps, done):
        self._call("on_epoch_start", epoch, steps, done)

    def on_step(self, epoch, step_in_epoch, loss):
        self._call("on_step", epoch, step_in_epoch, loss)

    def on_epoch_end(self, metrics):
        self._call("on_epoch_end", metrics)

    def on_event(self, kind, fields):
        self._call("on_event", kind, fields)

    def on_end(self, result):
        self._call("on_end", result)

    def close(self):
        self._call("close")


class JSONLSink(Sink):
    """``metrics.jsonl``: one JSON line per epoch (``"kind": "epoch"``) and per event."""

    def __init__(self, run_dir: str | Path) -> None:
        path = Path(run_dir) / "metrics.jsonl"
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


class TensorBoardSink(Sink):
    """``tensorboard/``: every numeric epoch metric as a scalar, the epoch as the step."""

    def __init__(self, run_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def on_epoch_end(self, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, metrics["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# -- checkpoints -----------------------------------------------------------------------------
class Checkpoints:
    """``last.pt`` / ``best.pt`` (everything to resume) and ``final_model.pt`` (the plain model)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def save(self, run: Run, name: str) -> None:
        """A collective: every rank calls it (each rank's RNG state is gathered); rank 0 writes."""
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
            "rng": rng,
            **run.state.state_dict(),
        }
        atomic_save(payload, self.run_dir / name)

    def save_final(self, run: Run) -> None:
        """The plain model (:func:`final_payload`) as ``final_model.pt``."""
        atomic_save(final_payload(run), self.run_dir / FINAL)


def final_payload(run: Run) -> dict:
    """The plain model of ``run`` as it is now: parametrizations removed, zeros baked in (the
    training model untouched); its ``model`` state_dict loads strictly into
    ``create_model(model_name, twin=twin, **model_kwargs)``. ``final_model.pt`` and the trail's
    files hold this."""
    plain = bake(copy.deepcopy(run.model))
    return {"model": plain.state_dict(), "model_name": run.recipe.model.name, "twin": run.recipe.model.twin,
            "model_kwargs": run.model_kwargs, "sparsity": sparsity(plain).total,
            "channel_spec": run.family.channel_spec}  # the channels kept, if the family cut some


# -- epoch metrics ---------------------------------------------------------------------------
#: functions ``metric(run) -> dict`` whose keys join every epoch's metrics, in order
EPOCH_METRICS: list[Callable[[Run], dict]] = []


def register_epoch_metric(fn: Callable[[Run], dict]) -> Callable[[Run], dict]:
    """Decorator: compute ``fn(run)`` at the end of every epoch and merge it into the metrics."""
    EPOCH_METRICS.append(fn)
    return fn


@register_epoch_metric
def _learning_rate(run: Run) -> dict:
    return {"lr": run.optimizer.param_groups[0]["lr"]}


@register_epoch_metric
def _sparsity(run: Run) -> dict:
    """Zeros over every conv/linear weight of the model (layers kept dense included)."""
    return {"sparsity": sparsity(run.model).total}


#: samples of the held-out batch the operations are counted on every epoch (the first of the test set)
OPS_BATCH = 32


@register_epoch_metric
def _operations(run: Run) -> dict:
    """SOPs (SNN) or MACs (ANN) per sample with the dense MACs beside, the mean firing rate and
    the energy per sample (45 nm table), on a fixed held-out batch: the first ``OPS_BATCH`` test
    samples. Counted without touching the random number streams, so resuming stays exact."""
    test_set = getattr(run, "test_set", None)
    if test_set is None or OPS_BATCH <= 0 or len(test_set) == 0:
        return {}
    from ..metrics import ops_metrics

    if getattr(run, "_ops_batch", None) is None:
        run._ops_batch = first_samples(test_set, OPS_BATCH)
    with torch.random.fork_rng(devices=[]):
        values = ops_metrics(run.model, run._ops_batch.to(run.ctx.device))
    return {key: values[key] for key in values if key.endswith("per_sample") or key == "firing_rate"}


@register_epoch_metric
def _pruner(run: Run) -> dict:
    """Threshold, regrowth since the last epoch, a target's controller (λ or gain and how often it
    was set: :meth:`~snnprune.Pruner.target_metrics`); under torchrun, every rank's threshold and
    sparsity (the ranks must agree; recorded so that a divergence shows)."""
    if run.pruner is None:
        return {}
    masks = run.pruner.masks()
    out = {"threshold": run.pruner.threshold, "regrowth": regrowth(run.previous_masks, masks),
           **run.pruner.target_metrics()}
    run.previous_masks = masks
    if run.ctx.distributed:
        out["threshold_per_rank"] = run.ctx.all_gather(out["threshold"])
        out["sparsity_per_rank"] = run.ctx.all_gather(sparsity(run.model).total)
    return out
