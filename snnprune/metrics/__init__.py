"""Measurements of any model, pruned or not: sparsity and regrowth (:mod:`.sparsity`); synaptic
operations and MACs (:mod:`.ops`), firing rates (:mod:`.firing`) and energy (:mod:`.energy`).

Example::

    >>> from torch import nn
    >>> from snnprune.metrics import sparsity
    >>> sparsity(nn.Linear(2, 2)).total
    0.0
"""

from .energy import ENERGY_TABLES, EnergyReport, EnergyTable, energy, ops_metrics
from .firing import FiringReport, NeuronFiring, firing_rates
from .ops import LayerOps, OpsReport, StepOps, count_ops
from .sparsity import SparsityReport, kept_mask, regrowth, sparsity

__all__ = ["SparsityReport", "sparsity", "kept_mask", "regrowth"]
__all__ += ["count_ops", "OpsReport", "LayerOps", "StepOps", "firing_rates", "FiringReport", "NeuronFiring",
            "energy", "ops_metrics", "EnergyReport", "EnergyTable", "ENERGY_TABLES"]
