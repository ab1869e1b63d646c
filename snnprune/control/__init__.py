"""The three control regimes the :class:`~snnprune.pruner.Pruner` drives, one per method
``control``: :class:`ThresholdControl` (a threshold schedule; under a target the λ feedback of
:class:`~snnprune.schedules.TargetSparsity`), :class:`SparsityControl` (masks at a schedule's
sparsity or ``prune_to``'s) and :class:`LearnedControl` (the optimizer; under a target a feedback
on the regulariser and a last projection).

Example::

    >>> from snnprune.control import make_control
    >>> from snnprune.schedules import LATS
    >>> make_control("threshold", "soft_threshold", LATS(l1=0.1), None, None, "global").schedule
    LATS(l1=0.1)
"""

from __future__ import annotations

from .base import Control, Layers
from .learned import LearnedControl
from .sparsity import SparsityControl
from .threshold import ThresholdControl

__all__ = ["Control", "Layers", "ThresholdControl", "SparsityControl", "LearnedControl", "REGIMES", "make_control"]

#: the regime of each method ``control``
REGIMES: dict[str, type[Control]] = {"threshold": ThresholdControl, "sparsity": SparsityControl,
                                     "learned": LearnedControl}


def make_control(control: str, method_name: str, schedule, target: float | None, total_steps: int | None,
                 scope: str) -> Control:
    """The regime for a method whose ``control`` is ``control``, checked but not attached.

    Args:
        control: the method class's ``control`` (``"threshold"``, ``"sparsity"`` or ``"learned"``).
        method_name: the method's name, for messages.
        schedule: the schedule the Pruner was given, or ``None``.
        target: ``target_sparsity=``, or ``None``.
        total_steps: the run's optimizer steps, or ``None``.
        scope: ``"global"`` or ``"layer"``.

    Returns:
        The regime; :meth:`Control.attach` gives it the layers.
    """
    return REGIMES[control](method_name, schedule, target, total_steps, scope)
