"""Run one recipe: :func:`train` and the loop.

Per optimizer step: forward (autocast on CUDA), loss (+ the method's regulariser), backward,
``optimizer.step()``, ``pruner.step(optimizer)``, ``scheduler.step()``; training and evaluation
share one forward (:func:`forward`). SNNs reset their neuron state inside their forward
(:class:`snnprune.models.SpikingNet`). The family (:mod:`.families`) says when the pruner acts
beyond its own schedule and may replace the model; the run's callbacks (:mod:`.callbacks`)
measure and record every epoch, in one ordered list; the engine prints nothing.

Determinism and resume: the shuffle of epoch ``e`` is drawn from ``seed + e``
(``DistributedSampler.set_epoch``), and the checkpoint holds model, pruner, optimizer, scheduler,
AMP scaler, family and callback state, epoch/step and every RNG state, so on CPU a run killed at
any point and resumed with ``resume=True`` ends with exactly the weights of an uninterrupted run
(with ``data.workers = 0``, or with data that has no random augmentation: worker processes draw
their seeds afresh).
"""

from __future__ import annotations

import math
import re
import signal
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from .. import data as snn_data
from .._validation import first_line
from ..build import build_datasets, build_model, build_pruner, call_with_kwargs, model_kwargs
from ..recipe import Recipe, RecipeError
from ..runs import CheckpointError, first_nonfinite, load_run_checkpoint
from ..runs.folder import (
    LAST,
    JSONLSink,
    TensorBoardSink,
    clear_run,
    remove_stale_writes,
    same_recipe,
    write_recipe,
)
from . import distributed
from .callbacks import (
    Checkpoints,
    CloseEpoch,
    EpochMetric,
    Sinks,
    epoch_metrics,
    load_callback_states,
    save_checkpoint,
    save_final,
)
from .families import get_family
from .run import Callback, NonFiniteError, Run, RunResult
from .state import seed_everything, set_rng_state
from .trail import Trail

__all__ = ["train", "RunExistsError", "forward", "evaluate"]


class RunExistsError(ValueError):
    """The run folder already holds a run and ``resume`` was not asked for."""


class Interrupted(Exception):
    pass


def forward(net: nn.Module, x, y, criterion, amp_dtype=None):
    """``(output, loss)`` of one batch (autocast when ``amp_dtype`` is set): the one forward that
    training and evaluation share."""
    with torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext():
        out = net(x)
        loss = criterion(out.float() if amp_dtype else out, y)
    return out, loss


@torch.no_grad()
def evaluate(net, loader, criterion, ctx, amp_dtype=None) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader``, summed over the ranks."""
    net.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        out, loss = forward(net, x, y, criterion, amp_dtype)
        loss_sum += float(loss) * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
    loss_sum, correct, seen = ctx.all_reduce_sum([loss_sum, correct, seen])
    return loss_sum / max(seen, 1), correct / max(seen, 1)


class _SkipFirst(Sampler):
    """Yield a sampler's indices after the first ``skip`` (resume in the middle of an epoch)."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.skip = 0

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self) -> int:
        return len(self.sampler) - self.skip


