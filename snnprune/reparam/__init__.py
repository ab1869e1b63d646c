"""Reparameterizations: what a pruned weight is. One file per method family, one registry.

* :mod:`~snnprune.reparam.base` — the contract every method implements
  (:class:`Reparameterization`), the base of the learned thresholds (:class:`LearnedThreshold`)
  and :func:`zero_optimizer_state`;
* :mod:`~snnprune.reparam.threshold` — soft thresholding (:class:`SoftThreshold`, LATS/STDS) and
  :class:`STR`;
* :mod:`~snnprune.reparam.magnitude` — sparsity-controlled hard masks: :class:`Magnitude`,
  :class:`GMP`, :class:`Random`;
* :mod:`~snnprune.reparam.ltp` — Learned Threshold Pruning (:class:`LTP`);
* :mod:`~snnprune.reparam.smooth` — the smooth hard threshold of Manessi et al.
  (:class:`SmoothThreshold`, :func:`smooth_threshold`);
* :mod:`~snnprune.reparam.registry` — :data:`METHODS`, :func:`register_method`, :func:`get_method`.

Example::

    >>> from snnprune.reparam import METHODS
    >>> METHODS["soft_threshold"].control, METHODS["str"].control
    ('threshold', 'learned')
"""

from .base import CONTROLS, LayerGroup, LearnedThreshold, Reparameterization, zero_optimizer_state
from .ltp import LTP
from .magnitude import GMP, HardMask, Magnitude, Random
from .registry import METHODS, MethodInfo, get_method, list_methods, method_info, register_method
from .smooth import SmoothThreshold, smooth_threshold
from .threshold import STR, SoftThreshold, check_nonnegative, soft_threshold

__all__ = [
    "CONTROLS",
    "GMP",
    "LTP",
    "METHODS",
    "MethodInfo",
    "STR",
    "HardMask",
    "LayerGroup",
    "LearnedThreshold",
    "Magnitude",
    "Random",
    "Reparameterization",
    "SmoothThreshold",
    "SoftThreshold",
    "check_nonnegative",
    "get_method",
    "list_methods",
    "method_info",
    "register_method",
    "smooth_threshold",
    "soft_threshold",
    "zero_optimizer_state",
]
