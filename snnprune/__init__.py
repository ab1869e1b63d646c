"""snnprune: unified soft-threshold pruning for spiking and ordinary neural networks."""

__version__ = "0.1.0"
