"""Measurements of any model, pruned or not: sparsity and regrowth (:mod:`.sparsity`).

Example::

    >>> from torch import nn
    >>> from snnprune.metrics import sparsity
    >>> sparsity(nn.Linear(2, 2)).total
    0.0
"""

from .sparsity import SparsityReport, kept_mask, regrowth, sparsity

__all__ = ["SparsityReport", "sparsity", "kept_mask", "regrowth"]
