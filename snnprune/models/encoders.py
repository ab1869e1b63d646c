"""Encoders: turn a static image batch ``[N, C, H, W]`` into a spike-train input ``[T, N, C, H, W]``.

Two codings are used by the SNN papers snnprune reproduces:

* direct (repeat) coding — the analog image is fed to the first (conv) layer at every one of the T
  time steps, and the first spiking layer does the encoding. SEW-ResNet on ImageNet uses it (Fang et
  al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021), as do most directly
  trained deep SNNs since Wu et al. 2019.
* Poisson rate coding — each pixel, read as a probability in [0, 1], emits a spike at every step
  with that probability, so the firing rate over T steps estimates the intensity. SpikingJelly's
  ``encoding.PoissonEncoder`` draws one step; ``PoissonEncoder`` here draws all T.

Event-camera data (DVS128 Gesture, CIFAR10-DVS, N-MNIST frames) is already ``[T, N, C, H, W]`` and
needs no encoder.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import encoding
from torch import nn

from .._validation import check_positive_int

__all__ = ["DirectEncoder", "PoissonEncoder"]


class DirectEncoder(nn.Module):
    """Direct (repeat) coding: the same image at each of ``T`` time steps.

    Args:
        T: the number of time steps (an integer >= 1).

    Example:
        >>> enc = DirectEncoder(T=4)
        >>> enc(torch.rand(2, 3, 8, 8)).shape
        torch.Size([4, 2, 3, 8, 8])
    """

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = check_positive_int("T", T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # expand is a view: no T-fold copy of the batch in memory.
        return x.unsqueeze(0).expand(self.T, *x.shape)

    def extra_repr(self) -> str:
        return f"T={self.T}"


class PoissonEncoder(DirectEncoder):
    """Poisson rate coding over ``T`` steps: ``P(spike at t) = x``, independently per step and pixel.

    The input must be intensities in [0, 1] (not mean/std-normalised images); values outside are
    clamped. The result is binary and carries no gradient to ``x``.

    Args:
        T: the number of time steps (an integer >= 1).

    Example:
        >>> torch.manual_seed(0) and None
        >>> spikes = PoissonEncoder(T=1000)(torch.full((1, 1, 2, 2), 0.25))
        >>> spikes.shape, abs(spikes.mean().item() - 0.25) < 0.05
        (torch.Size([1000, 1, 1, 2, 2]), True)
    """

    def __init__(self, T: int) -> None:
        super().__init__(T)
        self.poisson = encoding.PoissonEncoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # SpikingJelly's encoder draws one Bernoulli sample per element: draw on the T-fold copy.
        return self.poisson(super().forward(x.clamp(0.0, 1.0)).contiguous())
