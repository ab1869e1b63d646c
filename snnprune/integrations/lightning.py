"""A PyTorch Lightning callback that prunes the LightningModule while ``trainer.fit`` trains it.

``PruningCallback(method, schedule=None, **pruner_kwargs)`` builds a :class:`~snnprune.Pruner`
on the LightningModule when fit starts and calls ``pruner.step(optimizer)`` right after every
optimizer step. Lightning's own hooks come either before the optimizer step
(``on_before_zero_grad`` runs inside the step's closure, before backward) or after the LR scheduler
has stepped (``on_train_batch_end``), so the callback listens to torch's optimizer step: a
post-step hook that fires once per real ``optimizer.step()`` — once per window under gradient
accumulation, never for a step the AMP ``GradScaler`` skipped — and reads the learning rate the
step used. What it does:

* **attach** in ``setup("fit")``, before ``configure_optimizers``: the optimizer then holds the
  learned thresholds of LTP, STR or the smooth threshold, and a checkpoint's pruned weights load
  into the parametrized model. ``total_steps`` defaults to ``trainer.estimated_stepping_batches``
  (optimizer steps of the whole fit, accumulation counted). The network must exist when fit
  starts (built in ``__init__``, not in ``configure_model``).
* **step** once per optimizer step (the hook above).
* **checkpoint**: the Pruner's state goes into every Lightning checkpoint (the callback's
  ``state_dict``), so ``trainer.fit(model, ckpt_path=...)`` resumes exactly where the run stopped.
* **log** ``pruning/sparsity`` (over the pruned layers) and ``pruning/threshold`` (threshold
  methods) through ``pl_module.log`` after every optimizer step.

The learned methods' penalty (:meth:`~snnprune.Pruner.regularization`) belongs in the loss, which
Lightning lets only ``training_step`` write: return ``loss + callback.regularization()``. A
method with a penalty warns at its first step if that was not done (0 for the other methods, so
the line is safe to keep whatever the method).

Needs Lightning (``pip install 'snnprune[lightning]'``): ``lightning.pytorch`` when installed,
else ``pytorch_lightning``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> class Net(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    ...     def training_step(self, batch, i):
    ...         x, y = batch
    ...         return nn.functional.cross_entropy(self.net(x), y) + pruning.regularization()
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> pruning = PruningCallback("gmp", target_sparsity=0.5)
    >>> data = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,))), batch_size=8)
    >>> trainer = pl.Trainer(max_epochs=1, callbacks=[pruning], logger=False, enable_checkpointing=False,
    ...                      enable_progress_bar=False, enable_model_summary=False)
    >>> trainer.fit(Net(), data)
    >>> pruning.pruner.steps, round(pruning.pruner.sparsity().pruned, 2)
    (8, 0.5)
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..pruner import Pruner

try:
    import lightning.pytorch as pl
except ImportError:
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError("snnprune.integrations.lightning needs PyTorch Lightning: "
                          "pip install 'snnprune[lightning]'") from None

__all__ = ["PruningCallback"]


def _pruned_weights(module: nn.Module) -> set[int]:
    """ids of the parameters a pruning method holds (the parametrized weights' originals)."""
    return {id(p) for name, p in module.named_parameters() if ".parametrizations." in f".{name}"}


class PruningCallback(pl.Callback):
    """Prune the LightningModule while Lightning trains it.

    Args:
        method: the pruning method, as for :class:`~snnprune.Pruner` (a registered name, a
            :class:`~snnprune.reparam.Reparameterization` class or instance).
        schedule: its threshold or sparsity schedule, as for the Pruner (None: none, or one made
            from ``target_sparsity``).
        **pruner_kwargs: any other keyword of :class:`~snnprune.Pruner` (``target_sparsity``,
            ``include``, ``exclude``, ``scope``, ``method_kwargs``, ``min_weights``, ...).
            ``total_steps`` defaults to ``trainer.estimated_stepping_batches``.

    Attributes:
        pruner: the :class:`~snnprune.Pruner`, once fit has started (None before). After fit,
            ``callback.pruner.finalize()`` bakes the pruned weights into the model.

    Example::

        >>> PruningCallback("soft_threshold", target_sparsity=0.9).pruner is None
        True
    """

    def __init__(self, method: Any = "soft_threshold", schedule: Any = None, **pruner_kwargs: Any) -> None:
        super().__init__()
        self.method = method
        self.schedule = schedule
        self.pruner_kwargs = pruner_kwargs
        self.pruner: Pruner | None = None
        self._module: nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._hook = None
        self._state: dict | None = None  # a checkpoint's pruner state, until the Pruner exists
        self._asked_regularization = False

    # -- attach ----------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or (self.pruner is not None and self._module is pl_module):
            return
        kwargs = dict(self.pruner_kwargs)
        if kwargs.get("total_steps") is None:
            steps = trainer.estimated_stepping_batches
            kwargs["total_steps"] = int(steps) if steps != float("inf") else None
        self.pruner = Pruner(pl_module, self.method, self.schedule, **kwargs)
        self._module = pl_module
        if self._state is not None:
            self.pruner.load_state_dict(self._state)
            self._state = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pruned = _pruned_weights(pl_module)
        holders = [opt for opt in trainer.optimizers
                   if any(id(p) in pruned for group in opt.param_groups for p in group["params"])]
        if not holders:
            raise ValueError("PruningCallback: no optimizer of configure_optimizers updates the pruned weights; "
                             "build it from self.parameters()")
        self._optimizer = holders[0]
        self._remove_hook()
        me = weakref.ref(self)

        def after_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
            callback = me()
            if callback is not None and optimizer is callback._optimizer:
                callback._step(trainer, pl_module)

        # a global hook, not one on this optimizer: the Pruner hooks the optimizer itself on its
        # first step, which must not happen while the optimizer's own hooks are being run
        self._hook = register_optimizer_step_post_hook(after_step)

    # -- step and log ----------------------------------------------------------------------
    def _step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pruner.step(self._optimizer)
        if self.pruner.steps == 1 and getattr(self.pruner, "has_regularization", False) \
                and not self._asked_regularization:
            warnings.warn(f"PruningCallback: method {self.pruner.method_name!r} learns from a penalty that Lightning "
                          "cannot add to your loss: return loss + callback.regularization() from training_step",
                          stacklevel=2)
        self._log = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not getattr(self, "_log", False):
            return
        self._log = False
        pl_module.log("pruning/sparsity", float(self.pruner.sparsity().pruned or 0.0), on_step=True, on_epoch=False)
        threshold = self.pruner.threshold
        threshold = threshold() if callable(threshold) else threshold
        if threshold is not None:
            pl_module.log("pruning/threshold", float(threshold), on_step=True, on_epoch=False)

    def regularization(self) -> torch.Tensor | float:
        """The Pruner's penalty to add to the loss in ``training_step``.

        Returns:
            ``pruner.regularization()``; 0 before fit starts and for methods without a penalty.

        Example::

            >>> PruningCallback("ltp").regularization()   # before fit
            0.0
        """
        self._asked_regularization = True
        return 0.0 if self.pruner is None else self.pruner.regularization()

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"pruner": None if self.pruner is None else self.pruner.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("pruner")
        if state is None:
            return
        if self.pruner is None:
            self._state = state
        else:
            self.pruner.load_state_dict(state)

    # -- the end ---------------------------------------------------------------------------
    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hook()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hook()
