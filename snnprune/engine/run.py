"""The run: everything a running recipe holds, and the :class:`Callback` protocol of what is
called with it.

:class:`Run` declares every field (it has slots: a field it does not declare cannot be set on it,
so what a callback keeps between epochs lives on the callback). The modules that receive a run
(:mod:`.families`, :mod:`.callbacks`, :mod:`.trail`, :mod:`.trainer`) import it from here; this
module imports none of them, not even for annotations (``Run.family`` is typed ``Any`` for that
reason: :class:`~snnprune.engine.families.Family`'s hooks take a Run).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..build import build_optimizer, build_scheduler
from ..pruner import Pruner
from ..recipe import Recipe
from ..runs import first_nonfinite
from .distributed import DistContext
from .state import RunState

__all__ = ["Run", "RunResult", "Callback", "NonFiniteError"]


class NonFiniteError(RuntimeError):
    """A NaN or infinite loss, gradient, threshold or weight stopped the run; the message is one
    line naming the step and the quantity. Nothing non-finite was saved: the checkpoints in the run
    folder are the last good ones (``snnprune train`` exits with code 3)."""


@dataclass
class RunResult:
    """What :func:`~snnprune.engine.train` returns."""

    run_dir: Path
    history: list[dict] = field(default_factory=list)  #: one metrics dict per epoch
    best_acc: float = 0.0
    interrupted: bool = False
    #: True on the process that writes (rank 0): the one that should print a summary
    is_main: bool = True

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class Callback:
    """The callback protocol, with no-op methods (subclassing is optional: the loop calls the
    methods an object has). See :mod:`snnprune.engine.callbacks` for when each is called."""

    def on_start(self, run: Run) -> None:
        """The run is built (or restored from its checkpoint); no epoch has started in this call."""

    def on_epoch_start(self, run: Run, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) begins (``run.state.step_in_epoch`` steps of it are done when
        the run was resumed in its middle)."""

    def on_step(self, run: Run, loss: float) -> None:
        """After every optimizer step; ``loss`` is the running mean of the epoch on this process."""

    def on_epoch_end(self, run: Run, metrics: dict) -> None:
        """After evaluation; keys added to ``metrics`` are logged and kept like the built-in ones
        (``epoch`` is 1-based)."""

    def on_end(self, run: Run) -> None:
        """The run ends: finished, interrupted (``run.result.interrupted``) or stopped by an error."""

    def state_dict(self) -> dict:
        """What to save in the checkpoints (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` gave, on resume (before :meth:`on_start`)."""


@dataclass(eq=False, slots=True)
class Run:
    """Everything a running recipe holds; what families, callbacks and checkpoints see.

    ``model`` is the bare model, ``net`` what the loop calls (DDP and/or compiled around
    ``model``); :meth:`set_model` builds ``optimizer``, ``scheduler`` and ``net`` around a model.
    """

    recipe: Recipe
    ctx: DistContext
    run_dir: Path
    #: the recipe's :class:`~snnprune.engine.families.Family`: when the run prunes
    family: Any
    #: the held-out data the loop evaluates on (metrics and families may read samples of it)
    test_set: torch.utils.data.Dataset | None = None
    #: optimizer steps per epoch on this process
    steps_per_epoch: int = 0
    #: the keyword arguments of ``create_model`` for this run (saved with the final model)
    model_kwargs: dict = field(default_factory=dict)
    model: nn.Module | None = None
    net: nn.Module | None = None
    pruner: Pruner | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    #: where the run is: epoch, step, running sums, history, best accuracy
    state: RunState = field(default_factory=RunState)
    #: continued from the folder's ``last.pt``
    resumed: bool = False
    #: the pruner's masks at the end of the last epoch (regrowth is measured against them)
    previous_masks: dict = field(default_factory=dict)
    #: called in order by the loop (:mod:`.callbacks`): metrics, the caller's, the end of the epoch,
    #: the trail, checkpoints, sinks
    callbacks: list[Callback] = field(default_factory=list)
    #: receivers of :meth:`emit` and of the run's progress (:class:`~.callbacks.Sink`)
    sinks: list = field(default_factory=list)
    #: what :func:`~snnprune.engine.train` returns, filled as the run goes
    result: RunResult | None = None
    #: autocast dtype on CUDA with ``recipe.amp`` (None: full precision)
    amp_dtype: torch.dtype | None = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    criterion: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        cuda = self.ctx.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
            if cuda and self.recipe.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)

    def emit(self, kind: str, **fields) -> None:
        """An event (a line of ``metrics.jsonl``, a line on the console) to the sinks."""
        for sink in self.sinks:
            on_event = getattr(sink, "on_event", None)
            if on_event is not None:
                on_event(kind, fields)

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

    def replace_model(self, new_model: nn.Module | None) -> None:
        """What the loop does with a family hook's return value: nothing for None, else
        :meth:`set_model` and a ``model_replaced`` event (the same object too: channel surgery
        shrinks the model in place, with new Parameters)."""
        if new_model is not None:
            self.set_model(new_model)
            self.emit("model_replaced", step=self.state.global_step,
                      parameters=sum(p.numel() for p in new_model.parameters()))

    def check_finite(self, when: str) -> None:
        """Refuse to save a model holding a NaN or an infinity (all float tensors of its
        state_dict): raises :class:`NonFiniteError` naming ``when`` and the tensor."""
        broken = first_nonfinite(self.model.state_dict())
        if broken is not None:
            raise NonFiniteError(f"{when}: the model's {broken!r} is not finite, not saved")
