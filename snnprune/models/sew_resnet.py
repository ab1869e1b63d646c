"""SEW-ResNet-18/34/50 (Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021).

The networks are SpikingJelly's own (``spikingjelly.activation_based.model.sew_resnet``), never
pretrained, wrapped in :class:`~snnprune.models.spiking_net.SpikingNet`. A spike-element-wise (SEW)
block computes ``g(SN(BN(conv(SN(BN(conv(S)))))), S)`` with the connect function ``g`` = ADD
(``A + S``), AND (``A * S``) or IAND (``(1 - A) * S``) (the paper's table of SEW functions). The paper's
ImageNet setting is the default: IF neurons, ADD, T = 4, direct coding of the image.

The ``*_dvs`` variants take 2-channel (ON/OFF) event frames: SpikingJelly's 3-channel stem conv is
replaced by a 2-channel ``layer.Conv2d`` of the same kind (7x7, stride 2); everything else is equal.
"""

from __future__ import annotations

from collections.abc import Callable

from spikingjelly.activation_based.model import sew_resnet as sj_sew
from torch import nn

from .._validation import resolve_name
from ._stem import with_in_channels
from .neurons import neuron_spec
from .registry import register_model
from .spiking_net import SpikingNet

__all__ = ["CONNECT_FUNCTIONS", "sew_resnet", "sew_resnet18", "sew_resnet34", "sew_resnet50",
           "sew_resnet18_dvs", "sew_resnet34_dvs", "sew_resnet50_dvs"]

CONNECT_FUNCTIONS = ("ADD", "AND", "IAND")
_ARCHS: dict[int, Callable[..., nn.Module]] = {
    18: sj_sew.sew_resnet18,
    34: sj_sew.sew_resnet34,
    50: sj_sew.sew_resnet50,
}


def sew_resnet(
    depth: int,
    num_classes: int = 1000,
    cnf: str = "ADD",
    T: int = 4,
    in_channels: int = 3,
    neuron: str = "if",
    encoder: str | nn.Module | None = "direct",
) -> SpikingNet:
    """SEW-ResNet of ``depth`` 18, 34 or 50 as a ``SpikingNet``; the registered builders call this.

    Args:
        depth: 18, 34 (basic blocks) or 50 (bottlenecks).
        num_classes: classifier outputs.
        cnf: the SEW connect function, "ADD", "AND" or "IAND".
        T: time steps a static image is repeated over.
        in_channels: input channels of the stem conv (3 RGB, 2 DVS polarity, 1 grey).
        neuron: "if", "lif" or "plif" (see :mod:`snnprune.models.neurons`).
        encoder: see :class:`SpikingNet`.

    Example:
        >>> import torch
        >>> net = sew_resnet(18, num_classes=5, T=2)
        >>> net(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 5])
    """
    if depth not in _ARCHS:
        raise ValueError(f"SEW-ResNet depth must be one of {sorted(_ARCHS)}, got {depth}")
    cnf = resolve_name("cnf", cnf, CONNECT_FUNCTIONS)
    cls, neuron_kwargs = neuron_spec(neuron)
    body = _ARCHS[depth](pretrained=False, cnf=cnf, spiking_neuron=cls, num_classes=num_classes, **neuron_kwargs)
    body.conv1 = with_in_channels(body.conv1, in_channels)
    return SpikingNet(body, T, encoder)


@register_model(spiking=True, input_shape=(3, 224, 224))
def sew_resnet18(num_classes=1000, cnf="ADD", T=4, in_channels=3, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-18 for ImageNet (SpikingJelly, IF neurons, T=4); see :func:`sew_resnet`."""
    return sew_resnet(18, num_classes, cnf, T, in_channels, neuron, encoder)


@register_model(spiking=True, input_shape=(3, 224, 224))
def sew_resnet34(num_classes=1000, cnf="ADD", T=4, in_channels=3, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-34 for ImageNet (SpikingJelly, IF neurons, T=4); see :func:`sew_resnet`."""
    return sew_resnet(34, num_classes, cnf, T, in_channels, neuron, encoder)


@register_model(spiking=True, input_shape=(3, 224, 224))
def sew_resnet50(num_classes=1000, cnf="ADD", T=4, in_channels=3, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-50 for ImageNet (SpikingJelly, bottleneck blocks, IF neurons, T=4); see :func:`sew_resnet`."""
    return sew_resnet(50, num_classes, cnf, T, in_channels, neuron, encoder)


@register_model(spiking=True, input_shape=(2, 128, 128), events=True)
def sew_resnet18_dvs(num_classes=10, cnf="ADD", T=4, in_channels=2, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-18 with a 2-channel stem for DVS event frames (e.g. CIFAR10-DVS, 10 classes)."""
    return sew_resnet(18, num_classes, cnf, T, in_channels, neuron, encoder)


@register_model(spiking=True, input_shape=(2, 128, 128), events=True)
def sew_resnet34_dvs(num_classes=10, cnf="ADD", T=4, in_channels=2, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-34 with a 2-channel stem for DVS event frames."""
    return sew_resnet(34, num_classes, cnf, T, in_channels, neuron, encoder)


@register_model(spiking=True, input_shape=(2, 128, 128), events=True)
def sew_resnet50_dvs(num_classes=10, cnf="ADD", T=4, in_channels=2, neuron="if", encoder="direct") -> SpikingNet:
    """SEW-ResNet-50 with a 2-channel stem for DVS event frames."""
    return sew_resnet(50, num_classes, cnf, T, in_channels, neuron, encoder)