# -- the run ---------------------------------------------------------------------------------
def train(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    callbacks: Iterable[Callback] = (),
    metrics: Iterable[Callable[[Run], dict]] = (),
    resume: bool = False,
    fresh: bool = False,
    sinks=(),
    stop_after_steps: int | None = None,
) -> RunResult:
    """Train ``recipe`` into the run folder ``out``.

    The folder gets ``recipe.json``, ``metrics.jsonl``, ``tensorboard/``, ``last.pt``, ``best.pt``
    and, at the end, ``final_model.pt`` (the plain pruned model, loadable into the original
    architecture); see :mod:`snnprune.runs`. Under ``torchrun`` every process calls it; rank 0
    writes.

    Args:
        recipe: a validated recipe (:func:`snnprune.recipe.load_recipe`).
        out: the run folder (default ``runs/<recipe name>``).
        callbacks: this run's own callbacks (:class:`~snnprune.engine.callbacks.Callback`), called
            after the built-in epoch metrics and before the epoch is recorded, on every process;
            keys their ``on_epoch_end`` adds to ``metrics`` are logged and kept like the built-in
            ones, and their ``state_dict`` is saved in the checkpoints and given back on resume.
        metrics: functions ``fn(run) -> dict`` whose keys join every epoch's metrics (each is
            wrapped in an :class:`~snnprune.engine.callbacks.EpochMetric`, before ``callbacks``).
        resume: continue the run saved in ``out`` (it must be a run of the same recipe).
        fresh: remove a run already in ``out`` first (only the files a run writes,
            :data:`snnprune.runs.RUN_FILES`); without it (and without ``resume``) a folder holding
            a run is refused.
        sinks: more receivers of the run's events (:class:`~snnprune.engine.callbacks.Sink`), called
            on rank 0 only unless they set ``all_ranks``.
        stop_after_steps: end the run after that many optimizer steps as if interrupted (tests).

    Returns:
        The :class:`~snnprune.engine.run.RunResult`: the run folder, the history (one metrics dict
        per epoch), the best test accuracy and whether the run was interrupted.

    Raises:
        RunExistsError: ``out`` holds a run and neither ``resume`` nor ``fresh`` was given, or
            ``resume`` with another recipe.
        RecipeError, CheckpointError: bad input, in one line, before anything is written.
        NonFiniteError: a NaN or an infinity stopped the run (the last good checkpoint is kept).

    Example::

        from snnprune.engine import Callback, train
        from snnprune.recipe import load_recipe

        class WeightNorm(Callback):
            def on_epoch_end(self, run, metrics):
                metrics["weight_norm"] = sum(float(p.detach().norm()) for p in run.model.parameters())

        result = train(load_recipe("digits_snn_lats", ["epochs=1"]), "runs/demo", callbacks=[WeightNorm()])
        print(result.final["weight_norm"])
    """
    ctx = call_with_kwargs("device", distributed.setup, recipe.device)
    run_dir = Path(out) if out is not None else Path("runs") / recipe.name
    own = [EpochMetric(fn) for fn in metrics] + list(callbacks)
    try:
        if fresh and ctx.is_main:
            clear_run(run_dir)
        if fresh and ctx.distributed:
            ctx.all_reduce_sum([0.0])  # a barrier: no rank looks at the folder before it is cleared
        return _train(recipe, run_dir, resume, ctx, list(sinks), own, stop_after_steps)
    except Exception as exc:
        if not (ctx.distributed and distributed.is_collective_failure(exc)):
            raise
        raise _collective_failure(ctx, run_dir, exc) from exc
    finally:
        distributed.teardown(ctx)


def _collective_failure(ctx, run_dir: Path, exc: Exception) -> distributed.DistributedError:
    """One line for a collective that failed: which process, why, and what is kept."""
    reason = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc, None)) or type(exc).__name__
    reason = reason[:120].rsplit(" ", 1)[0] + " ..." if len(reason) > 120 else reason
    last = run_dir / LAST
    kept = f"{last} is the last checkpoint" if last.exists() else "no checkpoint was written yet"
    return distributed.DistributedError(
        f"process {ctx.rank} of {ctx.world_size}: a collective failed ({reason}): another process died or hung; "
        f"{kept}: continue with --resume")


def _train(recipe: Recipe, run_dir: Path, resume: bool, ctx, sinks: list, callbacks: list,
           stop_after_steps: int | None) -> RunResult:
    run, data = _setup_run(recipe, run_dir, resume, ctx, callbacks)
    _open_run(run, sinks)
    with _Stop(ctx, stop_after_steps) as stop:
        try:
            _each(run, "on_start")
            run.emit("start", recipe=recipe.name, resume=run.resumed, world_size=ctx.world_size, device=str(ctx.device))
            for epoch in range(run.state.epoch, recipe.epochs):
                _run_epoch(run, data, epoch, stop)
            _finish(run)
        except Interrupted:
            _interrupted(run)
        except NonFiniteError as exc:
            raise _stopped(run, exc) from None
        finally:
            run.result.history = run.state.history
            _each(run, "on_end")
    return run.result


