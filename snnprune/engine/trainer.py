"""Run one recipe: :func:`train` and the loop.

Per optimizer step: forward (autocast on CUDA), loss (+ the method's regulariser), backward,
``optimizer.step()``, ``pruner.step(optimizer)``, ``scheduler.step()``; training and evaluation
share one forward (:func:`forward`). SNNs reset their neuron state inside their forward
(:class:`snnprune.models.SpikingNet`). The family (:mod:`.families`) says when the pruner acts
beyond its own schedule; sinks (:mod:`.callbacks`) receive what happens; the engine prints
nothing.

Determinism and resume: the shuffle of epoch ``e`` is drawn from ``seed + e``
(``DistributedSampler.set_epoch``), and the checkpoint holds model, pruner, optimizer, scheduler,
AMP scaler, family state, epoch/step and every RNG state, so on CPU a run killed at any point and
resumed with ``resume=True`` ends with exactly the weights of an uninterrupted run (with
``data.workers = 0``, or with data that has no random augmentation: worker processes draw their
seeds afresh).
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from .. import data as snn_data
from .._validation import first_line
from ..recipe import Recipe, RecipeError
from . import distributed
from .build import (
    build_datasets,
    build_model,
    build_optimizer,
    build_pruner,
    build_scheduler,
    call_with_kwargs,
    model_kwargs,
)
from .callbacks import BEST, EPOCH_METRICS, FINAL, LAST, Checkpoints, JSONLSink, Sinks, TensorBoardSink
from .checkpoint import CheckpointError, first_nonfinite, load_run_checkpoint
from .families import Family, get_family
from .state import RunState, seed_everything, set_rng_state
from .trail import TRAIL_DIR, TRAIL_LISTING, Trail

__all__ = ["train", "RunResult", "RunExistsError", "NonFiniteError", "Run", "forward", "evaluate",
           "run_status", "RUN_FILES"]

#: what a run writes in its folder (``fresh=True`` removes these and nothing else)
RUN_FILES = ("recipe.json", "metrics.jsonl", "tensorboard", LAST, BEST, FINAL, TRAIL_DIR, TRAIL_LISTING)


class RunExistsError(ValueError):
    """The run folder already holds a run and ``resume`` was not asked for."""


class Interrupted(Exception):
    pass


class NonFiniteError(RuntimeError):
    """A NaN or infinite loss, gradient, threshold or weight stopped the run; the message is one
    line naming the step and the quantity. Nothing non-finite was saved: the checkpoints in the run
    folder are the last good ones (``snnprune train`` exits with code 3)."""


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    best_acc: float = 0.0
    interrupted: bool = False
    #: True on the process that writes (rank 0): the one that should print a summary
    is_main: bool = True

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class Run:
    """Everything a running recipe holds; what families, metrics and checkpoints see.

    Attributes: ``recipe``, ``ctx`` (:class:`~snnprune.engine.distributed.DistContext`), ``model``
    (the bare model), ``net`` (what the loop calls: DDP / compiled around ``model``), ``pruner``,
    ``optimizer``, ``scheduler``, ``scaler``, ``family``, ``state`` (:class:`RunState`),
    ``previous_masks`` (the masks at the end of the last epoch), ``steps_per_epoch``,
    ``model_kwargs``, ``run_dir``, ``emit(kind, **fields)`` (an event to the sinks).
    """

    def __init__(self, recipe: Recipe, ctx, run_dir: Path, family: Family, sinks: Sinks | None = None) -> None:
        self.recipe, self.ctx, self.run_dir, self.family = recipe, ctx, run_dir, family
        self.sinks = sinks or Sinks([])
        self.state = RunState()
        self.model: nn.Module | None = None
        self.net: nn.Module | None = None
        self.pruner = None
        self.optimizer = self.scheduler = None
        self.previous_masks: dict = {}
        self.steps_per_epoch = 0
        self.model_kwargs: dict = {}
        cuda = ctx.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
            if cuda and recipe.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def emit(self, kind: str, **fields) -> None:
        self.sinks.on_event(kind, fields)

    def set_model(self, model: nn.Module) -> None:
        """Put ``model`` on the device and build optimizer, LR schedule, DDP wrapper and compiled
        model around it (and ``self.pruner``). A family that returns a new model mid-run gets this,
        with the LR schedule replayed to the current step."""
        cuda = self.ctx.device.type == "cuda"
        model = model.to(self.ctx.device)
        if cuda and self.recipe.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(self.recipe, model, self.pruner)
        epochs, first_step = self.family.lr_phase(self)
        self.scheduler = build_scheduler(self.recipe, self.optimizer, self.steps_per_epoch, epochs)
        if self.state.global_step > first_step:
            with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": a replay
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(self.state.global_step - first_step):
                    self.scheduler.step()
        net = model
        if self.ctx.distributed:
            net = nn.parallel.DistributedDataParallel(model, device_ids=[self.ctx.local_rank] if cuda else None)
        if self.recipe.compile:
            net = torch.compile(net)
        self.net = net

    def _apply(self, new_model: nn.Module | None) -> None:
        # the same object too: channel surgery shrinks the model in place, with new Parameters
        if new_model is not None:
            self.set_model(new_model)
            self.emit("model_replaced", step=self.state.global_step,
                      parameters=sum(p.numel() for p in new_model.parameters()))


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


# -- the run folder --------------------------------------------------------------------------
def _same_recipe(saved: dict, recipe: Recipe) -> bool:
    """Compared as validated recipes, so that a key added to the schema later (with its default)
    does not orphan an older run."""
    try:
        return Recipe.model_validate(saved) == recipe
    except ValueError:
        return False


def run_status(run_dir: str | Path, recipe: Recipe) -> str:
    """What ``run_dir`` holds: ``"empty"``, ``"same"`` (a run of ``recipe``: resume it) or ``"other"``
    (a run of another recipe, or an unreadable one).

    Example::

        >>> import tempfile
        >>> from snnprune.recipe import load_recipe
        >>> run_status(tempfile.mkdtemp(), load_recipe("digits_snn_lats"))
        'empty'
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).exists() and not (run_dir / "recipe.json").exists():
        return "empty"
    try:
        import json

        saved = json.loads((run_dir / "recipe.json").read_text())
    except (OSError, ValueError):
        return "other"
    return "same" if (run_dir / LAST).exists() and _same_recipe(saved, recipe) else "other"


