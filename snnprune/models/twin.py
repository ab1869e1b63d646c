"""ANN twins: the same network with every spiking neuron replaced by ``nn.ReLU``.

To compare an SNN with an ANN one to one (sparsity, accuracy, MACs vs. synaptic operations), the
ANN must have the same layers. ``ann_twin`` derives it from the SNN itself: it copies the
SpikingJelly body, swaps each spiking-neuron layer (``neuron.BaseNode``) for ``nn.ReLU`` and each
SpikingJelly ``layer.Dropout`` (one mask per simulation) for ``nn.Dropout``, and switches every layer to
single-step mode. Nothing else changes, so the twin has

* identical conv/linear/BN parameters: the same modules, names, shapes and, when built from the
  same SNN, the same values; ``twin.load_state_dict(snn.state_dict(), strict=False)`` works;
* no time dimension: an event-frame batch ``[T, N, C, H, W]`` is averaged over T into one
  ``[N, C, H, W]`` frame (the ANN sees the event counts' mean); a static batch is used as it is.

The one parameter difference is deliberate. A PLIF neuron (Fang et al., ICCV 2021) owns a
learnable scalar ``w`` (its membrane time constant ``tau = 1 / sigmoid(w)``); a ReLU has nothing
like it, so the twin drops it rather than keep an unused dummy: the twin's parameter count is the
SNN's minus one scalar per PLIF layer, and the two counts agree exactly on conv/linear/BN.
In a SEW block with the ADD connection, the twin's block is ``ReLU(BN(conv(x))) + x``, a residual
block with pre-addition activation; AND/IAND become products of ReLU outputs (same graph, but only
ADD is a meaningful ANN).
"""

from __future__ import annotations

import copy

import torch
from spikingjelly.activation_based import base, functional, layer, neuron
from torch import nn

from .spiking_net import SpikingNet

__all__ = ["ANNTwin", "ann_twin"]


class ANNTwin(nn.Module):
    """The ReLU twin of a ``SpikingNet``: same ``.body`` layers, single-step, no time dimension.

    Args:
        body: the single-step network (made by :func:`ann_twin`).

    Example:
        >>> from snnprune.models import create_model
        >>> twin = create_model("sew_digits", twin=True)
        >>> twin(torch.rand(2, 1, 8, 8)).shape          # static images
        torch.Size([2, 10])
        >>> twin(torch.rand(4, 2, 1, 8, 8)).shape       # event frames: mean over T first
        torch.Size([2, 10])
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            x = x.mean(0)
        return self.body(x)


def _ann_layer(module: nn.Module) -> nn.Module | None:
    """The ANN replacement of a stateful SpikingJelly module, or None if it is stateless."""
    if isinstance(module, neuron.BaseNode):
        return nn.ReLU()
    if isinstance(module, layer.Dropout):
        return nn.Dropout(module.p)
    if isinstance(module, base.MemoryModule):
        raise TypeError(f"no ANN equivalent known for the stateful module {type(module).__name__}")
    return None


def ann_twin(snn: SpikingNet) -> ANNTwin:
    """Return the ReLU twin of ``snn`` (a copy: ``snn`` itself is left unchanged).

    Args:
        snn: a ``SpikingNet``; every SpikingJelly neuron of its body becomes ``nn.ReLU`` and every
            SpikingJelly ``layer.Dropout`` an ``nn.Dropout``.

    Returns:
        An :class:`ANNTwin` whose conv, linear and batch-norm parameters equal ``snn``'s.

    Raises:
        TypeError: the body holds a stateful module with no known ANN equivalent.

    Example:
        >>> from snnprune.models import create_model
        >>> snn = create_model("sew_gesture")
        >>> twin = ann_twin(snn)
        >>> twin.body.features[0].sn
        ReLU()
        >>> torch.equal(twin.body.fc.weight, snn.body.fc.weight)
        True
    """
    snn.reset()  # states hold non-leaf tensors after a forward, and those cannot be deep-copied
    body = copy.deepcopy(snn.body)
    for parent in list(body.modules()):
        for name, child in parent.named_children():
            replacement = _ann_layer(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    functional.set_step_mode(body, "s")
    return ANNTwin(body)
