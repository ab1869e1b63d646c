"""Spiking VGG-11 with batch norm: SpikingJelly's ``spiking_vgg11_bn`` (VGG of Simonyan & Zisserman,
ICLR 2015, with every ReLU replaced by a spiking neuron), never pretrained.

The network is large (about 133 M parameters with 1000 classes, 120 M of them in the three FC
layers of the classifier, whose input is always 512x7x7 after the adaptive pooling), which is
what makes it a common target for unstructured pruning.
"""

from __future__ import annotations

from spikingjelly.activation_based.model import spiking_vgg as sj_vgg

from ._stem import with_in_channels
from .neurons import neuron_spec
from .registry import register_model
from .spiking_net import SpikingNet

__all__ = ["spiking_vgg11_bn"]


@register_model(spiking=True, input_shape=(3, 224, 224))
def spiking_vgg11_bn(num_classes=1000, T=4, in_channels=3, neuron="if", encoder="direct") -> SpikingNet:
    """Spiking VGG-11-BN (SpikingJelly), IF neurons, T=4, direct coding.

    Example:
        >>> import torch
        >>> net = spiking_vgg11_bn(num_classes=10, T=1)
        >>> net(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    cls, neuron_kwargs = neuron_spec(neuron)
    body = sj_vgg.spiking_vgg11_bn(pretrained=False, spiking_neuron=cls, num_classes=num_classes, **neuron_kwargs)
    body.features[0] = with_in_channels(body.features[0], in_channels)
    return SpikingNet(body, T, encoder)
