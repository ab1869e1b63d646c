"""Threshold methods (soft thresholding): a threshold schedule sets every layer's threshold.

After every optimizer step the schedule is asked for ``d`` given the step and the sum of the
learning rates each layer's parameter group used (the λ-forms integrate ``d += λ·η``). In
``scope="layer"`` a layer's threshold is ``d`` times its weight RMS at attach. ``min_weights`` caps
each layer's threshold below its ``min_weights``-th largest latent magnitude.

Under ``target_sparsity=`` the schedule is :class:`~snnprune.schedules.TargetSparsity`, LATS
with λ found by feedback. The feedback and the floors' caps are what touches every weight: both
run only at the schedule's update steps (``TargetSparsity.updates_at``: every
``max(1, total_steps // 100)`` steps and the last one), so between two updates a step costs a
few scalar writes per layer. Between updates the caps are those measured at the last update.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings

import torch

from .._validation import check_fraction
from ..schedules import Constant, TargetSparsity, ThresholdSchedule
from ..schedules.sparsity import cubic
from ..selection import floored_threshold, kth_magnitude, magnitude_threshold, threshold_caps
from .base import BOTH_GIVEN, Control, Layers

__all__ = ["ThresholdControl"]


class ThresholdControl(Control):
    """The threshold regime (see the module docstring). Arguments: :func:`~snnprune.control.make_control`."""

    def __init__(self, method_name: str, schedule, target: float | None, total_steps: int | None,
                 scope: str) -> None:
        self.method_name, self.scope = method_name, scope
        if target is not None:
            schedule = _target_schedule(schedule, check_fraction("target_sparsity", target), total_steps)
        if schedule is None:
            raise ValueError(f"method {method_name!r} needs a threshold schedule (e.g. LATS(l1=...))")
        if isinstance(schedule, type):
            raise TypeError(f"schedule must be an instance, e.g. {schedule.__name__}(...), not the class")
        if not isinstance(schedule, ThresholdSchedule):
            raise TypeError(f"schedule must be a ThresholdSchedule, got {type(schedule).__name__}")
        self.schedule = copy.copy(schedule)  # the caller's object stays as it was (one schedule, many pruners)
        self.schedule.bind(total_steps)
        self.target = self.schedule.target if isinstance(self.schedule, TargetSparsity) else None
        #: whether the threshold is kept at least at the plan's (the Pruner sets it when the target
        #: is reached before the last step, ``reach < 1``)
        self.follow_plan = False
        self._warned: set[str] = set()
        self._planned: list[list[float]] | None = None

    def attach(self, layers: Layers) -> None:
        latents = layers.latents()
        self.lr_sums = [0.0] * len(layers)
        self.scales = [1.0] * len(layers)
        if self.scope == "layer":
            self.scales = [float(w.detach().pow(2).mean().sqrt()) or 1.0 for w in latents]
        #: the schedule of each layer: one shared, or under an allocation one TargetSparsity per layer
        self.schedules = [self.schedule] * len(layers)
        split = layers.split(self.target) if self.target is not None and layers.allocation is not None else None
        if split is not None:
            self.schedules = []
            for sparsity in split:
                own = copy.copy(self.schedule)
                own.target, own.history = sparsity, []
                self.schedules.append(own)
        self._last_lr: float | None = None
        self._checked_model = False
        super().attach(layers)

    @property
    def per_layer(self) -> bool:
        """Whether each layer has its own target (an allocation other than ``"global"``)."""
        return len(self.schedules) > 1 and self.schedules[0] is not self.schedules[1]

    # -- the thresholds --------------------------------------------------------------------
    def threshold(self, step: int) -> float | None:
        if self.per_layer:
            return None
        return self.schedule(step, self.lr_sums[0], self.layers.groups[0])

    def apply(self, step: int, *, retarget: bool = True) -> None:
        if self.layers.frozen:
            return
        feedback = isinstance(self.schedule, TargetSparsity)
        update = not feedback or self.schedule.updates_at(step)
        if retarget and feedback and update:
            self._retarget(step)
        if update or not retarget:
            self.caps = threshold_caps(self.layers.latents(), self.layers.min_weights)
        #: the thresholds set last (the stale-model check compares the model's with them)
        self.held = [min(schedule(step, lr_sum, group) * scale, cap) for schedule, lr_sum, group, scale, cap
                     in zip(self.schedules, self.lr_sums, self.layers.groups, self.scales, self.caps)]
        for r, d in zip(self.layers.reparams, self.held):
            r.set_threshold(d)

    def on_step(self, step: int, lrs: list[float]) -> None:
        if not self._checked_model:
            self._checked_model = True
            self._check_model()
        before = list(self.lr_sums)
        self.lr_sums = [s + lr for s, lr in zip(self.lr_sums, lrs)]
        self._last_lr = lrs[0]
        if not self.layers.frozen:
            self._check_landing(step, before)
        self.apply(step)

    def _check_model(self) -> None:
        """Warn when the thresholds held by the model are not the ones this Pruner set: the
        model's state was loaded without ``pruner.load_state_dict`` (the Pruner's values win)."""
        if self.layers.frozen:
            return
        for name, r, want in zip(self.layers.names, self.layers.reparams, self.held):
            have = r.current_threshold()
            if not math.isclose(have, want, rel_tol=1e-5, abs_tol=1e-12):
                warnings.warn(
                    f"layer {name!r} holds threshold {have:.6g} but this Pruner is at {want:.6g}: was the model "
                    "loaded without pruner.load_state_dict(...)? The Pruner's schedule wins from this step on",
                    stacklevel=4,
                )
                return

    def _check_landing(self, step: int, before: list[float]) -> None:
        """LATS(final=D) lands on D when the learning rates the run uses sum to the total it was
        normalised by (its ``lr=`` trajectory). Warn, once each, when the sum reaches that total
        two or more steps before the end (the threshold then holds at D early), and at the last
        step when more than one step's learning rate of it never came (the threshold jumps to D
        there). Learning rates read one step late (a per-step scheduler stepped before
        ``pruner.step``) miss by at most one step's learning rate and land."""
        trajectories = getattr(self.schedule, "trajectories", None)
        if not trajectories or step > self.schedule.total_steps:
            return
        total_steps, final = self.schedule.total_steps, self.schedule.final
        if self._planned is None:  # per group: the trajectory's LR sum after each step
            self._planned = [list(itertools.accumulate(lrs)) for lrs in trajectories]
        first_of_group = {group: i for i, group in reversed(list(enumerate(self.layers.groups)))}
        for group, i in first_of_group.items():
            g = min(group, len(trajectories) - 1)
            planned, used = self._planned[g][-1], self.lr_sums[i]
            on_plan = self._planned[g][step - 1]
            if (step <= total_steps - 2 and used >= planned * (1 - 1e-9) > on_plan
                    and "early" not in self._warned):
                self._warned.add("early")
                warnings.warn(
                    f"LATS(final={final:g}) reached D at step {step} of {total_steps}: the learning rates used so far "
                    f"already sum to {planned:.6g}, the total of its lr= trajectory for the whole run, so the "
                    "threshold stays at D from here. The optimizer's learning rates are not that trajectory: a "
                    "per-epoch LR scheduler needs steps_per_lr_step= (iterations per epoch); or use the λ-form "
                    "LATS(l1=λ)",
                    stacklevel=4,
                )
            late = step == total_steps and planned - used > max(trajectories[g]) * (1 + 1e-6)
            if late and "late" not in self._warned:
                self._warned.add("late")
                d_before = min(self.schedule.group_l1(group) * before[i], final) * self.scales[i]
                warnings.warn(
                    f"LATS(final={final:g}) did not land on D smoothly: the learning rates used over the "
                    f"{total_steps} steps sum to {used:.6g}, not the {planned:.6g} of its lr= trajectory, so the "
                    f"threshold of layer {self.layers.names[i]!r} stood at {d_before:.6g} one step before the end and "
                    "is set to D at the last step. Give lr= the LR scheduler this run steps (a per-epoch one with "
                    "steps_per_lr_step=), or use the λ-form LATS(l1=λ)",
                    stacklevel=4,
                )

    # -- the target's feedback ---------------------------------------------------------------
    @torch.no_grad()
    def _retarget(self, step: int) -> None:
        """Feedback for :class:`~snnprune.schedules.TargetSparsity`: ``D̂`` is the (scale-relative)
        magnitude below which the target fraction of the latent weights lies now; the threshold is
        raised (with :attr:`follow_plan`) to at least the one that prunes the plan's fraction
        (:func:`~snnprune.schedules.sparsity.cubic` of the progress times the target) now, so the
        reach step has little left to do."""
        ratios = [w.detach().abs().flatten() / (scale or 1.0) for w, scale in zip(self.layers.latents(), self.scales)]
        total, every = self.schedule.total_steps, self.schedule.every
        groups = [[r] for r in ratios] if self.per_layer else [ratios]
        for schedule, group, lr_sum in zip(self.schedules if self.per_layer else [self.schedule], groups, self.lr_sums):
            estimate = max(floored_threshold(group, schedule.target, self.layers.min_weights), 0.0)
            if not self.follow_plan:
                schedule.retarget(step, lr_sum, estimate, self._last_lr)
                continue
            now, ahead = (max(floored_threshold(group, schedule.target * cubic(t / total), self.layers.min_weights),
                              0.0) for t in (step, step + every))
            schedule.retarget(step, lr_sum, estimate, self._last_lr, at_least=min(now, estimate),
                              aim=min(ahead, estimate))
        if step >= self.schedule.total_steps:
            reached = self.sparsity_after_retarget(None if self.per_layer else estimate)
            if abs(reached - self.target) > 0.005:
                floor = f"min_weights={self.layers.min_weights} per layer keeps more than the budget, or "
                warnings.warn(
                    f"target sparsity {self.target:.2%} not reached: {reached:.2%} of the pruned weights are "
                    f"at or below the final threshold ({floor if self.layers.min_weights else ''}many latent weights "
                    "tie at one magnitude, e.g. exact zeros)",
                    stacklevel=5,
                )

    @torch.no_grad()
    def sparsity_after_retarget(self, estimate: float | None) -> float:
        """The pruned fraction a threshold of ``estimate`` (scale-relative, capped by the floors)
        gives the current latent weights (``None``: each layer's own final threshold)."""
        latents = self.layers.latents()
        caps = threshold_caps(latents, self.layers.min_weights)
        ends = [estimate if estimate is not None else schedule.final_d or 0.0 for schedule in self.schedules]
        zeros = sum(int((w.detach().abs() <= min(end * s, cap)).sum())
                    for w, s, cap, end in zip(latents, self.scales, caps, ends))
        return zeros / max(sum(w.numel() for w in latents), 1)

    def metrics(self) -> dict[str, float]:
        if isinstance(self.schedule, TargetSparsity):
            l1 = sum(s.l1 for s in self.schedules) / len(self.schedules)  # the mean over the layers' own
            return {"target_lambda": l1, "target_lambda_updates": len(self.schedules[0].history)}
        return {}

    # -- one-shot ------------------------------------------------------------------------------
    @torch.no_grad()
    def prune_to(self, sparsity: float, shift: bool, step: int) -> float:
        """Cut the smallest current weights with the threshold that gives ``sparsity``, which
        then stays (a :class:`~snnprune.schedules.Constant` schedule). With ``shift`` each survivor's
        latent weight is the method's ``right_inverse`` of its weight, so the weights it keeps do
        not move."""
        reparams, latents = self.layers.reparams, self.layers.latents()
        weights = [r.finished_weight(w) for r, w in zip(reparams, latents)]
        magnitudes = [w.abs() for w in weights]
        split = self.layers.split(sparsity)
        if split is None and self.layers.min_weights:
            cuts = [max(floored_threshold(magnitudes, sparsity, self.layers.min_weights), 0.0)]
        elif split is None:
            cuts = [max(t, 0.0) for t in magnitude_threshold(magnitudes, sparsity, "global")]
        else:
            cuts = [max(kth_magnitude(m, s), 0.0) for m, s in zip(magnitudes, split)]
        if split is None:
            d, self.scales = cuts[0], [1.0] * len(weights)
        else:
            d, self.scales = 1.0, list(cuts)
        self.schedule = Constant(d)
        self.schedules = [self.schedule] * len(weights)
        caps = threshold_caps(weights, self.layers.min_weights)
        for r, latent, w, scale, cap in zip(reparams, latents, weights, self.scales, caps):
            layer_d = min(d * scale, cap)
            r.set_threshold(layer_d)
            if shift:
                latent.copy_(torch.where(w.abs() > layer_d, r.right_inverse(w), w))
        self.apply(step)
        return d

    def state_dict(self) -> dict:
        own = [{"type": "TargetSparsity", **s.state_dict()} for s in self.schedules] if self.per_layer else None
        return {"lr_sums": list(self.lr_sums), "scales": list(self.scales), "layer_schedules": own,
                **super().state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.lr_sums = [float(v) for v in state["lr_sums"]]
        self.scales = [float(v) for v in state["scales"]]
        super().load_state_dict(state)
        if self.per_layer and state.get("layer_schedules"):
            for schedule, saved in zip(self.schedules, state["layer_schedules"]):
                schedule.load_state_dict(saved)
        elif not self.per_layer:
            self.schedules = [self.schedule] * len(self.schedules)


def _target_schedule(schedule, target: float, total_steps: int | None) -> TargetSparsity:
    """The schedule ``target_sparsity=`` stands for (or the one given, checked against it)."""
    if isinstance(schedule, TargetSparsity):
        if not math.isclose(schedule.target, target):
            raise ValueError(f"target_sparsity={target} but the schedule aims at {schedule.target}")
        return schedule
    if schedule is not None:
        raise ValueError(BOTH_GIVEN)
    if total_steps is None:
        raise ValueError("target_sparsity needs total_steps= (the step at which the target is reached)")
    return TargetSparsity(target)