def _each(run: Run, hook: str, *args) -> None:
    """Call ``hook`` of every callback of the run that has it, in order."""
    for callback in run.callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(run, *args)


def _callbacks(run: Run, own: list) -> list:
    """The run's ordered list: the epoch metrics, the caller's, the end of the epoch, then what
    records it (the trail before ``last.pt``, like ``best.pt``; the sinks last)."""
    trail = Trail.of(run)  # pruning.trail: a finalized model at every new 5% of sparsity
    return [*epoch_metrics(), *own, CloseEpoch(), *([trail] if trail is not None else []), Checkpoints(), Sinks()]


# -- setting up ------------------------------------------------------------------------------
def _checkpoint_to_resume(recipe: Recipe, run_dir: Path, resume: bool, ctx) -> dict | None:
    """The checkpoint to continue from (None: a fresh run), after every check of the folder."""
    if (run_dir / LAST).exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run: pass --resume to continue it, or --out elsewhere")
    checkpoint = load_run_checkpoint(run_dir / LAST) if resume else None
    if checkpoint is not None and not same_recipe(checkpoint["recipe"], recipe):
        raise RunExistsError(f"{run_dir} holds a run of a different recipe: resume it with the recipe.json saved there")
    if recipe.batch_size % ctx.world_size:
        raise RecipeError(f"bad recipe: batch_size {recipe.batch_size} does not split over {ctx.world_size} processes")
    return checkpoint


def _setup_run(recipe: Recipe, run_dir: Path, resume: bool, ctx, callbacks: list) -> tuple[Run, _Data]:
    """Data, model, pruner, optimizer and callbacks of the run, started or restored; nothing is
    written yet."""
    checkpoint = _checkpoint_to_resume(recipe, run_dir, resume, ctx)
    seed_everything(recipe.seed)
    train_set, test_set, info = build_datasets(recipe)
    data = _Data(recipe, ctx, train_set, test_set)
    run = Run(recipe, ctx, run_dir, get_family(recipe), test_set=test_set, steps_per_epoch=data.steps_per_epoch,
              model_kwargs=model_kwargs(recipe, info), sinks=[_Held()], resumed=checkpoint is not None)
    model = build_model(recipe, info).to(ctx.device)
    run.pruner = build_pruner(recipe, model, steps_per_epoch=run.steps_per_epoch,
                              total_steps=run.family.schedule_steps(run.steps_per_epoch))
    run.set_model(model)
    run.previous_masks = run.pruner.masks() if run.pruner is not None else {}
    run.callbacks = _callbacks(run, callbacks)
    if checkpoint is not None:
        try:
            _restore(run, checkpoint)
        except Exception as exc:  # an edited checkpoint: a key missing, a tensor of another shape, ...
            raise CheckpointError(f"checkpoint {run_dir / LAST} does not fit this run: {first_line(exc)}") from exc
    else:
        run.replace_model(run.family.on_start(run))
        if run.pruner is not None:
            run.previous_masks = run.pruner.masks()
        # The model is built identically on every rank; from here on each rank draws its own
        # random numbers (Poisson coding, dropout), or all ranks would repeat the same noise.
        seed_everything(recipe.seed + ctx.rank)
    run.result = RunResult(run_dir, history=run.state.history, best_acc=run.state.best_acc, is_main=ctx.is_main)
    return run, data


def _open_run(run: Run, sinks: list) -> None:
    """The files and the sinks, after everything that can reject the recipe or the checkpoint."""
    ctx, run_dir = run.ctx, run.run_dir
    held = run.sinks[0]
    run.sinks = ([JSONLSink(run_dir), TensorBoardSink(run_dir)] if ctx.is_main else []) \
        + [s for s in sinks if ctx.is_main or getattr(s, "all_ranks", False)]
    for kind, fields in held.events:
        run.emit(kind, **fields)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_writes(run_dir)
        write_recipe(run_dir, run.recipe)


