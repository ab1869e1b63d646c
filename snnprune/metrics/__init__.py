"""Measurements of any model, pruned or not: sparsity and regrowth (:mod:`.sparsity`); synaptic
operations and MACs (:mod:`.ops`, with its table of counting rules :data:`RULES`), firing rates
(:mod:`.firing`, with its table of spiking neurons :data:`SPIKING_NEURONS`: SpikingJelly, snnTorch,
Norse) and energy (:mod:`.energy`).

Example::

    >>> from torch import nn
    >>> from snnprune.metrics import sparsity
    >>> sparsity(nn.Linear(2, 2)).total
    0.0
"""

from .energy import ENERGY_TABLES, EnergyReport, EnergyTable, energy, ops_metrics
from .firing import SPIKING_NEURONS, FiringReport, NeuronFiring, firing_rates
from .ops import RULES, LayerOps, OpsReport, StepOps, Synapses, count_ops
from .sparsity import SparsityReport, kept_mask, regrowth, sparsity

__all__ = ["SparsityReport", "sparsity", "kept_mask", "regrowth"]
__all__ += ["count_ops", "OpsReport", "LayerOps", "StepOps", "firing_rates", "FiringReport", "NeuronFiring",
            "energy", "ops_metrics", "EnergyReport", "EnergyTable", "ENERGY_TABLES", "RULES", "Synapses",
            "SPIKING_NEURONS"]
