"""Threshold schedules: how the soft threshold ``d`` grows during training.

Reading soft-threshold pruning as ISTA (Chen et al., "A Unified Framework for Soft Threshold
Pruning", ICLR 2023; arXiv 2302.13019): one SGD step on the latent weight followed by raising
the threshold from ``d_t`` to ``d_{t+1}`` is one proximal-gradient step on ``L(w) + λ_t‖w‖₁``
with ``λ_t = (d_{t+1} − d_t)/η_t``. Every schedule is therefore an implicit L1-coefficient
schedule; the optimal one keeps ``λ`` constant (:class:`LATS`).

A schedule is asked for the global threshold after ``step`` optimizer steps, given ``lr_sum``,
the sum of the learning rates those steps used (``Σ_{i<step} η_i``, tracked by the
:class:`~snnprune.pruner.Pruner`). Closed-form schedules depend only on ``x = step / total_steps``.

Notation: ``D`` final threshold, ``N`` total steps, ``x = t/N`` clipped to ``[0, 1]``.

Optimizers: the reading above is exact for plain SGD. With heavy-ball momentum ``μ`` the effective
step is about ``η/(1−μ)``, so the implied L1 coefficient is ``λ·(1−μ)`` rather than ``λ``; with Adam
there is no single L1 reading. snnprune, like the public LATS code, applies no optimizer-specific
correction: the learning rate read from the optimizer is used as it is.

Example::

    >>> from snnprune.schedules import SLATS
    >>> s = SLATS(final=0.5, total_steps=100)
    >>> round(s(50, lr_sum=0.0), 4)      # D·(x + sin(πx)/π) at x = 0.5
    0.4092
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence

from .._validation import check_nonnegative, check_positive_int

__all__ = [
    "ThresholdSchedule",
    "LATS",
    "SLATS",
    "PGH",
    "Sine",
    "Linear",
    "Constant",
    "lr_trajectory",
]


class ThresholdSchedule:
    """Base class: ``schedule(step, lr_sum) -> d``.

    ``needs_total_steps`` schedules (everything normalised so that ``d(N) = D``) must know ``N``:
    pass ``total_steps=`` here or to the :class:`~snnprune.pruner.Pruner`.
    """

    needs_total_steps: bool = True

    def __init__(self, final: float, total_steps: int | None = None) -> None:
        self.final = check_nonnegative("final threshold", final)
        self.total_steps: int | None = None
        if total_steps is not None:
            self.bind(total_steps)

    def bind(self, total_steps: int | None) -> None:
        """Set the total number of optimizer steps (if the schedule was built without it)."""
        if total_steps is None:
            if self.needs_total_steps and self.total_steps is None:
                raise ValueError(
                    f"{type(self).__name__} needs the total number of optimizer steps: "
                    f"pass total_steps= to the schedule or to the Pruner"
                )
            return
        total_steps = check_positive_int("total_steps", total_steps)
        if self.total_steps is not None and self.total_steps != total_steps:
            raise ValueError(
                f"{type(self).__name__} was built with total_steps={self.total_steps} but is asked to run "
                f"{total_steps} steps: give total_steps once, to the schedule or to the Pruner"
            )
        self.total_steps = total_steps

    def progress(self, step: int) -> float:
        return min(max(step / self.total_steps, 0.0), 1.0)

    def shape(self, x: float) -> float:
        """Normalised curve ``d(x)/D`` on ``[0, 1]`` with ``shape(0) = 0`` and ``shape(1) = 1``."""
        raise NotImplementedError

    def __call__(self, step: int, lr_sum: float, group: int = 0) -> float:
        return self.final * self.shape(self.progress(step))

    def state_dict(self) -> dict:
        """Everything that defines the schedule, as plain data (the checkpoint's values win over
        the constructor's on :meth:`load_state_dict`, for every schedule alike)."""
        return {"final": self.final, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key in ("type",):
                continue
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(final={self.final:g}, total_steps={self.total_steps})"


class Constant(ThresholdSchedule):
    """``d = D`` at every step (fixed threshold; pruning at initialization, Grad R)."""

    needs_total_steps = False

    def __call__(self, step: int, lr_sum: float, group: int = 0) -> float:
        return self.final


class Linear(ThresholdSchedule):
    """STDS "linear": ``d(x) = D·x``. Its implied λ grows without bound as the LR decays."""

    def shape(self, x: float) -> float:
        return x


class Sine(ThresholdSchedule):
    """STDS "sine": ``d(x) = D·(1 − cos πx)/2``. Its implied λ grows without bound as the LR decays."""

    def shape(self, x: float) -> float:
        return (1.0 - math.cos(math.pi * x)) / 2.0


class SLATS(ThresholdSchedule):
    """S-LATS (LATS for a continuous cosine LR with no warmup): ``d(x) = D·(x + sin(πx)/π)``.

    This is the D-form of :class:`LATS` evaluated in closed form for ``η(x) ∝ 1 + cos πx``: the
    implied λ is constant.
    """

    def shape(self, x: float) -> float:
        return x + math.sin(math.pi * x) / math.pi


class PGH(ThresholdSchedule):
    """Proximal-gradient homotopy (continuation), the "early pruning" schedule of LATS.

    ``d(x) = D·F(x)/F(1)`` with ``F(x) = ∫₀ˣ β^u (1 + cos πu) du``: under a cosine LR the implied
    λ changes geometrically as ``β^x``. ``β < 1`` front-loads pruning (``β = 0.1`` gives
    ``d(0.5) ≈ 0.92·D``), ``β → 1`` is :class:`SLATS`, ``β > 1`` back-loads it. ``F`` is evaluated
    in closed form with ``a = ln β``::

        F(x) = (β^x − 1)/a + (β^x (a cos πx + π sin πx) − a) / (a² + π²)
    """

    def __init__(self, final: float, beta: float, total_steps: int | None = None) -> None:
        beta = float(beta)
        if not beta > 0 or math.isinf(beta):
            raise ValueError(f"PGH beta must be a finite number > 0, got {beta}")
        self.beta = beta
        super().__init__(final, total_steps)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "beta": self.beta}

    def _integral(self, x: float) -> float:
        a = math.log(self.beta)
        if abs(a) < 1e-9:
            return x + math.sin(math.pi * x) / math.pi
        bx = self.beta**x
        cos_part = (bx * (a * math.cos(math.pi * x) + math.pi * math.sin(math.pi * x)) - a) / (a * a + math.pi**2)
        return (bx - 1.0) / a + cos_part

    def shape(self, x: float) -> float:
        return self._integral(x) / self._integral(1.0)

    def __repr__(self) -> str:
        return f"PGH(final={self.final:g}, beta={self.beta:g}, total_steps={self.total_steps})"


class LATS(ThresholdSchedule):
    """Learning-rate-aware threshold scheduler (LATS): the ISTA-optimal schedule, constant λ.

    Two equivalent forms:

    * **λ-form** ``LATS(l1=λ)``: after every optimizer step ``d += λ·η_t`` with ``η_t`` the learning
      rate that step used, read from the optimizer (each layer from its own parameter group).
      Needs no knowledge of the future and is exact under any LR schedule (warmup, step, cosine,
      plateau).
    * **D-form** ``LATS(final=D, total_steps=N, lr=...)``: ``d_t = D·Σ_{i<t} η_i / Σ_{i<N} η_i``,
      i.e. the λ-form with ``λ = D / Σ_{i<N} η_i``. ``lr`` gives the learning rate of every step:
      a sequence of ``N`` floats, a callable ``step -> lr``, or the ``torch.optim.lr_scheduler``
      the run will use (its trajectory is simulated for every parameter group, then its state
      restored; see :func:`lr_trajectory`). Each layer's threshold lands exactly on ``D`` at step
      ``N`` (with several parameter groups, each group has its own λ) and stays there.

    Example::

        >>> import torch
        >>> lats = LATS(final=1.0, total_steps=4, lr=[0.1, 0.2, 0.3, 0.4])
        >>> [round(lats(t, lr_sum=s), 3) for t, s in [(1, 0.1), (2, 0.3), (4, 1.0), (5, 1.1)]]
        [0.1, 0.3, 1.0, 1.0]
    """

    def __init__(
        self,
        l1: float | None = None,
        *,
        final: float | None = None,
        total_steps: int | None = None,
        lr: Sequence[float] | Callable[[int], float] | object | None = None,
        steps_per_lr_step: int = 1,
    ) -> None:
        if (l1 is None) == (final is None):
            raise ValueError("LATS takes exactly one of l1=λ (λ-form) or final=D (D-form)")
        self.l1: float | None = None
        self._lr_source = lr
        self._steps_per_lr_step = check_positive_int("steps_per_lr_step", steps_per_lr_step)
        #: per parameter group: the learning rate of every step (D-form)
        self.trajectories: list[list[float]] = []
        self._group_l1: list[float] = []
        if l1 is not None:
            self.l1 = check_nonnegative("LATS l1 (λ)", l1)
            self.final = math.inf
            self.needs_total_steps = False
            self.total_steps = None if total_steps is None else check_positive_int("total_steps", total_steps)
        else:
            self.needs_total_steps = True
            if lr is not None and _is_plateau(lr):
                raise ValueError(
                    "LATS(final=D) needs the learning rate of every step in advance, and ReduceLROnPlateau "
                    "decides it during the run: use the λ-form LATS(l1=λ)"
                )
            super().__init__(final, total_steps)

    @property
    def is_lambda_form(self) -> bool:
        return not self.needs_total_steps

    def bind(self, total_steps: int | None) -> None:
        super().bind(total_steps)
        if self.is_lambda_form or self.total_steps is None or self._group_l1:
            return
        if self._lr_source is None:
            raise ValueError(
                "LATS(final=D) needs the learning rate of every step: pass lr= (the LR scheduler, "
                "a list of per-step learning rates, or a callable step -> lr)"
            )
        self.trajectories = _resolve_lrs(self._lr_source, self.total_steps, self._steps_per_lr_step)
        self._group_l1 = []
        for lrs in self.trajectories:
            total = math.fsum(lrs)
            if not total > 0:
                raise ValueError("LATS(final=D): the learning rates sum to 0 over the run")
            self._group_l1.append(self.final / total)
        self.l1 = self._group_l1[0]

    def group_l1(self, group: int) -> float:
        """λ of parameter group ``group`` (the D-form's λ differs per group when their LRs do)."""
        if self.is_lambda_form:
            return self.l1
        if self.l1 is None:
            self.bind(None)
        if group >= len(self._group_l1):
            raise ValueError(
                f"LATS(final=D) was given the learning rates of {len(self._group_l1)} parameter group(s) but a "
                f"pruned layer sits in group {group}: pass lr= the LR scheduler of the optimizer (it covers every "
                "group), or use the λ-form LATS(l1=λ)"
            )
        return self._group_l1[group]

    def expected_lr(self, step: int, group: int = 0) -> float | None:
        """The learning rate the D-form expects at ``step`` (``None`` for the λ-form)."""
        if self.is_lambda_form or not self.trajectories or step >= self.total_steps:
            return None
        return self.trajectories[min(group, len(self.trajectories) - 1)][step]

    def __call__(self, step: int, lr_sum: float, group: int = 0) -> float:
        l1 = self.group_l1(group)
        if self.is_lambda_form:
            return l1 * lr_sum
        if step >= self.total_steps:  # lands on D and stays there, like the closed forms
            return self.final
        return min(l1 * lr_sum, self.final)

    def state_dict(self) -> dict:
        return {"final": self.final, "total_steps": self.total_steps, "l1": self.l1, "group_l1": list(self._group_l1)}

    def load_state_dict(self, state: dict) -> None:
        self.final = state.get("final", self.final)
        self.total_steps = state["total_steps"]
        self.l1 = state["l1"]
        self._group_l1 = list(state.get("group_l1") or ([] if self.is_lambda_form else [state["l1"]]))

    def __repr__(self) -> str:
        if self.is_lambda_form:
            return f"LATS(l1={self.l1:g})"
        return f"LATS(final={self.final:g}, total_steps={self.total_steps})"


def _is_plateau(source) -> bool:
    return type(source).__name__ == "ReduceLROnPlateau"


def _resolve_lrs(source, total_steps: int, steps_per_lr_step: int) -> list[list[float]]:
    """Per parameter group, the learning rate of each of the ``total_steps`` steps."""
    if hasattr(source, "step") and hasattr(source, "optimizer"):
        groups = len(source.optimizer.param_groups)
        return lr_trajectories(source, total_steps, steps_per_lr_step=steps_per_lr_step)[:groups]
    if callable(source):
        return [[float(source(t)) for t in range(total_steps)]]
    lrs = [float(v) for v in source]
    if len(lrs) < total_steps:
        raise ValueError(f"lr= lists {len(lrs)} learning rates but the run has {total_steps} steps")
    return [lrs[:total_steps]]


def lr_trajectory(scheduler, total_steps: int, *, group: int = 0, steps_per_lr_step: int = 1) -> list[float]:
    """Learning rate of each of the next ``total_steps`` optimizer steps under ``scheduler``.

    The scheduler is stepped ahead (once every ``steps_per_lr_step`` optimizer steps; use the
    number of iterations per epoch for a per-epoch scheduler), then its state and every
    hyperparameter of the optimizer's parameter groups (learning rate, momentum, betas, which
    OneCycleLR and CyclicLR also move) are restored, so the run itself is unaffected. Works for every
    scheduler that implements ``state_dict``/``load_state_dict`` (LambdaLR, SequentialLR,
    CosineAnnealingLR, OneCycleLR, ...).

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        >>> lr_trajectory(sched, 5)
        [1.0, 1.0, 0.5, 0.5, 0.25]
        >>> opt.param_groups[0]["lr"]
        1.0
    """
    return lr_trajectories(scheduler, total_steps, steps_per_lr_step=steps_per_lr_step)[group]


def lr_trajectories(scheduler, total_steps: int, *, steps_per_lr_step: int = 1) -> list[list[float]]:
    """:func:`lr_trajectory` for every parameter group at once."""
    if _is_plateau(scheduler):
        raise ValueError("ReduceLROnPlateau decides the learning rate during the run: it has no trajectory to simulate")
    optimizer = scheduler.optimizer
    saved_state = scheduler.state_dict()
    saved_groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    lrs: list[list[float]] = [[] for _ in optimizer.param_groups]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in range(total_steps):
                for g, group in enumerate(optimizer.param_groups):
                    lrs[g].append(float(group["lr"]))
                if (t + 1) % steps_per_lr_step == 0:
                    scheduler.step()
    finally:
        scheduler.load_state_dict(saved_state)
        for group, saved in zip(optimizer.param_groups, saved_groups):
            group.update(saved)
    return lrs