class _Held:
    """A sink that keeps the events it receives (those of the start or restore, given to the
    sinks once they exist)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def on_event(self, kind: str, fields: dict) -> None:
        self.events.append((kind, fields))


def _restore(run: Run, checkpoint: dict) -> None:
    """Put model, optimizer, LR schedule, scaler, pruner, family, callbacks, run state and RNGs back."""
    state = run.state
    run.family.load_state_dict(checkpoint.get("family") or {})
    run.replace_model(run.family.on_resume(run))
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.pruner is not None:
        run.pruner.load_state_dict(checkpoint["pruner"])
        run.previous_masks = {k: v.to(run.ctx.device) for k, v in checkpoint["masks"].items()}
    state.load_state_dict(checkpoint)
    load_callback_states(run.callbacks, checkpoint.get("callbacks") or {})  # none in older checkpoints
    saved_rng = checkpoint["rng"]
    if len(saved_rng) == run.ctx.world_size:
        set_rng_state(saved_rng[run.ctx.rank])
    else:  # resumed on another number of processes: fresh, still rank-specific, streams
        seed_everything(run.recipe.seed + 1_000_003 * state.global_step + run.ctx.rank)


class _Data:
    """The loaders of a run: every process its share of the training set (shuffled per epoch,
    a resumed epoch skipping what it has done) and of the test set (every sample exactly once
    over the processes: a DistributedSampler would pad with repeats)."""

    def __init__(self, recipe: Recipe, ctx, train_set, test_set) -> None:
        self.recipe, self.ctx = recipe, ctx
        self.per_rank_batch = recipe.batch_size // ctx.world_size
        self.sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=recipe.seed)
        self.skipper = _SkipFirst(self.sampler)
        self.train_loader = self._loader(train_set, self.skipper)
        self.test_loader = self._loader(test_set, list(range(ctx.rank, len(test_set), ctx.world_size)))
        self.steps_per_epoch = math.ceil(len(self.sampler) / self.per_rank_batch)

    def _loader(self, dataset, sampler):
        # Non-persistent workers whose seeds come from the loader's generator, re-seeded every
        # epoch: an epoch's augmentation is the same whether or not the run was resumed.
        return snn_data.make_loader(
            dataset, self.per_rank_batch, train=False, workers=self.recipe.data.workers,
            pin_memory=self.ctx.device.type == "cuda", seed=self.recipe.seed, sampler=sampler,
            persistent_workers=False,
        )

    def start_epoch(self, epoch: int, done: int) -> None:
        """Epoch ``epoch``'s order, skipping the ``done`` steps a resumed epoch has taken."""
        self.sampler.set_epoch(epoch)
        self.train_loader.generator.manual_seed(self.recipe.seed + 1_000_003 * epoch + 7919 * self.ctx.rank)
        self.skipper.skip = done * self.per_rank_batch


# -- the epochs ------------------------------------------------------------------------------
def _run_epoch(run: Run, data: _Data, epoch: int, stop: _Stop) -> None:
    """Train one epoch (or its rest), evaluate, and hand the metrics to the callbacks and the family."""
    ctx = run.ctx
    run.replace_model(run.family.on_epoch_start(run, epoch))
    data.start_epoch(epoch, run.state.step_in_epoch)
    run.net.train()
    _each(run, "on_epoch_start", epoch)
    sums = ctx.all_reduce_sum(_train_batches(run, data, stop))
    if not sums[2]:
        raise NonFiniteError(f"epoch {epoch + 1}: every batch was skipped (non-finite loss or gradient)")
    test_loss, test_acc = evaluate(run.net, data.test_loader, run.criterion, ctx, run.amp_dtype)
    metrics = {"epoch": epoch + 1, "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
               "test_loss": test_loss, "test_acc": test_acc}
    _each(run, "on_epoch_end", metrics)
    run.replace_model(run.family.on_epoch_end(run, epoch, metrics))


