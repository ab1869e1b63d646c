"""Sparsity methods (magnitude, GMP, random): masks set at a sparsity.

The masks keep the highest scores of the method (:meth:`~snnprune.reparam.HardMask.score`,
``|w|`` for magnitude and GMP) at the schedule's update steps, or once through
``Pruner.prune_to``; every layer keeps at least ``min_weights``
(:func:`~snnprune.selection.floored_masks`). How the sparsity is shared among the layers is the
Pruner's ``allocation`` (:mod:`snnprune.allocation`); without one, ``scope="layer"`` prunes every
layer to the same sparsity (Zhu & Gupta's GMP, the default of ``"gmp"``), ``"global"`` ranks all
layers together.
"""

from __future__ import annotations

import copy

import torch

from .._validation import check_fraction
from ..schedules import Cubic, OneShot, SparsitySchedule, TargetSparsity
from .base import BOTH_GIVEN, Control

__all__ = ["SparsityControl"]


class SparsityControl(Control):
    """The sparsity regime (see the module docstring). Arguments: :func:`~snnprune.control.make_control`."""

    def __init__(self, method_name: str, schedule, target: float | None, total_steps: int | None,
                 scope: str) -> None:
        self.method_name, self.scope = method_name, scope
        if target is not None:
            schedule = _target_schedule(method_name, schedule, check_fraction("target_sparsity", target), total_steps)
        if schedule is not None:
            if not isinstance(schedule, SparsitySchedule):
                raise TypeError(
                    f"method {method_name!r} is driven by a sparsity schedule (e.g. Cubic(final=0.9, ...)) or "
                    f"prune_to(s), got {type(schedule).__name__}"
                )
            schedule = copy.copy(schedule)
            schedule.bind(total_steps)
        self.schedule = schedule
        self.target = None if schedule is None else schedule.final

    def apply(self, step: int, *, retarget: bool = True) -> None:
        if not self.layers.frozen and self.schedule is not None and self.schedule.updates_at(step):
            self.set_masks(self.schedule(step))

    @torch.no_grad()
    def set_masks(self, sparsity: float) -> None:
        """Keep the highest-scoring weights so that ``sparsity`` of them go."""
        reparams = self.layers.reparams
        scores = [r.score(w) for r, w in zip(reparams, self.layers.latents())]
        keeps = self.layers.masks_at(scores, sparsity)
        for r, keep in zip(reparams, keeps):
            r.set_mask(keep)
        self.layers.rest_optimizer_state(keeps)

    def prune_to(self, sparsity: float, shift: bool, step: int) -> None:
        self.set_masks(sparsity)


def _target_schedule(method_name: str, schedule, target: float, total_steps: int | None) -> SparsitySchedule:
    if isinstance(schedule, TargetSparsity):
        raise TypeError(f"method {method_name!r} is driven by a sparsity schedule (e.g. Cubic(final=0.9, ...)) or "
                        "prune_to(s), got TargetSparsity: give target_sparsity= alone")
    if schedule is not None:
        raise ValueError(BOTH_GIVEN)
    if method_name != "gmp":
        return OneShot(target, at=0)
    if total_steps is None:
        raise ValueError("target_sparsity with 'gmp' needs total_steps= (where the cubic ends)")
    return Cubic(final=target, end=total_steps, every=max(1, total_steps // 100))
