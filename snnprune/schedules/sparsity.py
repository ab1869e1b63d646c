"""Sparsity schedules: the target sparsity of sparsity-controlled methods (magnitude, GMP, random)
after ``step`` optimizer steps, and the steps at which the masks are recomputed.

Written like :class:`~snnprune.schedules.ThresholdSchedule`: a new schedule is a ``shape(x)``
with its formula in the docstring.

Example::

    >>> from snnprune.schedules import Cubic
    >>> gmp = Cubic(final=0.9, start=0, end=100, every=10)
    >>> [round(gmp(t), 4) for t in (0, 50, 100, 200)]
    [0.0, 0.7875, 0.9, 0.9]
    >>> gmp.updates_at(20), gmp.updates_at(25)
    (True, False)
    >>> Cubic(final=0.9, end=30, every=20).updates_at(30)     # the end, off the every-20 grid
    True
"""

from __future__ import annotations

from .._validation import check_fraction, check_positive_int

__all__ = ["SparsitySchedule", "Cubic", "OneShot", "cubic"]


def cubic(x: float) -> float:
    """Zhu & Gupta's ramp ``1 − (1 − x)³`` at progress ``x`` in ``[0, 1]`` (clipped): the fraction of
    the final sparsity planned after ``x`` of the ramp."""
    x = min(max(x, 0.0), 1.0)
    return 1.0 - (1.0 - x) ** 3


class SparsitySchedule:
    """Base class: ``schedule(step) -> target sparsity``; masks are recomputed at the steps where
    :meth:`updates_at` is true. ``s(t) = s_i + (s_f − s_i)·shape(x)`` with ``x`` the progress from
    ``start`` to ``end`` clipped to ``[0, 1]``."""

    def __init__(self, final: float, *, initial: float = 0.0, start: int = 0, end: int | None = None,
                 every: int = 1) -> None:
        self.final = check_fraction("final sparsity", final)
        self.initial = check_fraction("initial sparsity", initial)
        if self.initial > self.final:
            raise ValueError(f"initial sparsity {self.initial} is above the final sparsity {self.final}")
        self.start = int(start)
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.end = None if end is None else int(end)
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end ({end}) must not come before start ({start})")
        self.every = check_positive_int("every", every)

    needs_total_steps = False

    def bind(self, total_steps: int | None) -> None:
        """Default ``end`` to the last step of the run."""
        if self.end is None:
            if total_steps is None:
                raise ValueError(
                    f"{type(self).__name__} needs end= (the step pruning ends) or the Pruner's total_steps"
                )
            self.end = max(int(total_steps), self.start)

    def shape(self, x: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        if self.end is None:
            self.bind(None)
        span = self.end - self.start
        x = 1.0 if span <= 0 else min(max((step - self.start) / span, 0.0), 1.0)
        return self.initial + (self.final - self.initial) * self.shape(x)

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed after ``step`` optimizer steps: every ``every`` steps
        from ``start``, and at ``end`` whatever ``every`` is, so the schedule lands on ``final``."""
        end = self.end if self.end is not None else step
        return self.start <= step <= end and ((step - self.start) % self.every == 0 or step == end)

    def state_dict(self) -> dict:
        return {"final": self.final, "initial": self.initial, "start": self.start, "end": self.end,
                "every": self.every}

    def load_state_dict(self, state: dict) -> None:
        for key in ("final", "initial", "start", "end", "every"):
            if key in state:
                setattr(self, key, state[key])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(final={self.final:g}, initial={self.initial:g}, start={self.start}, "
                f"end={self.end}, every={self.every})")


class Cubic(SparsitySchedule):
    """Gradual magnitude pruning (Zhu & Gupta, 2017, eq. 1):
    ``s_t = s_f + (s_i − s_f)·(1 − x)³``, i.e. ``shape(x) = 1 − (1 − x)³`` — prune fast while
    there are many redundant weights, slowly near the end. Masks are recomputed every ``every``
    steps between ``start`` and ``end``."""

    def shape(self, x: float) -> float:
        return cubic(x)


class OneShot(SparsitySchedule):
    """All at once at step ``at`` (``shape(x) = 1``), then kept: one-shot pruning whose mask is
    set once and fine-tuned."""

    def __init__(self, sparsity: float, *, at: int = 0) -> None:
        super().__init__(sparsity, initial=sparsity, start=at, end=at, every=1)

    def shape(self, x: float) -> float:
        return 1.0
