"""MobileNet V1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017). torchvision has no V1, and it is a standard pruning benchmark.

Architecture (paper Table 1): a 3x3 stride-2 full convolution to 32 channels, then 13 depthwise
separable blocks (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU), global average pooling
and one fully connected layer. The width multiplier alpha (paper §3.3) scales every layer's channel
count; at alpha = 1 the network has 4.2 M parameters (paper Table 8: 4.2 million), with 224x224
inputs and 1000 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

__all__ = ["MobileNetV1", "mobilenet_v1"]

#: (output channels, stride) of the 13 depthwise separable blocks, paper Table 1
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet V1 with width multiplier ``width_mult`` (alpha).

    Example:
        >>> net = MobileNetV1(num_classes=1000)
        >>> sum(p.numel() for p in net.parameters())
        4231976
        >>> net(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def width(channels: int) -> int:
            return max(1, int(channels * width_mult))

        channels = width(32)
        layers = [_conv_bn_relu(in_channels, channels, 3, stride=2)]
        for out, stride in _BLOCKS:
            layers.append(nn.Sequential(
                _conv_bn_relu(channels, channels, 3, stride, groups=channels),  # depthwise
                _conv_bn_relu(channels, width(out), 1, 1),  # pointwise
            ))
            channels = width(out)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(spiking=False, input_shape=(3, 224, 224))
def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> MobileNetV1:
    """MobileNet V1 (Howard et al. 2017), width multiplier ``width_mult``; 4.2 M parameters at 1.0.

    Example:
        >>> sum(p.numel() for p in mobilenet_v1(width_mult=0.5).parameters()) < 1.4e6
        True
    """
    return MobileNetV1(num_classes, width_mult, in_channels)
