"""``SpikingNet``: the one wrapper around every SpikingJelly network in the model zoo.

A multi-step SpikingJelly network maps a spike sequence ``[T, N, ...]`` to per-step outputs
``[T, N, num_classes]`` and keeps membrane potentials between calls. Training code wants a plain
classifier: a batch in, logits out, nothing remembered. ``SpikingNet`` provides that contract:

1. it resets every stateful module of the body at the start of each forward, so no membrane
   potential leaks from one batch into the next (SpikingJelly's ``functional.reset_net``);
2. it encodes a static image batch ``[N, C, H, W]`` into ``[T, N, C, H, W]`` with its ``encoder``
   (direct/repeat coding by default), and passes event frames ``[T, N, C, H, W]`` through as they are;
3. it returns the rate-decoded logits: the classifier output averaged over the T time steps, the
   decoding of Fang et al., "Deep Residual Learning in Spiking Neural Networks" (NeurIPS 2021) and
   of SpikingJelly's training scripts.

The SpikingJelly network stays under ``.body`` with its own module names, so a SpikingJelly
checkpoint ``sd`` loads as ``{"body." + k: v for k, v in sd.items()}``.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from torch import nn

from .._validation import check_positive_int, resolve_name
from .encoders import DirectEncoder, PoissonEncoder

__all__ = ["SpikingNet", "make_encoder"]

_ENCODERS = {"direct": DirectEncoder, "poisson": PoissonEncoder}


def make_encoder(encoder: str | nn.Module | None, T: int) -> nn.Module | None:
    """Resolve ``encoder`` ("direct", "poisson", a module, or None) into a module for ``T`` steps.

    Args:
        encoder: ``"direct"``, ``"poisson"`` (any case), a module (returned as it is) or None.
        T: the number of time steps of a named encoder.

    Returns:
        The encoder module, or None.

    Example:
        >>> make_encoder("poisson", T=8)
        PoissonEncoder(
          T=8
          (poisson): PoissonEncoder()
        )
    """
    if encoder is None or isinstance(encoder, nn.Module):
        return encoder
    return _ENCODERS[resolve_name("encoder", encoder, _ENCODERS)](T)


class SpikingNet(nn.Module):
    """A SpikingJelly network as a stateless classifier: ``[N,C,H,W]`` or ``[T,N,C,H,W]`` -> ``[N, K]``.

    Args:
        body: a SpikingJelly network; it is switched to multi-step mode here.
        T: number of time steps a static image is encoded into. Event frames bring their own T
            (``x.shape[0]``), which may differ.
        encoder: "direct" (repeat the image T times, the default), "poisson" (rate coding; input
            must be intensities in [0, 1]), any module mapping ``[N,...]`` to ``[T,N,...]``, or
            None to accept event frames only.

    Example:
        >>> from spikingjelly.activation_based import layer, neuron
        >>> body = nn.Sequential(layer.Flatten(), layer.Linear(4, 3), neuron.IFNode())
        >>> net = SpikingNet(body, T=4)
        >>> net(torch.rand(2, 1, 2, 2)).shape          # static images, direct coding
        torch.Size([2, 3])
        >>> net(torch.rand(6, 2, 1, 2, 2)).shape       # event frames, T=6
        torch.Size([2, 3])
    """

    def __init__(self, body: nn.Module, T: int, encoder: str | nn.Module | None = "direct") -> None:
        super().__init__()
        functional.set_step_mode(body, "m")
        self.body = body
        self.T = T = check_positive_int("T", T)
        self.encoder = make_encoder(encoder, T)

    def reset(self) -> None:
        """Reset every stateful module (membrane potentials, dropout masks) of the body."""
        # Not functional.reset_net: it caches the module list on first use, so a neuron swapped in
        # later (channel pruning, neuron conversion) would silently never be reset. Collecting the
        # modules anew costs one module traversal per forward.
        functional.reset_collected_modules(functional.collect_reset_modules(self.body))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``[T, N, C, H, W]`` input the body sees for a static or event-frame batch."""
        if x.dim() == 5:
            return x
        if x.dim() != 4:
            raise ValueError(f"expected [N,C,H,W] images or [T,N,C,H,W] event frames, got {tuple(x.shape)}")
        if self.encoder is None:
            raise ValueError("this SpikingNet has no encoder: pass event frames [T,N,C,H,W]")
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.reset()
        return self.body(self.encode(x)).mean(0)
