"""torchvision's ImageNet ANNs, registered by name and always randomly initialised.

``weights=None`` is passed explicitly: snnprune never downloads weights (runs must work offline
and start from the same seed-determined initialisation). ResNet-18/50 are He et al., CVPR 2016;
MobileNet V2 is Sandler et al., CVPR 2018. ``in_channels`` other than 3 replaces the stem conv
with a freshly initialised one, as for every other registered model.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tv

from ._stem import with_in_channels
from .registry import register_model

__all__ = ["resnet18", "resnet50", "mobilenet_v2"]


def _stem(net: tv.ResNet, in_channels: int) -> tv.ResNet:
    net.conv1 = with_in_channels(net.conv1, in_channels)
    return net


@register_model(spiking=False, input_shape=(3, 224, 224))
def resnet18(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-18 (torchvision, He et al. 2016), 11.7 M parameters.

    Example:
        >>> sum(p.numel() for p in resnet18().parameters())
        11689512
        >>> resnet18(in_channels=1).conv1.in_channels
        1
    """
    return _stem(tv.resnet18(weights=None, num_classes=num_classes), in_channels)


@register_model(spiking=False, input_shape=(3, 224, 224))
def resnet50(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """ResNet-50 (torchvision, He et al. 2016), 25.6 M parameters.

    Example:
        >>> resnet50(num_classes=10).fc.out_features
        10
    """
    return _stem(tv.resnet50(weights=None, num_classes=num_classes), in_channels)


@register_model(spiking=False, input_shape=(3, 224, 224))
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> nn.Module:
    """MobileNet V2 (torchvision, Sandler et al. 2018), 3.5 M parameters at width 1.0.

    Example:
        >>> mobilenet_v2(num_classes=10).classifier[-1].out_features
        10
        >>> mobilenet_v2(in_channels=2).features[0][0].in_channels
        2
    """
    net = tv.mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width_mult)
    net.features[0][0] = with_in_channels(net.features[0][0], in_channels)
    return net
