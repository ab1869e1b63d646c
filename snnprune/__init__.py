"""snnprune: unified soft-threshold pruning for spiking and ordinary neural networks.

The core (pure PyTorch): :mod:`snnprune.reparam` (what a pruned weight is),
:mod:`snnprune.schedules` (how the threshold moves: LATS and its relatives) and
:class:`snnprune.Pruner` (which layers, when, and the smaller model at the end).
"""

from .pruner import Pruner, SparsityReport, bake, prunable_layers, prune, sparsity
from .reparam import STR, Reparameterization, SoftThreshold, soft_threshold
from .schedules import LATS, PGH, SLATS, Constant, Linear, Sine, ThresholdSchedule, lr_trajectory

__version__ = "0.1.0"

__all__ = [
    "Pruner",
    "SparsityReport",
    "prune",
    "bake",
    "prunable_layers",
    "sparsity",
    "Reparameterization",
    "SoftThreshold",
    "STR",
    "soft_threshold",
    "ThresholdSchedule",
    "LATS",
    "SLATS",
    "PGH",
    "Sine",
    "Linear",
    "Constant",
    "lr_trajectory",
]
