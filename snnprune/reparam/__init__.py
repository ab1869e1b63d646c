"""Reparameterizations: what a pruned weight is. One file per method family, one registry.

* :mod:`~snnprune.reparam.base` — the contract every method implements
  (:class:`Reparameterization`);
* :mod:`~snnprune.reparam.threshold` — soft thresholding (:class:`SoftThreshold`, LATS/STDS) and
  :class:`STR`;
* :mod:`~snnprune.reparam.magnitude` — sparsity-controlled hard masks: :class:`Magnitude`,
  :class:`GMP`, :class:`Random`;
* :mod:`~snnprune.reparam.registry` — :data:`METHODS`, :func:`register_method`, :func:`get_method`.

Example::

    >>> from snnprune.reparam import METHODS
    >>> METHODS["soft_threshold"].control, METHODS["str"].control
    ('threshold', 'learned')
"""

from ._cache import CachedForward
from .base import CONTROLS, Reparameterization
from .registry import METHODS, get_method, register_method
from .magnitude import GMP, HardMask, Magnitude, Random
from .threshold import STR, SoftThreshold, check_nonnegative, soft_threshold

__all__ = [
    "Reparameterization",
    "CachedForward",
    "CONTROLS",
    "METHODS",
    "register_method",
    "get_method",
    "SoftThreshold",
    "STR",
    "soft_threshold",
    "check_nonnegative",
    "HardMask",
    "Magnitude",
    "GMP",
    "Random",
]
