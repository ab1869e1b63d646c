"""Run one recipe: build data, model, optimizer, LR schedule and pruner, train, evaluate, checkpoint.

The loop, per optimizer step: forward (autocast on CUDA), loss (+ the method's regulariser),
backward, ``optimizer.step()``, ``pruner.step(optimizer)``, ``scheduler.step()``. SNNs reset their
neuron state inside their forward (:class:`snnprune.models.SpikingNet`).

Determinism and resume: the shuffle of epoch ``e`` is drawn from ``seed + e``
(``DistributedSampler.set_epoch``), and the checkpoint holds model, pruner, optimizer, scheduler,
AMP scaler, epoch/step and every RNG state, so on CPU a run killed at any point and resumed with
``resume=True`` ends with exactly the weights of an uninterrupted run (with ``data.workers = 0``,
or with data that has no random augmentation: worker processes draw their seeds afresh).
"""

from __future__ import annotations

import copy
import math
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler, Sampler, Subset

from .. import data as snn_data
from .. import models as snn_models
from ..pruner import Pruner, bake, sparsity
from ..recipe import Recipe, RecipeError
from ..schedules import LATS, PGH, SLATS, Constant, Linear, Sine
from . import distributed
from .checkpoint import atomic_save, load_checkpoint
from .runlog import RunLog

__all__ = ["train", "RunResult", "RunExistsError", "build_model", "build_datasets"]

LAST, BEST, FINAL = "last.pt", "best.pt", "final_model.pt"


class RunExistsError(ValueError):
    """The run folder already holds a run and ``resume`` was not asked for."""


class Interrupted(Exception):
    pass


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    best_acc: float = 0.0
    interrupted: bool = False

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


# -- building blocks -------------------------------------------------------------------------
def build_datasets(recipe: Recipe):
    """Train and test data sets of the recipe (``data.limit`` keeps a fixed random subset)."""
    d = recipe.data
    info = snn_data.dataset_info(d.name)
    kwargs = dict(d.kwargs)
    if info.events:
        if d.framing == "bins":
            kwargs.setdefault("n_time_bins", d.T)
        else:
            if d.time_window_us is None:
                raise RecipeError("bad recipe: data.framing = 'time_window' needs data.time_window_us")
            kwargs.setdefault("time_window", d.time_window_us)
    sets = []
    for split in ("train", "test"):
        ds = _call_with_kwargs("data.kwargs", snn_data.create_dataset, d.name, d.root, split, **kwargs)
        time_major = getattr(ds, "time_major", False)
        if d.limit is not None and d.limit < len(ds):
            keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(recipe.seed))[: d.limit]
            ds = Subset(ds, sorted(keep.tolist()))
        if info.events and d.framing == "time_window":
            ds = _FixedSteps(ds, d.T)
        ds.time_major = time_major
        sets.append(ds)
    return sets[0], sets[1], info


class _FixedSteps(torch.utils.data.Dataset):
    """Cut or zero-pad every frame sequence to ``T`` steps, so that with time-window framing a
    sample's output does not depend on which recordings share its batch."""

    def __init__(self, dataset, steps: int) -> None:
        self.dataset, self.steps = dataset, steps

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        frames, label = self.dataset[index]
        frames = torch.as_tensor(frames)[: self.steps]
        if frames.shape[0] < self.steps:
            pad = frames.new_zeros((self.steps - frames.shape[0], *frames.shape[1:]))
            frames = torch.cat([frames, pad])
        return frames, label


def model_kwargs(recipe: Recipe, num_classes: int) -> dict:
    """The keyword arguments ``create_model`` gets for this recipe (saved with the final model)."""
    m = recipe.model
    entry = _call_with_kwargs("model.name", snn_models.model_entry, m.name)
    kwargs = dict(m.kwargs)
    kwargs.setdefault("num_classes", m.num_classes or num_classes)
    if entry.spiking or entry.twin_of is not None:
        kwargs.setdefault("T", recipe.data.T)
    return kwargs


def build_model(recipe: Recipe, num_classes: int) -> nn.Module:
    kwargs = model_kwargs(recipe, num_classes)
    return _call_with_kwargs("model.kwargs", snn_models.create_model, recipe.model.name, twin=recipe.model.twin, **kwargs)


def _call_with_kwargs(section: str, build, *args, **kwargs):
    """Call a registry builder: a keyword it does not take, an unknown name or a value it rejects
    is the recipe's fault and becomes a one-line :class:`RecipeError`."""
    try:
        return build(*args, **kwargs)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise RecipeError(f"bad recipe: {section}: {exc}") from None
    except snn_data.DatasetNotFoundError:
        raise
    except ValueError as exc:
        raise RecipeError(f"bad recipe: {section}: {str(exc).splitlines()[0]}") from None