def _clear(run_dir: Path) -> None:
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# -- the run ---------------------------------------------------------------------------------
def train(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    fresh: bool = False,
    sinks=(),
    stop_after_steps: int | None = None,
) -> RunResult:
    """Train ``recipe``; the run folder ``out`` (default ``runs/<recipe name>``) gets
    ``recipe.json``, ``metrics.jsonl``, ``tensorboard/``, ``last.pt``, ``best.pt`` and, at the
    end, ``final_model.pt`` (the plain pruned model, loadable into the original architecture).

    ``resume``: continue the run saved in ``out`` (it must be a run of the same recipe).
    ``fresh``: remove a run already in ``out`` first (only the files a run writes,
    :data:`RUN_FILES`); without it (and without ``resume``) a folder holding a run is refused.
    ``sinks``: more receivers of the run's events (see :mod:`snnprune.engine.callbacks`), called on
    rank 0 only unless they set ``all_ranks``. ``stop_after_steps`` ends the run after that many
    optimizer steps as if interrupted (tests).
    """
    ctx = call_with_kwargs("device", distributed.setup, recipe.device)
    run_dir = Path(out) if out is not None else Path("runs") / recipe.name
    try:
        if fresh and ctx.is_main:
            _clear(run_dir)
        if fresh and ctx.distributed:
            ctx.all_reduce_sum([0.0])  # a barrier: no rank looks at the folder before it is cleared
        return _train(recipe, run_dir, resume, ctx, list(sinks), stop_after_steps)
    except Exception as exc:
        if not (ctx.distributed and distributed.is_collective_failure(exc)):
            raise
        reason = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc, None)) or type(exc).__name__
        reason = reason[:120].rsplit(" ", 1)[0] + " ..." if len(reason) > 120 else reason
        last = run_dir / LAST
        kept = f"{last} is the last checkpoint" if last.exists() else "no checkpoint was written yet"
        raise distributed.DistributedError(
            f"process {ctx.rank} of {ctx.world_size}: a collective failed ({reason}): another process died or hung; "
            f"{kept}: continue with --resume") from exc
    finally:
        distributed.teardown(ctx)


