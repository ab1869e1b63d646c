"""snnprune: unified soft-threshold pruning for spiking and ordinary neural networks.

The core (pure PyTorch): :mod:`snnprune.reparam` (what a pruned weight is),
:mod:`snnprune.schedules` (how the threshold or the sparsity moves: LATS and its relatives, GMP)
and :class:`snnprune.Pruner` (which layers, when, and the smaller model at the end). Schedules stay
namespaced (``snnprune.schedules.Linear`` is not ``nn.Linear``); the threshold schedules are also
importable from here, as before.
"""

from .metrics import SparsityReport, regrowth, sparsity
from .pruner import Pruner, bake, plain_state_dict, prunable_layers, prune
from .reparam import (
    GMP,
    METHODS,
    STR,
    Magnitude,
    Random,
    Reparameterization,
    SoftThreshold,
    get_method,
    register_method,
    soft_threshold,
)
from .schedules import LATS, PGH, SLATS, Constant, Linear, Sine, ThresholdSchedule, lr_trajectory

__version__ = "0.1.0"

__all__ = [
    "Pruner",
    "SparsityReport",
    "prune",
    "bake",
    "plain_state_dict",
    "prunable_layers",
    "sparsity",
    "regrowth",
    "Reparameterization",
    "METHODS",
    "register_method",
    "get_method",
    "SoftThreshold",
    "STR",
    "Magnitude",
    "GMP",
    "Random",
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