def build_optimizer(recipe: Recipe, model: nn.Module, pruner: Pruner | None) -> torch.optim.Optimizer:
    o = recipe.optim
    thresholds = {id(p) for p in pruner.parameters()} if pruner is not None else set()
    weights = [p for p in model.parameters() if id(p) not in thresholds]
    groups = [{"params": weights, "weight_decay": o.weight_decay}]
    if thresholds:
        wd = o.weight_decay if o.threshold_weight_decay is None else o.threshold_weight_decay
        groups.append({"params": list(pruner.parameters()), "weight_decay": wd})
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    return torch.optim.AdamW(groups, lr=o.lr)


def build_scheduler(recipe: Recipe, optimizer, steps_per_epoch: int):
    """Per-step LR schedule: optional linear warmup, then cosine / step / constant (torch's own)."""
    s, sched = recipe.lr_schedule, torch.optim.lr_scheduler
    total = recipe.epochs * steps_per_epoch
    warmup = s.warmup_epochs * steps_per_epoch
    if s.name == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
    elif s.name == "step":
        milestones = [m * steps_per_epoch - warmup for m in s.milestones if m * steps_per_epoch > warmup]
        main = sched.MultiStepLR(optimizer, milestones=milestones, gamma=s.gamma)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    warm = sched.LinearLR(optimizer, start_factor=s.warmup_start_factor, total_iters=warmup)
    return sched.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def build_pruner(recipe: Recipe, model: nn.Module, optimizer_lrs, steps_per_epoch: int) -> Pruner | None:
    p, family = recipe.pruning, recipe.family
    if p.method == "none":
        return None
    common = dict(
        scope=p.scope, keep_first=p.keep_first, keep_last=p.keep_last, include=p.include, exclude=p.exclude
    )
    if p.method == "str":
        return Pruner(model, "str", None, method_kwargs={"s_init": p.s_init}, **common)
    total = recipe.epochs * steps_per_epoch
    if family == "early_pruning":
        total = p.freeze_epoch * steps_per_epoch  # the continuation reaches D when the mask freezes
    if family == "pruning_at_initialization":
        schedule = Constant(0.0)
    elif p.schedule == "lats":
        schedule = LATS(l1=p.l1) if p.l1 is not None else LATS(final=p.final_threshold, lr=optimizer_lrs)
    elif p.schedule == "pgh":
        schedule = PGH(final=p.final_threshold, beta=p.beta)
    else:
        schedule = {"slats": SLATS, "sine": Sine, "linear": Linear, "constant": Constant}[p.schedule](
            final=p.final_threshold
        )
    return Pruner(model, "soft_threshold", schedule, total_steps=total, **common)


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


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the run ---------------------------------------------------------------------------------
def train(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    log: RunLog | None = None,
    stop_after_steps: int | None = None,
) -> RunResult:
    """Train ``recipe``; the run folder ``out`` (default ``runs/<recipe name>``) gets
    ``recipe.json``, ``metrics.jsonl``, ``tensorboard/``, ``last.pt``, ``best.pt`` and, at the
    end, ``final_model.pt`` (the plain pruned model, loadable into the original architecture).

    ``stop_after_steps`` ends the run after that many optimizer steps as if interrupted (tests).
    """
    ctx = _call_with_kwargs("device", distributed.setup, recipe.device)
    run_dir = Path(out) if out is not None else Path("runs") / recipe.name
    try:
        return _train(recipe, run_dir, resume, ctx, log, stop_after_steps)
    finally:
        distributed.teardown(ctx)