def _train(recipe: Recipe, run_dir: Path, resume: bool, ctx, extra_sinks: list, stop_after_steps) -> RunResult:
    if (run_dir / LAST).exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run: pass --resume to continue it, or --out elsewhere")
    checkpoint = load_run_checkpoint(run_dir / LAST) if resume else None
    if checkpoint is not None and not _same_recipe(checkpoint["recipe"], recipe):
        raise RunExistsError(f"{run_dir} holds a run of a different recipe: resume it with the recipe.json saved there")
    if recipe.batch_size % ctx.world_size:
        raise RecipeError(f"bad recipe: batch_size {recipe.batch_size} does not split over {ctx.world_size} processes")

    seed_everything(recipe.seed)
    train_set, test_set, info = build_datasets(recipe)
    per_rank_batch = recipe.batch_size // ctx.world_size
    train_sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                       seed=recipe.seed)
    # every test sample exactly once over the ranks (a DistributedSampler would pad with repeats)
    test_indices = list(range(ctx.rank, len(test_set), ctx.world_size))
    skipper = _SkipFirst(train_sampler)

    def loader(ds, sampler):
        # Non-persistent workers whose seeds come from the loader's generator, re-seeded every
        # epoch: an epoch's augmentation is the same whether or not the run was resumed.
        return snn_data.make_loader(
            ds, per_rank_batch, train=False, workers=recipe.data.workers, pin_memory=ctx.device.type == "cuda",
            seed=recipe.seed, sampler=sampler, persistent_workers=False,
        )

    train_loader, test_loader = loader(train_set, skipper), loader(test_set, test_indices)

    run = Run(recipe, ctx, run_dir, get_family(recipe))
    run.test_set = test_set
    run.steps_per_epoch = math.ceil(len(train_sampler) / per_rank_batch)
    run.model_kwargs = model_kwargs(recipe, info)
    model = build_model(recipe, info).to(ctx.device)
    run.pruner = build_pruner(recipe, model, steps_per_epoch=run.steps_per_epoch,
                              total_steps=run.family.schedule_steps(run.steps_per_epoch))
    run.set_model(model)
    run.previous_masks = run.pruner.masks() if run.pruner is not None else {}
    state = run.state
    held = _Held()  # events of the start or restore, given to the sinks once they exist
    run.sinks = Sinks([held])
    if checkpoint is not None:
        try:
            _restore(run, checkpoint)
        except Exception as exc:  # an edited checkpoint: a key missing, a tensor of another shape, ...
            raise CheckpointError(f"checkpoint {run_dir / LAST} does not fit this run: {first_line(exc)}") from exc
    else:
        run._apply(run.family.on_start(run))
        if run.pruner is not None:
            run.previous_masks = run.pruner.masks()
        # The model is built identically on every rank; from here on each rank draws its own
        # random numbers (Poisson coding, dropout), or all ranks would repeat the same noise.
        seed_everything(recipe.seed + ctx.rank)

    # the files come after everything that can reject the recipe or the checkpoint
    run.sinks = Sinks(([JSONLSink(run_dir), TensorBoardSink(run_dir)] if ctx.is_main else [])
                      + [s for s in extra_sinks if ctx.is_main or getattr(s, "all_ranks", False)])
    for kind, fields in held.events:
        run.sinks.on_event(kind, fields)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".*.tmp"):  # the temporary file of a write that was killed
            stale.unlink(missing_ok=True)
        (run_dir / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    checkpoints = Checkpoints(run_dir)
    trail = Trail.of(run)  # pruning.trail: a finalized model at every new 5% of sparsity
    if trail is not None:
        trail.resume(state.epoch)
    run.sinks.on_start({"recipe": recipe, "run_dir": run_dir, "world_size": ctx.world_size,
                        "device": str(ctx.device), "resume": checkpoint is not None})
    run.emit("start", recipe=recipe.name, resume=checkpoint is not None, world_size=ctx.world_size,
             device=str(ctx.device))

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread: signals stay with the caller
            pass
    result = RunResult(run_dir, history=state.history, best_acc=state.best_acc, is_main=ctx.is_main)
    steps_this_call = 0
    try:
        for epoch in range(state.epoch, recipe.epochs):
            run._apply(run.family.on_epoch_start(run, epoch))
            train_sampler.set_epoch(epoch)
            train_loader.generator.manual_seed(recipe.seed + 1_000_003 * epoch + 7919 * ctx.rank)
            skipper.skip = state.step_in_epoch * per_rank_batch
            loss_sum, correct, seen = state.partial
            started = time.perf_counter()
            run.net.train()
            run.sinks.on_epoch_start(epoch, run.steps_per_epoch, state.step_in_epoch)
            for x, y in train_loader:
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                out, loss = _train_step(run, x, y)
                if loss is None:  # a batch skipped for a non-finite loss or gradient: not in the sums
                    state.skipped_in_epoch += 1
                else:
                    loss_sum += loss * len(y)
                    correct += int((out.argmax(1) == y).sum())
                    seen += len(y)
                state.advance()
                steps_this_call += 1
                state.partial = [loss_sum, correct, seen]
                run.sinks.on_step(epoch, state.step_in_epoch, loss_sum / seen if seen else math.nan)
                if _should_stop(ctx, stop, stop_after_steps, steps_this_call):
                    raise Interrupted
            sums = ctx.all_reduce_sum([loss_sum, correct, seen])
            if not sums[2]:
                raise NonFiniteError(f"epoch {epoch + 1}: every batch was skipped (non-finite loss or gradient)")
            test_loss, test_acc = evaluate(run.net, test_loader, run.criterion, ctx, run.amp_dtype)
            metrics = {"epoch": epoch + 1, "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
                       "test_loss": test_loss, "test_acc": test_acc}
            for metric in EPOCH_METRICS:
                metrics.update(metric(run))
            if recipe.on_nonfinite == "skip":
                metrics["skipped_batches"] = state.skipped_in_epoch
            metrics["seconds"] = time.perf_counter() - started
            _check_finite(run, f"end of epoch {epoch + 1}")  # before every save: no checkpoint holds a NaN
            state.end_epoch(metrics)
            if trail is not None:  # before last.pt, like best.pt
                trail.on_epoch_end(run, metrics)
            if test_acc >= state.best_acc:
                state.best_acc = test_acc
                checkpoints.save(run, BEST)  # before last.pt: a run killed in between replays this epoch
            checkpoints.save(run, LAST)
            run.sinks.on_epoch_end(metrics)
            run._apply(run.family.on_epoch_end(run, epoch, metrics))
        result.best_acc = state.best_acc
        if ctx.is_main:
            _check_finite(run, "end of the run")
            checkpoints.save_final(run)
        run.emit("end", best_acc=state.best_acc, final=state.history[-1] if state.history else None)
    except Interrupted:
        _check_finite(run, f"step {state.global_step} (interrupted)")
        checkpoints.save(run, LAST)
        result.interrupted = True
        run.emit("interrupted", epoch=state.epoch, step_in_epoch=state.step_in_epoch)
    except NonFiniteError as exc:
        kept = f"the last good checkpoint {run_dir / LAST} (epoch {state.epoch}) is kept" if \
            (run_dir / LAST).exists() else "no checkpoint was written"
        run.emit("nonfinite", epoch=state.epoch + 1, message=str(exc))
        advice = "lower optim.lr" + (", or set on_nonfinite = 'skip' to skip such batches"
                                     if recipe.on_nonfinite == "stop" else "")
        raise NonFiniteError(f"{exc}; run stopped, {kept}: {advice}") from None
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        result.history = state.history
        run.sinks.on_end(result)
        run.sinks.close()
    return result


class _Held:
    """A sink that keeps the events it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def on_event(self, kind: str, fields: dict) -> None:
        self.events.append((kind, fields))


def _restore(run: Run, checkpoint: dict) -> None:
    """Put model, optimizer, LR schedule, scaler, pruner, family, run state and RNGs back."""
    state = run.state
    run.family.load_state_dict(checkpoint.get("family") or {})
    run._apply(run.family.on_resume(run))
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.pruner is not None:
        run.pruner.load_state_dict(checkpoint["pruner"])
        run.previous_masks = {k: v.to(run.ctx.device) for k, v in checkpoint["masks"].items()}
    state.load_state_dict(checkpoint)
    saved_rng = checkpoint["rng"]
    if len(saved_rng) == run.ctx.world_size:
        set_rng_state(saved_rng[run.ctx.rank])
    else:  # resumed on another number of processes: fresh, still rank-specific, streams
        seed_everything(run.recipe.seed + 1_000_003 * state.global_step + run.ctx.rank)


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

    Cost: the L2 norms of all gradients in one fused call (``torch._foreach_norm``: one kernel per
    device and dtype, no host sync per tensor; a NaN or an infinity anywhere makes their sum
    non-finite) and one host sync for the loss and that sum together, the sync ``loss.item()`` cost
    anyway. ``bench/reliability.py`` (CPU, one thread): 8.5 ms for ResNet-18's 11.7M gradients,
    1.5% of a batch-16 step (the max-norm, ``ord=inf``, takes 82 ms there); 0.35 ms, 1.8%, on the
    digits twin. Only when the sum is not finite are the
    tensors looked at one by one, to name the bad one (a sum that merely overflowed is no fault).
    With the fp16 grad scaler the gradients are left to it (it skips overflowed steps itself).
    """
    checks = [total.detach().float().reshape(())]
    grads = [] if run.scaler.is_enabled() else \
        [(n, p.grad) for n, p in run.model.named_parameters() if p.grad is not None and p.grad.numel()]
    if grads:
        checks.append(torch.stack([g.float() for g in torch._foreach_norm([g for _, g in grads])]).sum())
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
                run.pruner.step(run.optimizer)
            run.scheduler.step()
            run.emit("skipped_batch", epoch=epoch, step=step, problem=problem)
            return out, None
        problem += f" and the weight {broken!r} is not finite (skipping batches cannot recover)"
    raise NonFiniteError(f"step {step} (epoch {epoch}): {problem}")


def _check_finite(run: Run, when: str) -> None:
    """Refuse to save a model holding a NaN or an infinity (all float tensors of its state_dict)."""
    broken = first_nonfinite(run.model.state_dict())
    if broken is not None:
        raise NonFiniteError(f"{when}: the model's {broken!r} is not finite, not saved")


def _should_stop(ctx, stop, stop_after_steps, steps_this_call) -> bool:
    local = stop["signal"] is not None or (stop_after_steps is not None and steps_this_call >= stop_after_steps)
    if ctx.distributed:  # every rank stops at the same step, or the collectives would hang
        return ctx.all_reduce_sum([float(local)])[0] > 0
    return local
