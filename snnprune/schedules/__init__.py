"""Schedules: how the control of a pruning method moves, as pure functions of the step and the
learning rates.

* :mod:`~snnprune.schedules.threshold` — threshold schedules (LATS and its relatives), the ISTA
  reading of soft-threshold pruning;
* :mod:`~snnprune.schedules.sparsity` — sparsity schedules (GMP's cubic, one-shot) for the
  sparsity-controlled methods;
* :mod:`~snnprune.schedules.target` — :class:`TargetSparsity`, LATS steered to end at a
  requested sparsity.

Example::

    >>> from snnprune.schedules import SLATS
    >>> round(SLATS(final=0.5, total_steps=100)(50, lr_sum=0.0), 4)
    0.4092
"""

from .sparsity import Cubic, OneShot, SparsitySchedule
from .target import RegularizationFeedback, TargetSparsity
from .threshold import LATS, PGH, SLATS, Constant, Linear, Sine, ThresholdSchedule, lr_trajectory

#: the threshold schedules a recipe names in ``pruning.schedule``: name -> class (add your own here)
THRESHOLD_SCHEDULES: dict[str, type[ThresholdSchedule]] = {
    cls.__name__.lower(): cls for cls in (LATS, SLATS, PGH, Sine, Linear, Constant)
}

__all__ = ["ThresholdSchedule", "LATS", "SLATS", "PGH", "Sine", "Linear", "Constant", "lr_trajectory",
           "THRESHOLD_SCHEDULES", "SparsitySchedule", "Cubic", "OneShot", "TargetSparsity", "RegularizationFeedback"]