def _train(recipe, run_dir, resume, ctx, log, stop_after_steps) -> RunResult:
    if (run_dir / LAST).exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run: pass --resume to continue it, or --out elsewhere")
    checkpoint = load_checkpoint(run_dir / LAST) if resume else None
    if checkpoint is not None and not _same_recipe(checkpoint["recipe"], recipe):
        raise RunExistsError(f"{run_dir} holds a run of a different recipe: resume it with the recipe.json saved there")
    if recipe.batch_size % ctx.world_size:
        raise RecipeError(f"bad recipe: batch_size {recipe.batch_size} does not split over {ctx.world_size} processes")

    _seed_everything(recipe.seed)
    train_set, test_set, info = build_datasets(recipe)
    cuda = ctx.device.type == "cuda"
    per_rank_batch = recipe.batch_size // ctx.world_size
    train_sampler = DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=recipe.seed
    )
    # every test sample exactly once over the ranks (a DistributedSampler would pad with repeats)
    test_indices = list(range(ctx.rank, len(test_set), ctx.world_size))
    skipper = _SkipFirst(train_sampler)

    def loader(ds, sampler):
        # Non-persistent workers whose seeds come from the loader's generator, re-seeded every
        # epoch: an epoch's augmentation is the same whether or not the run was resumed.
        return snn_data.make_loader(
            ds, per_rank_batch, train=False, workers=recipe.data.workers, pin_memory=cuda,
            seed=recipe.seed, sampler=sampler, persistent_workers=False,
        )

    train_loader, test_loader = loader(train_set, skipper), loader(test_set, test_indices)
    steps_per_epoch = math.ceil(len(train_sampler) / per_rank_batch)

    model = build_model(recipe, info.num_classes).to(ctx.device)
    if cuda and recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # The optimizer exists before the pruner only to let LATS(final=D) simulate the LR schedule.
    probe_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.optim.lr)
    probe_sched = build_scheduler(recipe, probe_opt, steps_per_epoch)
    pruner = _call_with_kwargs("pruning", build_pruner, recipe, model, probe_sched, steps_per_epoch)
    optimizer = build_optimizer(recipe, model, pruner)
    scheduler = build_scheduler(recipe, optimizer, steps_per_epoch)
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda and recipe.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_acc": 0.0, "history": [], "partial": [0.0, 0, 0]}
    previous_masks = pruner.masks() if pruner is not None else {}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        if pruner is not None:
            pruner.load_state_dict(checkpoint["pruner"])
            previous_masks = {k: v.to(ctx.device) for k, v in checkpoint["masks"].items()}
        for key in state:
            state[key] = checkpoint[key]
        saved_rng = checkpoint["rng"]
        if len(saved_rng) == ctx.world_size:
            _set_rng_state(saved_rng[ctx.rank])
        else:  # resumed on another number of processes: fresh, still rank-specific, streams
            _seed_everything(recipe.seed + 1_000_003 * state["global_step"] + ctx.rank)
    else:
        if recipe.family == "pruning_at_initialization":
            pruner.prune_to(recipe.pruning.target_sparsity)
            if recipe.pruning.fixed_mask:
                pruner.freeze()
            previous_masks = pruner.masks()
        # The model is built identically on every rank; from here on each rank draws its own
        # random numbers (Poisson coding, dropout), or all ranks would repeat the same noise.
        _seed_everything(recipe.seed + ctx.rank)

    net = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.local_rank] if cuda else None)
    if recipe.compile:
        net = torch.compile(net)

    log = log or RunLog(run_dir, enabled=ctx.is_main)
    if ctx.is_main:
        (run_dir / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    log.event("start", recipe=recipe.name, resume=bool(checkpoint), world_size=ctx.world_size, device=str(ctx.device))
    log.print(
        f"[bold]{recipe.name}[/bold] — {recipe.description or recipe.family} "
        f"({ctx.world_size} process{'es' * (ctx.world_size > 1)} on {ctx.device}; run folder {run_dir})"
    )

    def save(path_name: str) -> None:
        rng = ctx.all_gather(_rng_state())  # a collective: every rank calls save
        if not ctx.is_main:
            return
        payload = {
            "recipe": recipe.model_dump(mode="json"),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "pruner": pruner.state_dict() if pruner is not None else None,
            "masks": {k: v.cpu() for k, v in previous_masks.items()},
            "rng": rng,
            **state,
        }
        atomic_save(payload, run_dir / path_name)

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread: signals stay with the caller
            pass
    result = RunResult(run_dir, history=state["history"], best_acc=state["best_acc"])
    steps_this_call = 0
    try:
        for epoch in range(state["epoch"], recipe.epochs):
            if pruner is not None and recipe.family == "early_pruning" and epoch >= recipe.pruning.freeze_epoch:
                if not pruner.frozen:
                    pruner.freeze()
                    log.event("freeze", epoch=epoch, sparsity=pruner.sparsity().total)
            train_sampler.set_epoch(epoch)
            train_loader.generator.manual_seed(recipe.seed + 1_000_003 * epoch + 7919 * ctx.rank)
            skipper.skip = state["step_in_epoch"] * per_rank_batch
            loss_sum, correct, seen = state["partial"]
            started = time.perf_counter()
            net.train()
            with log.progress() as progress:
                task = progress.add_task(f"epoch {epoch + 1}/{recipe.epochs}", total=steps_per_epoch,
                                         completed=state["step_in_epoch"], info="")
                for x, y in train_loader:
                    x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                    with torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext():
                        out = net(x)
                        loss = criterion(out, y)
                        if pruner is not None and pruner.has_regularization:
                            loss = loss + pruner.regularization()
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scale = scaler.get_scale() if scaler.is_enabled() else None
                    scaler.step(optimizer)
                    scaler.update()
                    stepped = scale is None or scaler.get_scale() >= scale  # fp16 overflow skips the step
                    if pruner is not None and stepped:
                        pruner.step(optimizer)
                    scheduler.step()
                    loss_sum += loss.item() * len(y)
                    correct += int((out.argmax(1) == y).sum())
                    seen += len(y)
                    state["step_in_epoch"] += 1
                    state["global_step"] += 1
                    steps_this_call += 1
                    state["partial"] = [loss_sum, correct, seen]
                    progress.update(task, advance=1, info=f"loss {loss_sum / seen:.3f}")
                    if _should_stop(ctx, stop, stop_after_steps, steps_this_call):
                        raise Interrupted
            sums = ctx.all_reduce_sum([loss_sum, correct, seen])
            test_loss, test_acc = evaluate(net, test_loader, criterion, ctx, amp_dtype)
            metrics = {
                "epoch": epoch + 1,
                "train_loss": sums[0] / sums[2],
                "train_acc": sums[1] / sums[2],
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "sparsity": sparsity(model).total,
                "seconds": time.perf_counter() - started,
            }
            if pruner is not None:
                masks = pruner.masks()
                metrics["threshold"] = pruner.threshold
                metrics["regrowth"] = _regrowth(previous_masks, masks)
                previous_masks = masks
                if ctx.distributed:  # the ranks must agree; recorded so that a divergence shows
                    metrics["threshold_per_rank"] = ctx.all_gather(metrics["threshold"])
                    metrics["sparsity_per_rank"] = ctx.all_gather(metrics["sparsity"])
            state.update(epoch=epoch + 1, step_in_epoch=0, partial=[0.0, 0, 0])
            state["history"].append(metrics)
            if test_acc >= state["best_acc"]:
                state["best_acc"] = test_acc
                save(BEST)  # before last.pt: a run killed in between replays this epoch
            save(LAST)
            log.epoch(metrics)
        result.best_acc = state["best_acc"]
        if ctx.is_main:
            _save_final(recipe, model, model_kwargs(recipe, info.num_classes), run_dir)
        log.event("end", best_acc=state["best_acc"], final=state["history"][-1] if state["history"] else None)
    except Interrupted:
        save(LAST)
        result.interrupted = True
        log.event("interrupted", epoch=state["epoch"], step_in_epoch=state["step_in_epoch"])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        if log is not None:
            log.close()
    result.history = state["history"]
    return result


def _same_recipe(saved: dict, recipe: Recipe) -> bool:
    """Compared as validated recipes, so that a key added to the schema later (with its default)
    does not orphan an older run."""
    try:
        return Recipe.model_validate(saved) == recipe
    except ValueError:
        return False


def _should_stop(ctx, stop, stop_after_steps, steps_this_call) -> bool:
    local = stop["signal"] is not None or (stop_after_steps is not None and steps_this_call >= stop_after_steps)
    if ctx.distributed:  # every rank stops at the same step, or the collectives would hang
        return ctx.all_reduce_sum([float(local)])[0] > 0
    return local


@torch.no_grad()
def evaluate(net, loader, criterion, ctx, amp_dtype=None) -> tuple[float, float]:
    net.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext():
            out = net(x)
        loss_sum += float(criterion(out.float(), y)) * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
    loss_sum, correct, seen = ctx.all_reduce_sum([loss_sum, correct, seen])
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _regrowth(before: dict, after: dict) -> float:
    """Fraction of the pruned layers' weights that were zero before and are non-zero now."""
    if not before:
        return 0.0
    regrown = sum(int((~before[k] & after[k]).sum()) for k in after)
    return regrown / sum(v.numel() for v in after.values())


def _save_final(recipe: Recipe, model: nn.Module, kwargs: dict, run_dir: Path) -> None:
    """The plain model: parametrizations removed, zeros baked in; its ``model`` state_dict loads
    strictly into ``create_model(model_name, twin=twin, **model_kwargs)``."""
    plain = bake(copy.deepcopy(model))
    atomic_save(
        {"model": plain.state_dict(), "model_name": recipe.model.name, "twin": recipe.model.twin,
         "model_kwargs": kwargs, "sparsity": sparsity(plain).total},
        run_dir / FINAL,
    )
