"""Ask for a sparsity and get it: a feedback controller on LATS's λ.

Soft-threshold users set ``D`` or ``λ`` and get whatever sparsity follows; :class:`TargetSparsity`
turns the question around. It keeps the LATS shape (the threshold grows as ``λ·Σ η``, λ piecewise
constant), and every ``every`` steps it re-estimates where the threshold must end: ``D̂``, the
magnitude below which a fraction ``S`` of the current latent weights lies, and sets
``λ = (D̂ − d_t) / Σ_{i≥t} η_i`` so that the rest of the run lands on it. At the last step the
threshold is set to ``D̂`` itself, so the run ends at ``S`` over the pruned layers (up to ties
and to regrowth after that step). Every change of λ is recorded in :attr:`TargetSparsity.history`
(the engine logs it). The :class:`~snnprune.pruner.Pruner` measures ``D̂``; the schedule keeps the
arithmetic.

The remaining learning-rate sum comes from ``lr=`` (the LR scheduler, a list or a callable, as
for :class:`~snnprune.schedules.LATS`), else it is estimated as the last learning rate times the
remaining steps (a decaying LR then makes λ too small early on; later updates catch up).

Example::

    >>> s = TargetSparsity(0.9, total_steps=100, lr=[0.1] * 100, every=10)
    >>> s.retarget(step=0, lr_sum=0.0, estimate=0.5)     # D̂ = 0.5 over Σ η = 10
    >>> round(s.l1, 6), round(s(50, lr_sum=5.0), 6)
    (0.05, 0.25)
"""

from __future__ import annotations

import math

from .._validation import check_fraction, check_positive_int
from .sparsity import cubic
from .threshold import ThresholdSchedule, _is_plateau, _resolve_lrs

__all__ = ["TargetSparsity", "RegularizationFeedback"]


