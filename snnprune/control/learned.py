"""Learned-threshold methods (LTP, smooth threshold, STR): the optimizer moves the thresholds.

Without a target nothing is moved from outside. Under ``target_sparsity=`` a
:class:`~snnprune.schedules.RegularizationFeedback` steers the strength of the methods'
regulariser toward a planned ramp, measuring the sparsity every ``every`` steps
(``max(1, total_steps // 100)``), and the last step projects onto the target: each method ranks its
weights (:meth:`~snnprune.reparam.Reparameterization.projection`) and the layers are frozen at the
best ones, shared among the layers as the Pruner's ``allocation`` says.
"""

from __future__ import annotations

import warnings

import torch

from .._validation import check_fraction
from ..schedules import RegularizationFeedback
from .base import Control

__all__ = ["LearnedControl"]

#: optimizers whose step size does not grow with the gradient: a larger penalty does not move a
#: threshold faster under them
ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adamax,
            torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.RMSprop)


class LearnedControl(Control):
    """The learned regime (see the module docstring). Arguments: :func:`~snnprune.control.make_control`."""

    def __init__(self, method_name: str, schedule, target: float | None, total_steps: int | None,
                 scope: str) -> None:
        self.method_name, self.scope = method_name, scope
        if schedule is not None:
            what = "give target_sparsity= without a schedule" if target is not None else "do not pass a schedule"
            raise ValueError(f"method {method_name!r} learns its thresholds; {what}")
        if target is not None:
            if total_steps is None:
                raise ValueError("target_sparsity needs total_steps= (the step at which the target is reached)")
            self.controller = RegularizationFeedback(check_fraction("target_sparsity", target), total_steps=total_steps)
            self.target = self.controller.target
        self._warned = False

    @property
    def gain(self) -> float:
        return 1.0 if self.controller is None else self.controller.gain

    def on_step(self, step: int, lrs: list[float]) -> None:
        if self.controller is None or self.layers.frozen or not self.controller.updates_at(step):
            return
        measured = self.layers.sparsity()
        if step < self.controller.total_steps:
            self.controller.update(step, measured)
            if self.layers.has_regularization and not self._warned and self.controller.stuck():
                self._warned = True
                warnings.warn(self._stuck_message(step, measured), stacklevel=3)
            return
        self.project(step, measured)

    def _stuck_message(self, step: int, measured: float) -> str:
        planned = self.controller.history[-1][1]
        head = (f"{self.method_name!r} is at {measured:.2%} sparsity at step {step}, {planned:.2%} planned, with its "
                f"regulariser at the largest gain ({self.controller.gain:g}): its thresholds do not rise fast enough, "
                "and the last projection will prune the rest at once. ")
        optimizer = self.layers.optimizer
        own = {id(p) for r in self.layers.reparams for p in r.parameters()}
        group = next((g for g in (optimizer.param_groups if optimizer is not None else [])
                      if any(id(p) in own for p in g["params"])), None)
        if group is None:
            return head + "Give the thresholds (pruner.parameters()) a larger learning rate"
        kind = type(optimizer).__name__
        advice = (f"Under {kind} a step's size does not grow with the penalty's gradient, so the gain cannot help: "
                  f"give the thresholds (pruner.parameters()) their own parameter group with a larger learning rate "
                  f"than its {group['lr']:g}" if isinstance(optimizer, ADAPTIVE) else
                  f"Under {kind} the thresholds move by their learning rate times the penalty's gradient, and their "
                  f"learning rate {group['lr']:g} is too small for it: give the thresholds (pruner.parameters()) "
                  "their own parameter group with a larger learning rate")
        if group.get("weight_decay"):
            advice += (f"; their group's weight_decay={group['weight_decay']:g} also pulls the thresholds down: "
                       "give that group weight_decay=0")
        return head + advice

    @torch.no_grad()
    def project(self, step: int, measured: float) -> None:
        """The last step: freeze every layer at the target (see the module docstring)."""
        target = self.controller.target
        self.controller.history.append((step, target, measured, self.controller.gain))
        reparams, latents = self.layers.reparams, self.layers.latents()
        scores, weights = zip(*(r.projection(w) for r, w in zip(reparams, latents)))
        keeps = self.layers.masks_at(list(scores), target)
        kept = sum(int((k & (w != 0)).sum()) for k, w in zip(keeps, weights))
        reached = 1.0 - kept / max(sum(k.numel() for k in keeps), 1)
        if reached > target + 0.005:
            warnings.warn(
                f"target sparsity {target:.2%} not reached: {self.method_name!r} had pruned {measured:.2%} by the last "
                f"step, and its projection (Reparameterization.projection) can bring back only weights that are "
                f"not 0, so {reached:.2%} stay pruned: lower its regulariser (or its initial threshold)",
                stacklevel=4,
            )
        for r, latent, keep, weight in zip(reparams, latents, keeps, weights):
            r.freeze(latent, keep, weight)
        self.layers.rest_optimizer_state(keeps)

    def metrics(self) -> dict[str, float]:
        if self.controller is None:
            return {}
        return {"target_gain": self.controller.gain, "target_gain_updates": len(self.controller.history)}