def _train_batches(run: Run, data: _Data, stop: _Stop) -> list:
    """The optimizer steps of the epoch; returns this process's ``[loss sum, correct, seen]``
    (kept in ``run.state.partial`` after every step, for a checkpoint in the middle)."""
    state, device = run.state, run.ctx.device
    loss_sum, correct, seen = state.partial
    for x, y in data.train_loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out, loss = _train_step(run, x, y)
        if loss is None:  # a batch skipped for a non-finite loss or gradient: not in the sums
            state.skipped_in_epoch += 1
        else:
            loss_sum += loss * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        state.advance()
        stop.steps += 1
        state.partial = [loss_sum, correct, seen]
        _each(run, "on_step", loss_sum / seen if seen else math.nan)
        if stop.requested():
            raise Interrupted
    return [loss_sum, correct, seen]


# -- the end ---------------------------------------------------------------------------------
def _finish(run: Run) -> None:
    """Every epoch done: ``final_model.pt`` and the ``end`` event."""
    state = run.state
    run.result.best_acc = state.best_acc
    if run.ctx.is_main:
        run.check_finite("end of the run")
        save_final(run)
    run.emit("end", best_acc=state.best_acc, final=state.history[-1] if state.history else None)


def _interrupted(run: Run) -> None:
    """A signal or ``stop_after_steps``: ``last.pt`` where the run stands, to resume from."""
    state = run.state
    run.check_finite(f"step {state.global_step} (interrupted)")
    save_checkpoint(run, LAST)
    run.result.interrupted = True
    run.emit("interrupted", epoch=state.epoch, step_in_epoch=state.step_in_epoch)


def _stopped(run: Run, exc: NonFiniteError) -> NonFiniteError:
    """The one-line error of a run a NaN or an infinity stopped (with the ``nonfinite`` event)."""
    state, run_dir = run.state, run.run_dir
    kept = f"the last good checkpoint {run_dir / LAST} (epoch {state.epoch}) is kept" if \
        (run_dir / LAST).exists() else "no checkpoint was written"
    run.emit("nonfinite", epoch=state.epoch + 1, message=str(exc))
    advice = "lower optim.lr" + (", or set on_nonfinite = 'skip' to skip such batches"
                                 if run.recipe.on_nonfinite == "stop" else "")
    return NonFiniteError(f"{exc}; run stopped, {kept}: {advice}")