class TargetSparsity(ThresholdSchedule):
    """Threshold schedule steered to end at ``sparsity`` (see the module docstring)."""

    def __init__(self, sparsity: float, *, total_steps: int | None = None, lr=None, every: int | None = None,
                 steps_per_lr_step: int = 1) -> None:
        self.target = check_fraction("target sparsity", sparsity)
        if lr is not None and _is_plateau(lr):
            raise ValueError("target_sparsity needs the learning rates in advance or none at all: ReduceLROnPlateau "
                             "decides them during the run; leave lr= out")
        self._lr_source = lr
        self._steps_per_lr_step = check_positive_int("steps_per_lr_step", steps_per_lr_step)
        self.every = None if every is None else check_positive_int("every", every)
        self.trajectory: list[float] = []
        self.l1 = 0.0
        self.anchor_step = 0
        self.anchor_d = 0.0
        self.anchor_lr_sum = 0.0
        self.final_d: float | None = None
        self.drift = 0.0
        self._last_d = 0.0
        self._last_estimate = 0.0
        #: ``(step, λ, D̂)`` at every retarget
        self.history: list[tuple[int, float, float]] = []
        super().__init__(0.0, total_steps)

    def bind(self, total_steps: int | None) -> None:
        super().bind(total_steps)
        if self.total_steps is None:
            return
        if self.every is None:
            self.every = max(1, self.total_steps // 100)
        if self._lr_source is not None and not self.trajectory:
            self.trajectory = _resolve_lrs(self._lr_source, self.total_steps, self._steps_per_lr_step)[0]

    def updates_at(self, step: int) -> bool:
        """Whether ``D̂`` is re-estimated after ``step`` steps."""
        return step >= self.total_steps or step % self.every == 0

    def remaining_lr_sum(self, step: int, last_lr: float | None, steps: int | None = None) -> float:
        """The learning rates of the ``steps`` steps after ``step`` summed (``None``: to the end)."""
        end = self.total_steps if steps is None else min(step + steps, self.total_steps)
        if self.trajectory:
            return math.fsum(self.trajectory[step:end])
        return (last_lr or 0.0) * max(end - step, 0)

    def retarget(self, step: int, lr_sum: float, estimate: float, last_lr: float | None = None,
                 at_least: float = 0.0, aim: float | None = None) -> None:
        """Re-aim the rest of the run at the threshold ``estimate`` (the Pruner's ``D̂``). With a
        plan (see :mod:`snnprune.control.threshold`): the threshold is raised now to ``at_least``
        if it is below, and λ aims at ``aim``, the plan's threshold at the next update, over the
        learning rates of the ``every`` steps to it (read from the last one when ``lr=`` is not
        given: a short horizon, over which a decaying learning rate changes little)."""
        d_now = max(self(step, lr_sum), at_least)
        if step >= self.total_steps:
            self.final_d = max(estimate, 0.0)
            self.history.append((step, self.l1, estimate))
            return
        remaining = self.remaining_lr_sum(step, last_lr, None if aim is None else self.every)
        if aim is not None:
            estimate = aim
        # Under the straight-through gradient the surviving latent weights ride on the threshold
        # (θ = w + d·sign w), so D̂ itself drifts up as d rises: D̂ moves by about c·Δd. The
        # drift c is measured between retargets (smoothed), and λ aims at the fixed point
        # d_N = D̂_N: λ = (D̂ − d) / (R·(1 − c)).
        if self.history and d_now > self._last_d + 1e-12:
            c = (estimate - self._last_estimate) / (d_now - self._last_d)
            self.drift = 0.8 * self.drift + 0.2 * min(max(c, 0.0), 0.9)
        self._last_d, self._last_estimate = d_now, estimate
        # λ >= 0: the threshold never falls back (that would be no L1 problem); a threshold
        # already past D̂ waits there and the last step lands on D̂
        gap = max(estimate - d_now, 0.0)
        self.l1 = gap / (remaining * (1.0 - self.drift)) if remaining > 0 else 0.0
        self.anchor_step, self.anchor_d, self.anchor_lr_sum = step, d_now, lr_sum
        self.history.append((step, self.l1, estimate))

    def __call__(self, step: int, lr_sum: float, group: int = 0) -> float:
        if self.final_d is not None and step >= self.total_steps:
            return self.final_d
        return self.anchor_d + self.l1 * max(lr_sum - self.anchor_lr_sum, 0.0)

    def state_dict(self) -> dict:
        return {
            "final": self.final, "total_steps": self.total_steps, "target": self.target, "every": self.every,
            "l1": self.l1, "anchor_step": self.anchor_step, "anchor_d": self.anchor_d,
            "anchor_lr_sum": self.anchor_lr_sum, "final_d": self.final_d, "drift": self.drift,
            "_last_d": self._last_d, "_last_estimate": self._last_estimate,
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key == "history":
                value = [tuple(h) for h in value]
            if key != "type":
                setattr(self, key, value)

    def __repr__(self) -> str:
        return f"TargetSparsity({self.target:g}, total_steps={self.total_steps}, every={self.every})"


class RegularizationFeedback:
    """The target for learned-threshold methods (LTP, smooth threshold, STR): their sparsity
    follows the optimizer, so the controller steers the strength of their regulariser instead.

    Every ``every`` steps the measured sparsity over the pruned layers is compared with a planned
    ramp, GMP's cubic reaching ``S`` at ``ramp`` of the run, and the regulariser's gain is
    multiplied by ``exp(k·(planned − measured)/S)``; at the last step the Pruner projects onto
    ``S`` exactly (short of ``S`` the smallest surviving weights go, by magnitude; past it the
    pruned weights closest to their layer's learned threshold come back:
    :meth:`~snnprune.reparam.Reparameterization.projection`). Methods without a regulariser
    (STR) rely on that projection. Every update is kept in
    :attr:`history` as ``(step, planned, measured, gain)``.

    Example::

        >>> f = RegularizationFeedback(0.9, total_steps=100, every=10)
        >>> round(f.planned(75), 3), round(f.planned(30), 3)
        (0.9, 0.706)
        >>> f.update(30, measured=0.5); f.gain > 1
        True
    """

    def __init__(self, sparsity: float, *, total_steps: int, ramp: float = 0.75, every: int | None = None,
                 k: float = 1.0) -> None:
        self.target = check_fraction("target sparsity", sparsity)
        self.total_steps = check_positive_int("total_steps", total_steps)
        self.ramp = check_fraction("ramp", ramp, closed=True) or 1.0
        self.every = every or max(1, self.total_steps // 100)
        self.k = float(k)
        self.gain = 1.0
        self.history: list[tuple[int, float, float, float]] = []

    def planned(self, step: int) -> float:
        return self.target * cubic(step / (self.ramp * self.total_steps))

    def updates_at(self, step: int) -> bool:
        return step >= self.total_steps or step % self.every == 0

    #: bounds of the gain
    GAIN_RANGE = (1e-4, 1e4)

    def update(self, step: int, measured: float) -> None:
        planned = self.planned(step)
        error = (planned - measured) / max(self.target, 1e-3)
        low, high = self.GAIN_RANGE
        self.gain = min(max(self.gain * math.exp(self.k * error), low), high)
        self.history.append((step, planned, measured, self.gain))

    def stuck(self, behind: float = 0.05) -> bool:
        """Whether the gain is at its upper bound while the measured sparsity is more than
        ``behind`` below the plan (the regulariser cannot pull the sparsity any faster)."""
        if not self.history:
            return False
        _, planned, measured, gain = self.history[-1]
        return gain >= self.GAIN_RANGE[1] and planned - measured > behind

    def state_dict(self) -> dict:
        return {"type": "RegularizationFeedback", "target": self.target, "total_steps": self.total_steps,
                "ramp": self.ramp, "every": self.every, "k": self.k, "gain": self.gain,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key != "type":
                setattr(self, key, [tuple(h) for h in value] if key == "history" else value)

    def __repr__(self) -> str:
        return f"RegularizationFeedback({self.target:g}, total_steps={self.total_steps}, gain={self.gain:.3g})"
