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

import math
import warnings
from collections.abc import Callable, Sequence

from .reparam import check_nonnegative

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
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = int(total_steps)

    def progress(self, step: int) -> float:
        return min(max(step / self.total_steps, 0.0), 1.0)

    def shape(self, x: float) -> float:
        """Normalised curve ``d(x)/D`` on ``[0, 1]`` with ``shape(0) = 0`` and ``shape(1) = 1``."""
        raise NotImplementedError

    def __call__(self, step: int, lr_sum: float) -> float:
        return self.final * self.shape(self.progress(step))

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.total_steps = state["total_steps"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(final={self.final:g}, total_steps={self.total_steps})"


class Constant(ThresholdSchedule):
    """``d = D`` at every step (fixed threshold; pruning at initialization, Grad R)."""

    needs_total_steps = False

    def __call__(self, step: int, lr_sum: float) -> float:
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
      rate that step used, read from the optimizer. Needs no knowledge of the future and is exact
      under any LR schedule (warmup, step, cosine, plateau).
    * **D-form** ``LATS(final=D, total_steps=N, lr=...)``: ``d_t = D·Σ_{i<t} η_i / Σ_{i<N} η_i``,
      i.e. the λ-form with ``λ = D / Σ_{i<N} η_i``. ``lr`` gives the learning rate of every step:
      a sequence of ``N`` floats, a callable ``step -> lr``, or the ``torch.optim.lr_scheduler``
      the run will use (its trajectory is simulated, then its state restored; see
      :func:`lr_trajectory`). The threshold lands exactly on ``D`` at step ``N``.

    Example::

        >>> import torch
        >>> lats = LATS(final=1.0, total_steps=4, lr=[0.1, 0.2, 0.3, 0.4])
        >>> [round(lats(t, lr_sum=s), 3) for t, s in [(1, 0.1), (2, 0.3), (4, 1.0)]]
        [0.1, 0.3, 1.0]
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
        self._steps_per_lr_step = int(steps_per_lr_step)
        if l1 is not None:
            self.l1 = check_nonnegative("LATS l1 (λ)", l1)
            self.final = math.inf
            self.needs_total_steps = False
            self.total_steps = total_steps
        else:
            self.needs_total_steps = True
            super().__init__(final, total_steps)

    @property
    def is_lambda_form(self) -> bool:
        return not self.needs_total_steps

    def bind(self, total_steps: int | None) -> None:
        super().bind(total_steps)
        if self.is_lambda_form or self.total_steps is None:
            return
        if self._lr_source is None:
            raise ValueError(
                "LATS(final=D) needs the learning rate of every step: pass lr= (the LR scheduler, "
                "a list of per-step learning rates, or a callable step -> lr)"
            )
        lrs = _resolve_lrs(self._lr_source, self.total_steps, self._steps_per_lr_step)
        total = math.fsum(lrs)
        if not total > 0:
            raise ValueError("LATS(final=D): the learning rates sum to 0 over the run")
        self.l1 = self.final / total

    def __call__(self, step: int, lr_sum: float) -> float:
        if self.l1 is None:
            self.bind(None)
        if not self.is_lambda_form and step == self.total_steps:
            return self.final
        return self.l1 * lr_sum

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "l1": self.l1}

    def load_state_dict(self, state: dict) -> None:
        self.total_steps = state["total_steps"]
        self.l1 = state["l1"]

    def __repr__(self) -> str:
        if self.is_lambda_form:
            return f"LATS(l1={self.l1:g})"
        return f"LATS(final={self.final:g}, total_steps={self.total_steps})"


def _resolve_lrs(source, total_steps: int, steps_per_lr_step: int) -> list[float]:
    if callable(source) and not hasattr(source, "step"):
        return [float(source(t)) for t in range(total_steps)]
    if hasattr(source, "step") and hasattr(source, "optimizer"):
        return lr_trajectory(source, total_steps, steps_per_lr_step=steps_per_lr_step)
    lrs = [float(v) for v in source]
    if len(lrs) < total_steps:
        raise ValueError(f"lr= lists {len(lrs)} learning rates but the run has {total_steps} steps")
    return lrs[:total_steps]


def lr_trajectory(scheduler, total_steps: int, *, group: int = 0, steps_per_lr_step: int = 1) -> list[float]:
    """Learning rate of each of the next ``total_steps`` optimizer steps under ``scheduler``.

    The scheduler is stepped ahead (once every ``steps_per_lr_step`` optimizer steps; use the
    number of iterations per epoch for a per-epoch scheduler), then its state and the optimizer's
    learning rates are restored, so the run itself is unaffected. Works for every scheduler that
    implements ``state_dict``/``load_state_dict`` (LambdaLR, SequentialLR, CosineAnnealingLR, ...).

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        >>> lr_trajectory(sched, 5)
        [1.0, 1.0, 0.5, 0.5, 0.25]
        >>> opt.param_groups[0]["lr"]
        1.0
    """
    optimizer = scheduler.optimizer
    saved_state = scheduler.state_dict()
    saved_lrs = [g["lr"] for g in optimizer.param_groups]
    lrs = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in range(total_steps):
                lrs.append(float(optimizer.param_groups[group]["lr"]))
                if (t + 1) % steps_per_lr_step == 0:
                    scheduler.step()
    finally:
        scheduler.load_state_dict(saved_state)
        for g, lr in zip(optimizer.param_groups, saved_lrs):
            g["lr"] = lr
    return lrs