class _Stop:
    """Whether to stop at this step: SIGINT/SIGTERM caught while the run is on (outside the main
    thread signals stay with the caller) or ``stop_after_steps`` reached; under torchrun every
    rank stops at the same step, or the collectives would hang."""

    def __init__(self, ctx, after_steps: int | None) -> None:
        self.ctx, self.after_steps = ctx, after_steps
        self.signal: int | None = None
        self.steps = 0  # optimizer steps taken in this call
        self._handlers: dict = {}

    def __enter__(self) -> _Stop:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._handlers[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signal = signum

    def requested(self) -> bool:
        local = self.signal is not None or (self.after_steps is not None and self.steps >= self.after_steps)
        if self.ctx.distributed:
            return self.ctx.all_reduce_sum([float(local)])[0] > 0
        return local


# -- one step --------------------------------------------------------------------------------
def _train_step(run: Run, x, y) -> tuple[torch.Tensor, float]:
    """One optimizer step; returns the output and the loss (``None``: the batch was skipped)."""
    # skip mode: the buffers (batch-norm running statistics, a few numbers per channel) are copied
    # before the forward, so that a skipped batch leaves no trace in them
    buffers = [b.clone() for b in run.model.buffers()] if run.recipe.on_nonfinite == "skip" else None
    out, loss = forward(run.net, x, y, run.criterion, run.amp_dtype)
    total = loss
    if run.pruner is not None and run.pruner.has_regularization:
        total = loss + run.pruner.regularization()
    family_term = run.family.regularization(run)
    if family_term is not None:
        total = total + family_term
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    value, problem = _check_step(run, total)
    bad = problem is not None
    if run.ctx.distributed:  # every rank skips or stops at the same step (one more all_reduce per step)
        bad = run.ctx.all_reduce_sum([float(bad)])[0] > 0
    if bad:
        return _nonfinite_step(run, out, problem or "a non-finite loss or gradient on another process", buffers)
    scale = run.scaler.get_scale() if run.scaler.is_enabled() else None
    run.scaler.step(run.optimizer)
    run.scaler.update()
    stepped = scale is None or run.scaler.get_scale() >= scale  # fp16 overflow skips the step
    if run.pruner is not None and stepped:
        run.pruner.step(run.optimizer)
        threshold = run.pruner.threshold if run.pruner.control == "threshold" else None  # a float: no sync
        if threshold is not None and not math.isfinite(threshold):
            raise NonFiniteError(f"step {run.state.global_step + 1} (epoch {run.state.epoch + 1}): "
                                 f"the pruning threshold is {threshold}")
    if stepped:
        run.family.on_optimizer_step(run)
    run.scheduler.step()
    return out, value


def _check_step(run: Run, total: torch.Tensor) -> tuple[float, str | None]:
    """The loss value and what is non-finite at this step (``None``: nothing).

    Cost: the total L2 norm of all gradients in one call (``torch.nn.utils.get_total_norm``: fused
    per device and dtype, no host sync per tensor; a NaN or an infinity anywhere makes it
    non-finite) and one host sync for the loss and that sum together, the sync ``loss.item()`` cost
    anyway (``bench/reliability.py`` measures it against a step). Only when the sum is not finite
    are the tensors looked at one by one, to name the bad one (a sum that merely overflowed is no
    fault).
    With the fp16 grad scaler the gradients are left to it (it skips overflowed steps itself).
    """
    checks = [total.detach().float().reshape(())]
    grads = [] if run.scaler.is_enabled() else \
        [(n, p.grad) for n, p in run.model.named_parameters() if p.grad is not None and p.grad.numel()]
    if grads:
        checks.append(torch.nn.utils.get_total_norm([g for _, g in grads]).float())
    value, *grad_sum = torch.stack(checks).tolist()
    if not math.isfinite(value):
        return value, f"the loss is {value}"
    if grad_sum and not math.isfinite(grad_sum[0]):
        name = next((n for n, g in grads if not torch.isfinite(g).all()), None)
        if name is not None:
            return value, f"the gradient of {name!r} is not finite"
    return value, None


def _nonfinite_step(run: Run, out, problem: str, buffers: list | None):
    """Skip the batch (``on_nonfinite = "skip"``: the buffers its forward changed are put back, no
    optimizer step; the LR schedule and the pruning threshold move on, so both stay on schedule) or
    stop the run."""
    step, epoch = run.state.global_step + 1, run.state.epoch + 1
    if run.recipe.on_nonfinite == "skip":
        with torch.no_grad():
            for saved, buffer in zip(buffers, run.model.buffers(), strict=True):
                buffer.copy_(saved)
        broken = first_nonfinite(run.model.state_dict())
        if broken is None:
            run.optimizer.zero_grad(set_to_none=True)
            if run.pruner is not None:  # the threshold keeps to its schedule (it follows the LR)
                with warnings.catch_warnings():  # a step without an optimizer step, on purpose here
                    warnings.filterwarnings("ignore", message=r"pruner\.step")
                    run.pruner.step(run.optimizer)
            run.scheduler.step()
            run.emit("skipped_batch", epoch=epoch, step=step, problem=problem)
            return out, None
        problem += f" and the weight {broken!r} is not finite (skipping batches cannot recover)"
    raise NonFiniteError(f"step {step} (epoch {epoch}): {problem}")
